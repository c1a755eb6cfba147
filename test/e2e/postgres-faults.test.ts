// The service on a real PostgreSQL that stops, hangs and changes under it: cached devices keep signing, the rest get 503, and it recovers by itself.
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import t from 'tap'
import { buildApp } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'
import { STORE_UNAVAILABLE_MESSAGE } from '../../src/errors.js'
import { contractPassword, createLogSink, FIXED_NOW, makeToken, writeTokenFile, type Teardown } from '../helper.js'
import { createDeviceDatabase, startPostgres, type Postgres } from '../pg-helper.js'

const DEVICES = [
  { productKey: 'PgProd', deviceKey: 'cached-1', deviceSecret: 'pg-secret-cached-1', enabled: true },
  { productKey: 'PgProd', deviceKey: 'uncached-2', deviceSecret: 'pg-secret-uncached-2', enabled: true },
  { productKey: 'PgProd', deviceKey: 'rotated-3', deviceSecret: 'pg-secret-before-3', enabled: true },
  { productKey: 'PgProd', deviceKey: 'disabled-4', deviceSecret: 'pg-secret-disabled-4', enabled: true }
]
const SECRETS = [...DEVICES.map((d) => d.deviceSecret), 'pg-secret-after-3', 'hunter2pw']

const postgres = await startPostgres(t)

/** The service with STORE=postgres on `url`, listening on a free port; the password in the URL is never checked (trust), only hidden. */
async function startService (t: Teardown, url: string, env: Record<string, string> = {}) {
  const sink = createLogSink()
  const config = loadConfig({
    LOG_LEVEL: 'info',
    STORE: 'postgres',
    DATABASE_URL: url.replace('postgres@', 'postgres:hunter2pw@'),
    AUTH_MODE: 'none',
    RATE_LIMIT_PER_CALLER: '0',
    RATE_LIMIT_PER_DEVICE: '0',
    ...env
  })
  const app = await buildApp(config, { logStream: sink.stream, clock: () => FIXED_NOW })
  t.teardown(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  const sign = async (deviceKey: string): Promise<Response> => fetch(`${base}/sign`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ productKey: 'PgProd', deviceKey })
  })
  const ready = async (): Promise<{ status: number, body: Record<string, unknown> }> => {
    const res = await fetch(`${base}/readyz`)
    return { status: res.status, body: await res.json() as Record<string, unknown> }
  }
  return { app, sink, sign, ready, base }
}

function expectedPassword (deviceKey: string, deviceSecret: string): string {
  return contractPassword({ clientId: deviceKey, deviceKey, productKey: 'PgProd', timestamp: String(FIXED_NOW), deviceSecret, signMethod: 'hmacsha1' })
}

/** Polls until `check` is true, for at most `ms` (generous: a busy machine); fails the test otherwise. */
async function until (t: Teardown & { fail: (m: string) => void }, what: string, check: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (await check()) return
    await sleep(50)
  }
  t.fail(`${what}: not within ${ms} ms`)
}

t.test('PostgreSQL stopped: cached devices still sign, others get 503 with Retry-After, /readyz says why; back by itself once PostgreSQL is', async (t) => {
  const url = await createDeviceDatabase(postgres, DEVICES)
  const { sign, ready, sink } = await startService(t, url, { CACHE_TTL_MS: '200', STORE_TIMEOUT_MS: '1000' })
  t.equal((await sign('cached-1')).status, 200)
  const before = await ready()
  t.match(before, { status: 200, body: { status: 'ready', store: { ok: true, kind: 'postgres', devices: 4, database: { reachable: true, schemaVersion: 1, pool: { total: Number, idle: Number, waiting: 0 } }, cache: { size: 1, misses: 1 } } } })

  await postgres.stop()
  t.teardown(() => postgres.start())
  await sleep(300)
  const cached = await sign('cached-1')
  t.equal(cached.status, 200, 'a cached device signs past its TTL while the database is down')
  t.equal((await cached.json() as { mqttPassword: string }).mqttPassword, expectedPassword('cached-1', 'pg-secret-cached-1'))
  const uncached = await sign('uncached-2')
  t.equal(uncached.status, 503)
  t.equal(uncached.headers.get('retry-after'), '5')
  t.match(await uncached.json(), { code: 'STORE_UNAVAILABLE', message: STORE_UNAVAILABLE_MESSAGE })
  const down = await ready()
  t.match(down, { status: 503, body: { status: 'unavailable', store: { ok: false, detail: /^the device database refused the connection \(is it running\?\); the 1 cached devices keep signing/, database: { reachable: false }, cache: { size: 1, staleHits: 1, failures: 1 } } } })

  await postgres.start()
  await until(t, '/readyz ready again', async () => (await ready()).status === 200)
  const again = await sign('uncached-2')
  t.equal(again.status, 200, `a device never cached signs again, with no restart: ${await again.text()}`)

  const raw = sink.raw()
  for (const secret of SECRETS) t.notOk(raw.includes(secret), `${secret} is not in the log`)
  t.ok(sink.lines().some((line) => line.outcome === 'STORE_UNAVAILABLE'), 'the failed request is logged')
})

