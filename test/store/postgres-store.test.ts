// The PostgreSQL store beyond the contract: schema checks at open, bounded waits, outages in health, errors without secrets.
import { once } from 'node:events'
import { createServer, type Socket } from 'node:net'
import pg from 'pg'
import t from 'tap'
import { STORE_UNAVAILABLE_MESSAGE } from '../../src/errors.js'
import { createPostgresStore, describePgError, outageReason, redactUrls } from '../../src/store/postgres-store.js'
import { createDeviceDatabase, startPostgres } from '../pg-helper.js'

const silent = { warn () {} }
const DEVICE = { productKey: 'P1', deviceKey: 'd1', deviceSecret: 'pg-s3cret', enabled: true }
const postgres = await startPostgres(t)

t.test('an unreachable database fails the open with STORE_UNAVAILABLE, naming the cause without the password', async (t) => {
  // A port that was free a moment ago: nothing listens there.
  const server = createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  await new Promise((resolve) => server.close(resolve))
  const err = await createPostgresStore({ url: `postgres://signer:hunter2pw@127.0.0.1:${port}/devices`, poolMax: 1, timeoutMs: 5000, log: silent })
    .then(() => undefined, (e: unknown) => e as Error & { code: string, cause: Error })
  t.match(err, { code: 'STORE_UNAVAILABLE', message: /^the device database did not answer \(connect ECONNREFUSED 127\.0\.0\.1:\d+\); retry shortly$/ })
  t.match(err?.cause, { code: 'ECONNREFUSED' })
  t.notMatch(JSON.stringify({ message: err?.message, cause: err?.cause?.message, stack: err?.stack }), /hunter2pw/)
})

t.test('a server that accepts connections and never answers fails the open within STORE_TIMEOUT_MS', async (t) => {
  const sockets: Socket[] = []
  const server = createServer((socket) => { sockets.push(socket) }).listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    for (const socket of sockets) socket.destroy()
    server.close()
  })
  const { port } = server.address() as { port: number }
  await t.rejects(createPostgresStore({ url: `postgres://signer:hunter2pw@127.0.0.1:${port}/devices`, poolMax: 1, timeoutMs: 200, log: silent }),
    { code: 'STORE_UNAVAILABLE', message: 'the device database did not answer (no answer within STORE_TIMEOUT_MS (200 ms)); retry shortly' })
})

t.test('an unmigrated database fails the open with the command to run', async (t) => {
  const url = await postgres.createDatabase()
  await t.rejects(createPostgresStore({ url, poolMax: 1, timeoutMs: 5000, log: silent }), { name: 'SchemaError', message: /run `enos-mqtt-signer migrate`/ })
})

t.test('a lookup the database does not answer within STORE_TIMEOUT_MS fails with STORE_UNAVAILABLE; health says not ready, with the pool', async (t) => {
  const url = await createDeviceDatabase(postgres, [DEVICE])
  const store = await createPostgresStore({ url, poolMax: 2, timeoutMs: 300, log: silent })
  t.teardown(() => store.close())
  const locker = new pg.Client({ connectionString: url })
  await locker.connect()
  t.teardown(() => locker.end())
  await locker.query('BEGIN')
  await locker.query('LOCK TABLE devices IN ACCESS EXCLUSIVE MODE')
  // Each answer arrives while the lock is still held: the wait was cut short, not ended by the lock going away.
  await t.rejects(store.findDevice('P1', 'd1'), { code: 'STORE_UNAVAILABLE', message: STORE_UNAVAILABLE_MESSAGE })
  await t.rejects(store.findDevices([{ productKey: 'P1', deviceKey: 'd1' }]), { code: 'STORE_UNAVAILABLE' })
  const health = await store.checkHealth()
  t.match(health, { ok: false, kind: 'postgres', detail: /^the device database (did not answer within STORE_TIMEOUT_MS \(300 ms\)|cancelled the query \(statement_timeout\))$/, database: { reachable: false, pool: { total: Number, idle: Number, waiting: Number } } })
  await locker.query('ROLLBACK')
  t.same(await store.findDevice('P1', 'd1'), DEVICE, 'answers again once the lock is gone')
  t.match(await store.checkHealth(), { ok: true, detail: '1 devices in PostgreSQL (schema version 1)', database: { reachable: true, schemaVersion: 1 } })
})

t.test('when every connection is busy, a lookup waiting for one fails within STORE_TIMEOUT_MS', async (t) => {
  const url = await createDeviceDatabase(postgres, [DEVICE])
  const store = await createPostgresStore({ url, poolMax: 1, timeoutMs: 300, log: silent })
  t.teardown(() => store.close())
  const held = await store.pool.connect()
  await t.rejects(store.findDevice('P1', 'd1'), { code: 'STORE_UNAVAILABLE' })
  held.release()
  t.same(await store.findDevice('P1', 'd1'), DEVICE)
})

t.test('an idle connection the server drops is logged (without secrets) and replaced', async (t) => {
  const url = await createDeviceDatabase(postgres, [DEVICE])
  const warnings: Array<{ fields: object, message: string }> = []
  const store = await createPostgresStore({ url, poolMax: 1, timeoutMs: 5000, log: { warn: (fields, message) => warnings.push({ fields, message }) } })
  t.teardown(() => store.close())
  t.same(await store.findDevice('P1', 'd1'), DEVICE)
  const dropped = once(store.pool, 'error')
  await postgres.sql(url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'enos-mqtt-signer'")
  await dropped
  t.match(warnings, [{ message: /idle database connection failed/, fields: { err: { message: /terminat/ } } }])
  t.same(await store.findDevice('P1', 'd1'), DEVICE)
})

t.test('pg errors are reduced to their code and first line, with passwords in URLs removed', async (t) => {
  const err = Object.assign(new Error('bad postgres://u:hunter2pw@db:5432/x\nDETAIL: Failing row contains (P, d, s3cret)'), { code: '23514', detail: 'Failing row contains (P, d, s3cret)' })
  const safe = describePgError(err)
  t.same({ message: safe.message, code: safe.code }, { message: 'bad postgres://u:[redacted]@db:5432/x', code: '23514' })
  t.notOk('detail' in safe)
  t.equal(describePgError('plain').message, 'plain')
  t.equal(describePgError({ code: 7 }).code, undefined)
  t.equal(redactUrls('a postgresql://me@db/x and redis://:pw@r:1'), 'a postgresql://me@db/x and redis://:[redacted]@r:1')
})

t.test('the reason /readyz gives for an outage is in words of its own, by the error code', async (t) => {
  t.equal(outageReason({ code: '28P01' }, 100), 'the device database refused the service\'s password (DATABASE_URL or PGPASSWORD)')
  t.equal(outageReason({ code: 'STORE_TIMEOUT' }, 100), 'the device database did not answer within STORE_TIMEOUT_MS (100 ms)')
  t.equal(outageReason({ code: 'XX000' }, 100), 'the device database did not answer (the cause is in the service\'s log)')
  t.equal(outageReason({}, 100), 'the device database did not answer (the cause is in the service\'s log)')
})
