// The store plugin with STORE=postgres: STORE_MIGRATE, a schema that does not fit, the cache turned off.
import { once } from 'node:events'
import { createServer } from 'node:net'
import t from 'tap'
import { buildApp } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'
import { createLogSink, type Teardown } from '../helper.js'
import { startPostgres } from '../pg-helper.js'

const postgres = await startPostgres(t)

async function build (t: Teardown, url: string, env: Record<string, string> = {}) {
  const sink = createLogSink()
  const config = loadConfig({ LOG_LEVEL: 'info', STORE: 'postgres', DATABASE_URL: url, AUTH_MODE: 'none', ...env })
  const app = await buildApp(config, { logStream: sink.stream })
  t.teardown(() => app.close())
  return { app, sink }
}

t.test('STORE_MIGRATE=true migrates at startup; the next start finds the schema up to date', async (t) => {
  const url = await postgres.createDatabase()
  const first = await build(t, url, { STORE_MIGRATE: 'true' })
  t.match(first.sink.lines(), [{ msg: 'database schema migrated', applied: [1], schemaVersion: 1 }, { msg: 'serving devices from PostgreSQL', poolMax: 10, cacheMaxEntries: 100000 }])
  const second = await build(t, url, { STORE_MIGRATE: 'true' })
  t.match(second.sink.lines(), [{ msg: 'database schema up to date', applied: [] }])
  const res = await second.app.inject({ method: 'GET', url: '/readyz' })
  t.match(res.json(), { status: 'ready', store: { kind: 'postgres', devices: 0, cache: { size: 0 } } })
})

t.test('without STORE_MIGRATE, an unmigrated database stops startup with the command to run', async (t) => {
  const url = await postgres.createDatabase()
  await t.rejects(build(t, url), { name: 'SchemaError', message: /run `enos-mqtt-signer migrate` \(or start once with STORE_MIGRATE=true\)/ })
})

t.test('STORE_MIGRATE=true on a newer schema stops startup with its own message', async (t) => {
  const url = await postgres.createDatabase()
  await build(t, url, { STORE_MIGRATE: 'true' })
  await postgres.sql(url, "INSERT INTO schema_migrations (version, name) VALUES (2, 'newer')")
  await t.rejects(build(t, url, { STORE_MIGRATE: 'true' }), { name: 'SchemaError', message: /newer than this release reads/ })
})

t.test('STORE_MIGRATE=true with the database unreachable stops startup, naming the cause without the password', async (t) => {
  const server = createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  await new Promise((resolve) => server.close(resolve))
  const err = await build(t, `postgres://signer:hunter2pw@127.0.0.1:${port}/x`, { STORE_MIGRATE: 'true' }).then(() => undefined, (e: unknown) => e as Error)
  t.match(err, { name: 'SchemaError', message: /^STORE_MIGRATE=true: the migration failed \(connect ECONNREFUSED 127\.0\.0\.1:\d+\)$/ })
  t.notMatch(String(err?.message), /hunter2pw/)
})

t.test('CACHE_MAX_ENTRIES=0: no cache, every lookup asks PostgreSQL', async (t) => {
  const url = await postgres.createDatabase()
  const { app } = await build(t, url, { STORE_MIGRATE: 'true', CACHE_MAX_ENTRIES: '0' })
  const res = await app.inject({ method: 'GET', url: '/readyz' })
  t.equal(res.statusCode, 200)
  t.equal(res.json().store.cache, undefined)
})