t.test('a slow database (a lock held by the test): uncached lookups fail within STORE_TIMEOUT_MS, cached ones sign', async (t) => {
  const url = await createDeviceDatabase(postgres, DEVICES)
  const { sign, ready } = await startService(t, url, { STORE_TIMEOUT_MS: '300' })
  t.equal((await sign('cached-1')).status, 200)
  const locker = new pg.Client({ connectionString: url })
  await locker.connect()
  t.teardown(() => locker.end())
  await locker.query('BEGIN')
  await locker.query('LOCK TABLE devices IN ACCESS EXCLUSIVE MODE')
  // Answered while the lock is still held: the wait was cut at STORE_TIMEOUT_MS.
  const slow = await sign('uncached-2')
  t.equal(slow.status, 503)
  t.equal(slow.headers.get('retry-after'), '5')
  t.match(await slow.json(), { code: 'STORE_UNAVAILABLE', message: STORE_UNAVAILABLE_MESSAGE })
  t.equal((await sign('cached-1')).status, 200, 'a cached device is not held up')
  t.match(await ready(), { status: 503, body: { store: { ok: false, database: { reachable: false } } } })
  await locker.query('ROLLBACK')
  t.equal((await sign('uncached-2')).status, 200)
})

t.test('a secret rotated and a device disabled in the table take effect within CACHE_TTL_MS', async (t) => {
  const url = await createDeviceDatabase(postgres, DEVICES)
  const { sign } = await startService(t, url, { CACHE_TTL_MS: '300' })
  t.equal((await sign('rotated-3')).status, 200)
  t.equal((await sign('disabled-4')).status, 200)
  await postgres.sql(url, "UPDATE devices SET device_secret = 'pg-secret-after-3' WHERE device_key = 'rotated-3'")
  await postgres.sql(url, "UPDATE devices SET enabled = false WHERE device_key = 'disabled-4'")
  const after = expectedPassword('rotated-3', 'pg-secret-after-3')
  await until(t, 'the rotated secret', async () => ((await (await sign('rotated-3')).json()) as { mqttPassword: string }).mqttPassword === after)
  await until(t, 'the device disabled', async () => (await sign('disabled-4')).status === 403)
  t.match(await (await sign('disabled-4')).json(), { code: 'DEVICE_DISABLED' })
})

t.test('POST /sign/batch on PostgreSQL signs with the secrets of the table', async (t) => {
  const url = await createDeviceDatabase(postgres, DEVICES)
  const { base } = await startService(t, url)
  const res = await fetch(`${base}/sign/batch`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ devices: [{ productKey: 'PgProd', deviceKey: 'cached-1' }, { productKey: 'PgProd', deviceKey: 'nobody' }] })
  })
  t.equal(res.status, 200)
  t.match(await res.json(), { results: [{ ok: true, mqttPassword: expectedPassword('cached-1', 'pg-secret-cached-1') }, { ok: false, error: { code: 'DEVICE_NOT_FOUND' } }] })
})

/** POST /sign/batch of these devices of PgProd, as JSON. */
async function signBatch (base: string, deviceKeys: readonly string[]): Promise<{ status: number, body: { results: Array<{ ok: boolean, mqttPassword?: string, error?: { code: string, message: string } }>, summary: { signed: number, failed: number } } }> {
  const res = await fetch(`${base}/sign/batch`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ devices: deviceKeys.map((deviceKey) => ({ productKey: 'PgProd', deviceKey })) })
  })
  return { status: res.status, body: await res.json() as never }
}

t.test('PostgreSQL stopped: a batch signs every device that has a usable cache entry; only the uncached one fails', async (t) => {
  const url = await createDeviceDatabase(postgres, DEVICES)
  const { base, sign } = await startService(t, url, { CACHE_TTL_MS: '200', STORE_TIMEOUT_MS: '1000' })
  t.equal((await sign('cached-1')).status, 200)
  t.equal((await signBatch(base, ['rotated-3'])).status, 200)
  await postgres.stop()
  t.teardown(() => postgres.start())
  await sleep(300)
  const { status, body } = await signBatch(base, ['cached-1', 'uncached-2', 'rotated-3'])
  t.equal(status, 200)
  t.match(body, {
    results: [
      { ok: true, mqttPassword: expectedPassword('cached-1', 'pg-secret-cached-1') },
      { ok: false, error: { code: 'STORE_UNAVAILABLE' } },
      { ok: true, mqttPassword: expectedPassword('rotated-3', 'pg-secret-before-3') }
    ],
    summary: { signed: 2, failed: 1 }
  })
})

t.test('made-up deviceKeys do not flush the cache: during the next outage the cached devices still sign', async (t) => {
  const url = await createDeviceDatabase(postgres, DEVICES)
  const { base, sign } = await startService(t, url, { CACHE_MAX_ENTRIES: '2', CACHE_TTL_MS: '200', STORE_TIMEOUT_MS: '1000' })
  t.equal((await sign('cached-1')).status, 200)
  t.equal((await sign('rotated-3')).status, 200)
  for (let round = 0; round < 3; round++) {
    const junk = Array.from({ length: 50 }, (_, i) => `made-up-${round}-${i}`)
    t.equal((await signBatch(base, junk)).body.summary.failed, 50)
    for (const deviceKey of junk.slice(0, 10)) t.equal((await sign(deviceKey)).status, 404)
  }
  await postgres.stop()
  t.teardown(() => postgres.start())
  await sleep(300)
  t.equal((await sign('cached-1')).status, 200, 'a cached device signs alone')
  t.match((await signBatch(base, ['cached-1', 'rotated-3'])).body, { summary: { signed: 2, failed: 0 } }, 'and in a batch')
})

t.test('503 answers and /readyz never pass on the database\'s words or address: stopped, wrong password, missing database', async (t) => {
  const url = await createDeviceDatabase(postgres, DEVICES)
  const database = new URL(url).pathname.slice(1)
  const admin = postgres.url('postgres')
  const role = `signer_${process.pid}`
  await postgres.sql(admin, `CREATE ROLE ${role} LOGIN PASSWORD 'right-pw-123'`)
  await postgres.sql(url, `GRANT SELECT ON devices, schema_migrations TO ${role}`)
  // Passwords checked for every user but the test's own superuser (pg-helper's cluster trusts every local connection).
  const hba = String((await postgres.sql(admin, 'SHOW hba_file')).rows[0].hba_file)
  const writeHba = async (lines: string[]): Promise<void> => {
    await postgres.sql(admin, `COPY (SELECT unnest(ARRAY[${lines.map((line) => `'${line}'`).join(', ')}])) TO '${hba}'`)
    await postgres.sql(admin, 'SELECT pg_reload_conf()')
  }
  await writeHba(['local all all trust', 'host all postgres 127.0.0.1/32 trust', 'host all all 127.0.0.1/32 scram-sha-256'])
  t.teardown(() => writeHba(['local all all trust', 'host all all 127.0.0.1/32 trust']))
  const kick = async (): Promise<void> => { await postgres.sql(admin, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '${role}'`) }
  const { sign, ready, sink } = await startService(t, url.replace('postgres@', `${role}:right-pw-123@`))
  t.equal((await sign('cached-1')).status, 200)

  const leaks = [String(postgres.port), '127.0.0.1', 'localhost', role, database, 'ECONNREFUSED', 'password authentication', '" does not exist', 'right-pw-123', 'wrong-pw-456']
  const expectNoLeak = async (what: string, reason: RegExp): Promise<void> => {
    const res = await sign('uncached-2')
    const text = await res.text()
    t.equal(res.status, 503, `${what}: 503`)
    t.same(JSON.parse(text), { statusCode: 503, code: 'STORE_UNAVAILABLE', error: 'Service Unavailable', message: STORE_UNAVAILABLE_MESSAGE }, `${what}: the fixed message`)
    t.equal((await sign('cached-1')).status, 200, `${what}: a cached device still signs`)
    const health = await ready()
    t.match(health, { status: 503, body: { status: 'unavailable', store: { ok: false, detail: reason, database: { reachable: false }, cache: { size: 1 } } } }, `${what}: /readyz says why`)
    for (const leak of leaks) {
      t.notOk(text.includes(leak), `${what}: the 503 answer does not say ${leak}`)
      t.notOk(JSON.stringify(health.body).includes(leak), `${what}: /readyz does not say ${leak}`)
    }
  }

  await postgres.sql(admin, `ALTER ROLE ${role} PASSWORD 'wrong-pw-456'`)
  await kick()
  await expectNoLeak('wrong password', /^the device database refused the service's password \(DATABASE_URL or PGPASSWORD\); the 1 cached devices keep signing/)
  await postgres.sql(admin, `ALTER ROLE ${role} PASSWORD 'right-pw-123'`)
  await until(t, 'ready again', async () => (await ready()).status === 200)

  await postgres.sql(admin, `DROP DATABASE ${database} WITH (FORCE)`)
  await expectNoLeak('missing database', /^the database named by DATABASE_URL \(or PGDATABASE\) does not exist; /)

  await postgres.stop()
  t.teardown(() => postgres.start())
  await expectNoLeak('stopped', /^the device database refused the connection \(is it running\?\); /)

  // The causes are in the log, under the request id of the answer.
  const failed = sink.lines().filter((line) => line.msg === 'request failed')
  const causes = failed.map((line) => String((line.err as { cause?: { message?: string } }).cause?.message))
  t.ok(causes.some((c) => /password authentication failed/.test(c)), 'the wrong password is logged as the cause')
  t.ok(causes.some((c) => /does not exist/.test(c)), 'the missing database is logged as the cause')
  t.ok(causes.some((c) => /ECONNREFUSED/.test(c)), 'the refused connection is logged as the cause')
  t.ok(failed.every((line) => typeof line.reqId === 'string'), 'each with its request id')
  t.notOk(sink.raw().includes('right-pw-123') || sink.raw().includes('wrong-pw-456'), 'no password in the log')
})

t.test('RATE_LIMIT_UNKNOWN_PER_CALLER: a caller past its unknown devices gets 429 for devices not cached, without a query; cached devices and other callers sign', async (t) => {
  const url = await createDeviceDatabase(postgres, DEVICES)
  const spender = makeToken('spender', ['sign', 'sign:batch'], ['PgProd'])
  const other = makeToken('other', ['sign', 'sign:batch'], ['PgProd'])
  const { base } = await startService(t, url, { AUTH_MODE: 'token', AUTH_TOKENS_FILE: writeTokenFile(t, [spender, other]), RATE_LIMIT_UNKNOWN_PER_CALLER: '20', STORE_TIMEOUT_MS: '1000' })
  const post = async (token: string, path: string, body: unknown): Promise<Response> => fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify(body)
  })
  const sign = async (token: string, deviceKey: string): Promise<Response> => post(token, '/sign', { productKey: 'PgProd', deviceKey })
  const batch = async (token: string, deviceKeys: string[]): Promise<Array<{ ok: boolean, error?: { code: string } }>> =>
    ((await (await post(token, '/sign/batch', { devices: deviceKeys.map((deviceKey) => ({ productKey: 'PgProd', deviceKey })) })).json()) as { results: Array<{ ok: boolean, error?: { code: string } }> }).results

  t.equal((await sign(spender.token, 'cached-1')).status, 200)
  for (let i = 0; i < 15; i++) t.equal((await sign(spender.token, `made-up-${i}`)).status, 404)
  t.match(await batch(spender.token, Array.from({ length: 10 }, (_, i) => `made-up-batch-${i}`)), Array.from({ length: 10 }, () => ({ ok: false, error: { code: 'DEVICE_NOT_FOUND' } })))

  // Spent (25 unknown devices of 20): the database is not asked again; stopping it shows none is tried (429, not 503).
  await postgres.stop()
  t.teardown(() => postgres.start())
  const refused = await sign(spender.token, 'made-up-new')
  t.equal(refused.status, 429)
  t.ok(Number(refused.headers.get('retry-after')) >= 1)
  t.match(await refused.json(), { code: 'RATE_LIMITED', message: /more than 20 unknown devices in a minute \(RATE_LIMIT_UNKNOWN_PER_CALLER\)/ })
  t.equal((await sign(spender.token, 'uncached-2')).status, 429, 'a real device not cached is refused too, for this caller')
  t.equal((await sign(spender.token, 'cached-1')).status, 200, 'a cached device signs')
  t.equal((await sign(spender.token, 'made-up-3')).status, 404, 'a device remembered as unknown is answered from the cache')
  t.match(await batch(spender.token, ['cached-1', 'uncached-2', 'made-up-other']), [{ ok: true }, { ok: false, error: { code: 'RATE_LIMITED' } }, { ok: false, error: { code: 'RATE_LIMITED' } }])
  t.match(await batch(spender.token, ['made-up-batch-new']), [{ ok: false, error: { code: 'RATE_LIMITED' } }], 'a batch the cache holds nothing of makes no query')
  t.equal((await sign(other.token, 'uncached-2')).status, 503, 'another caller still asks the database (down now)')
  await postgres.start()
  t.equal((await sign(other.token, 'uncached-2')).status, 200, 'and signs once it is back')
})

t.test('200 concurrent POST /sign of one device not cached make one query (the unknown-device bound on)', async (t) => {
  const url = await createDeviceDatabase(postgres, DEVICES)
  const { sign, ready } = await startService(t, url, { RATE_LIMIT_UNKNOWN_PER_CALLER: '1000' })
  const answers = await Promise.all(Array.from({ length: 200 }, async () => (await sign('uncached-2')).status))
  t.same(new Set(answers), new Set([200]))
  t.match(await ready(), { body: { store: { cache: { misses: 1, hits: 199 } } } })
})

export type { Postgres }
