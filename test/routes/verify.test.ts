// POST /verify: EMQX's request as JSON or a form, allow/deny/ignore, the negative cache, access control, errors and the log line.
import { pino } from 'pino'
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { signCredentials } from '../../src/core/credentials.js'
import { createFileStore } from '../../src/store/file-store.js'
import type { DeviceStore } from '../../src/store/store.js'
import { EXAMPLE_STORE_FILE } from '../../src/config.js'
import { EXAMPLE, EXAMPLE_PASSWORDS, EXAMPLE_SECRETS, FIXED_NOW, brokenStore, buildTestApp, createLogSink, makeToken, unavailableStore, writeTokenFile } from '../helper.js'

const good = {
  clientid: `${EXAMPLE.clientId}|securemode=2,signmethod=hmacsha1,timestamp=${EXAMPLE.timestamp}|`,
  username: `${EXAMPLE.deviceKey}&${EXAMPLE.productKey}`,
  password: EXAMPLE_PASSWORDS.hmacsha1
}
/** A device of examples/devices.json with its credentials, signed here with the core. */
const boiler = (deviceKey: string, secret: string) => {
  const c = signCredentials({ productKey: 'Ab12Cd34', deviceKey, deviceSecret: secret, clientId: deviceKey, timestamp: String(FIXED_NOW), signMethod: 'sha256' })
  return { clientid: c.mqttClientId, username: c.mqttUsername, password: c.mqttPassword }
}

async function verify (app: FastifyInstance, body: object | string, headers: Record<string, string> = {}) {
  return await app.inject({ method: 'POST', url: '/verify', payload: body, headers })
}

/** The example store, counting the lookups it answers. */
async function countingStore (t: Test): Promise<{ store: DeviceStore, lookups: () => number }> {
  const inner = await createFileStore({ path: EXAMPLE_STORE_FILE, watch: false, log: pino({ level: 'silent' }) })
  t.teardown(() => inner.close())
  let count = 0
  const store: DeviceStore = {
    kind: 'counting',
    findDevice: async (productKey, deviceKey) => { count++; return await inner.findDevice(productKey, deviceKey) },
    findDevices: async (keys) => await inner.findDevices(keys),
    checkHealth: async () => await inner.checkHealth(),
    close: async () => {}
  }
  return { store, lookups: () => count }
}

t.test('POST /verify – every worked example, upper- and lower-case hex -> 200 allow', async (t) => {
  const app = await buildTestApp(t)
  for (const [method, password] of Object.entries(EXAMPLE_PASSWORDS)) {
    for (const hex of [password, password.toLowerCase()]) {
      const res = await verify(app, { clientid: good.clientid.replace('hmacsha1', method), username: good.username, password: hex })
      t.equal(res.statusCode, 200)
      t.same(res.json(), { result: 'allow' }, `${method} ${hex === password ? 'upper' : 'lower'}`)
    }
  }
})

t.test('POST /verify – a flipped digit, a changed timestamp, another method, another device\'s password -> 200 deny', async (t) => {
  const app = await buildTestApp(t)
  const other = boiler('boiler-0001', EXAMPLE_SECRETS[1] as string)
  const cases = {
    'flipped digit': { ...good, password: '1' + good.password.slice(1) },
    'changed timestamp': { ...good, clientid: good.clientid.replace('1524448722000', '1524448722001') },
    'changed method': { ...good, clientid: good.clientid.replace('hmacsha1', 'md5') },
    'another device\'s password': { ...good, password: other.password },
    'another device\'s credentials for this device': { ...other, username: good.username }
  }
  for (const [name, body] of Object.entries(cases)) t.same((await verify(app, body)).json(), { result: 'deny' }, name)
})

t.test('POST /verify – the same fields as a form (application/x-www-form-urlencoded) -> allow or deny', async (t) => {
  const app = await buildTestApp(t)
  const form = { 'content-type': 'application/x-www-form-urlencoded' }
  t.same((await verify(app, new URLSearchParams(good).toString(), form)).json(), { result: 'allow' })
  t.same((await verify(app, new URLSearchParams({ ...good, password: '0'.repeat(40) }).toString(), form)).json(), { result: 'deny' })
  const missing = await verify(app, new URLSearchParams({ clientid: good.clientid }).toString(), form)
  t.equal(missing.statusCode, 400)
  t.match(missing.json(), { code: 'VALIDATION_FAILED', details: [{ path: 'username', message: 'is required' }, { path: 'password', message: 'is required' }] })
})

t.test('POST /verify – fields a broker template adds are ignored', async (t) => {
  const app = await buildTestApp(t)
  t.same((await verify(app, { ...good, peerhost: '10.0.0.7', protocol: 'mqtt' })).json(), { result: 'allow' })
})

t.test('POST /verify – a username that is not deviceKey&productKey -> ignore, or deny with VERIFY_NOT_OURS=deny', async (t) => {
  const app = await buildTestApp(t)
  t.same((await verify(app, { clientid: 'dashboard-1', username: 'admin', password: 'hunter2' })).json(), { result: 'ignore' })
  t.same((await verify(app, { clientid: 'dashboard-1', username: '', password: '' })).json(), { result: 'ignore' })
  const strict = await buildTestApp(t, { VERIFY_NOT_OURS: 'deny' })
  t.same((await verify(strict, { clientid: 'dashboard-1', username: 'admin', password: 'hunter2' })).json(), { result: 'deny' })
})

t.test('POST /verify – an unknown device, a disabled device, a client id without the EnOS suffix -> deny', async (t) => {
  const app = await buildTestApp(t)
  t.same((await verify(app, { ...good, username: 'ghost&123' })).json(), { result: 'deny' }, 'unknown device')
  t.same((await verify(app, boiler('retired-0003', EXAMPLE_SECRETS[3] as string))).json(), { result: 'deny' }, 'disabled, right password')
  t.same((await verify(app, boiler('boiler-0002', EXAMPLE_SECRETS[2] as string))).json(), { result: 'allow' }, 'its enabled sibling is allowed')
  t.same((await verify(app, { ...good, clientid: '123' })).json(), { result: 'deny' }, 'no suffix')
})

t.test('POST /verify – MAX_CREDENTIAL_AGE_MS denies credentials older or further ahead than the bound', async (t) => {
  const app = await buildTestApp(t, { MAX_CREDENTIAL_AGE_MS: '60000' })
  const at = (ms: number) => ({ ...good, clientid: good.clientid.replace(EXAMPLE.timestamp, String(ms)), password: signCredentials({ ...EXAMPLE, timestamp: String(ms), signMethod: 'hmacsha1' }).mqttPassword })
  t.same((await verify(app, at(FIXED_NOW - 60_000))).json(), { result: 'allow' }, 'a minute old')
  t.same((await verify(app, at(FIXED_NOW - 60_001))).json(), { result: 'deny' }, 'older')
  t.same((await verify(app, at(FIXED_NOW + 60_001))).json(), { result: 'deny' }, 'further ahead')
})

t.test('POST /verify – an unknown device is remembered for VERIFY_UNKNOWN_CACHE_MS: one store lookup, not one per CONNECT', async (t) => {
  const { store, lookups } = await countingStore(t)
  let now = FIXED_NOW
  const app = await buildTestApp(t, { VERIFY_UNKNOWN_CACHE_MS: '5000' }, { store, clock: () => now })
  const ghost = { ...good, username: 'ghost&123' }
  for (let i = 0; i < 5; i++) t.same((await verify(app, ghost)).json(), { result: 'deny' })
  t.equal(lookups(), 1, 'five denials, one lookup')
  t.same((await verify(app, good)).json(), { result: 'allow' }, 'known devices are looked up as usual')
  t.equal(lookups(), 2)
  now += 5001
  t.same((await verify(app, ghost)).json(), { result: 'deny' })
  t.equal(lookups(), 3, 'looked up again once the entry is older than VERIFY_UNKNOWN_CACHE_MS')
})

t.test('POST /verify – VERIFY_UNKNOWN_CACHE_MS=0: every CONNECT of an unknown device asks the store', async (t) => {
  const { store, lookups } = await countingStore(t)
  const app = await buildTestApp(t, { VERIFY_UNKNOWN_CACHE_MS: '0' }, { store })
  for (let i = 0; i < 3; i++) await verify(app, { ...good, username: 'ghost&123' })
  t.equal(lookups(), 3)
})

t.test('POST /verify – with tokens: the verify scope is needed, and a product outside the token is denied like an unknown device', async (t) => {
  const broker = makeToken('broker', ['verify'], ['Ab12Cd34'])
  const signer = makeToken('signer', ['sign'], '*')
  const sink = createLogSink()
  const app = await buildTestApp(t, { AUTH_MODE: 'token', AUTH_TOKENS_FILE: writeTokenFile(t, [broker, signer]), LOG_LEVEL: 'info' }, { logStream: sink.stream })
  const as = (token: string) => ({ authorization: `Bearer ${token}` })
  t.match((await verify(app, good)).json(), { statusCode: 401, code: 'UNAUTHENTICATED' })
  t.match((await verify(app, good, as(signer.token))).json(), { statusCode: 403, code: 'FORBIDDEN', message: 'the token "signer" has no "verify" scope' })
  t.same((await verify(app, boiler('boiler-0001', EXAMPLE_SECRETS[1] as string), as(broker.token))).json(), { result: 'allow' }, 'its own product')
  const outside = await verify(app, good, as(broker.token))
  const unknown = await verify(app, { ...good, username: 'ghost&Ab12Cd34' }, as(broker.token))
  t.equal(outside.statusCode, 200)
  t.equal(outside.body, unknown.body, 'the answer for a device of another product is exactly that of an unknown device')
  t.same(outside.json(), { result: 'deny' })
  const lines = sink.lines().filter((line) => line.route === '/verify' && line.statusCode === 200)
  t.match(lines.map((line) => line.reason), ['password matches', 'product not allowed for this caller', 'unknown device'], 'the log line tells them apart')
})

t.test('POST /verify – the log line says outcome and reason, names the device and caller, and never holds the password', async (t) => {
  const sink = createLogSink()
  const app = await buildTestApp(t, { LOG_LEVEL: 'info' }, { logStream: sink.stream })
  const wrong = '0123456789ABCDEF0123456789ABCDEF01234567'
  await verify(app, good)
  await verify(app, { ...good, password: wrong })
  await verify(app, new URLSearchParams({ ...good, password: wrong.toLowerCase() }).toString(), { 'content-type': 'application/x-www-form-urlencoded' })
  await verify(app, { clientid: 'x', username: 'admin', password: 'hunter2-admin' })
  const lines = sink.lines().filter((line) => line.route === '/verify')
  t.match(lines, [
    { audit: true, caller: 'open', productKey: '123', deviceKey: 'test', clientId: '123', statusCode: 200, outcome: 'allow', reason: 'password matches' },
    { outcome: 'deny', reason: 'mqttPassword does not match' },
    { outcome: 'deny', reason: 'mqttPassword does not match' },
    { outcome: 'ignore', reason: 'username is not <deviceKey>&<productKey>' }
  ])
  for (const secret of [good.password, good.password.toLowerCase(), wrong, wrong.toLowerCase(), 'hunter2-admin', EXAMPLE.deviceSecret]) {
    t.notOk(sink.raw().includes(secret), `the log never holds ${secret.slice(0, 6)}…`)
  }
})

t.test('POST /verify – bad bodies -> 400, 413, 415 with stable codes', async (t) => {
  const app = await buildTestApp(t)
  const notJson = await verify(app, '{"clientid":', { 'content-type': 'application/json' })
  t.match(notJson.json(), { statusCode: 400, code: 'MALFORMED_JSON' })
  const wrongType = await verify(app, { ...good, password: 1234 })
  t.match(wrongType.json(), { statusCode: 400, code: 'VALIDATION_FAILED', details: [{ path: 'password', message: 'must be a string' }] })
  const long = await verify(app, { ...good, username: 'x'.repeat(513) })
  t.match(long.json(), { statusCode: 400, code: 'VALIDATION_FAILED', details: [{ path: 'username', message: 'must be at most 512 characters' }] })
  const huge = await verify(app, { ...good, username: 'plain-user', extra: 'x'.repeat(5000) })
  t.match(huge.json(), { statusCode: 413, code: 'PAYLOAD_TOO_LARGE', message: 'request body is larger than 4096 bytes' })
  const hugeForm = await verify(app, new URLSearchParams({ ...good, username: 'plain-user', extra: 'x'.repeat(5000) }).toString(), { 'content-type': 'application/x-www-form-urlencoded' })
  t.match(hugeForm.json(), { statusCode: 413, code: 'PAYLOAD_TOO_LARGE' })
  const hugeString = await verify(app, JSON.stringify('x'.repeat(5000)), { 'content-type': 'application/json' })
  t.match(hugeString.json(), { statusCode: 413, code: 'PAYLOAD_TOO_LARGE' }, 'a body past 4 KiB that is not an object')
  t.match((await verify(app, '"short"', { 'content-type': 'application/json' })).json(), { statusCode: 400, code: 'VALIDATION_FAILED' })
  const beyondReading = await verify(app, { ...good, extra: 'x'.repeat(1024 * 1024) })
  t.match(beyondReading.json(), { statusCode: 413, code: 'PAYLOAD_TOO_LARGE' }, 'past 1 MiB, no CONNECT: 413 whatever the username')
  const text = await verify(app, 'clientid', { 'content-type': 'text/plain' })
  t.match(text.json(), { statusCode: 415, code: 'UNSUPPORTED_MEDIA_TYPE' })
})

t.test('POST /verify – a store that cannot answer -> 503 STORE_UNAVAILABLE (not remembered); a store bug -> 500 without internals', async (t) => {
  const down = await buildTestApp(t, {}, { store: unavailableStore() })
  const res = await verify(down, good)
  t.equal(res.statusCode, 503)
  t.match(res.json(), { code: 'STORE_UNAVAILABLE' })
  t.equal(res.headers['retry-after'], '5')
  const broken = await buildTestApp(t, {}, { store: brokenStore() })
  const bug = await verify(broken, good)
  t.equal(bug.statusCode, 500)
  t.notMatch(bug.body, /postgres|hunter2/)
})

t.test('POST /verify – no per-caller limit by default (the broker is one caller for the whole fleet); RATE_LIMIT_VERIFY_PER_CALLER opts in', async (t) => {
  const app = await buildTestApp(t, { RATE_LIMIT_PER_CALLER: '2', RATE_LIMIT_VERIFY_PER_DEVICE: '0' })
  const junk = { ...good, username: 'made-up&123' }
  for (let i = 0; i < 50; i++) {
    const res = await verify(app, junk)
    if (res.statusCode !== 200) t.fail(`junk ${i}: ${res.statusCode}`)
  }
  t.same((await verify(app, good)).json(), { result: 'allow' }, 'a real device after 50 junk CONNECTs, past RATE_LIMIT_PER_CALLER')
  t.match((await app.inject({ method: 'GET', url: '/readyz' })).json().access, { rateLimits: { verifyPerCaller: 0, verifyPerDevice: 0 } })

  const limited = await buildTestApp(t, { RATE_LIMIT_VERIFY_PER_CALLER: '2' })
  t.equal((await verify(limited, good)).statusCode, 200)
  t.equal((await verify(limited, good)).statusCode, 200)
  const third = await verify(limited, good)
  t.equal(third.statusCode, 429)
  t.match(third.json(), { code: 'RATE_LIMITED', message: /^more than 2 requests a minute from this caller \(RATE_LIMIT_VERIFY_PER_CALLER\); retry after \d+ s$/ })
})

t.test('POST /verify – past RATE_LIMIT_VERIFY_PER_DEVICE attempts a minute a device is denied; made-up devices count nothing, other devices go on', async (t) => {
  const sink = createLogSink()
  const app = await buildTestApp(t, { RATE_LIMIT_VERIFY_PER_DEVICE: '5', LOG_LEVEL: 'info' }, { logStream: sink.stream })
  // Made-up usernames of the same product, many of them and each many times: no counter for any.
  for (let i = 0; i < 300; i++) {
    const res = await verify(app, { ...good, username: `made-up-${i % 3}&${EXAMPLE.productKey}` })
    if (res.json().result !== 'deny') t.fail(`junk ${i}: ${res.body}`)
  }
  for (let i = 0; i < 5; i++) t.same((await verify(app, good)).json(), { result: 'allow' }, `attempt ${i + 1}`)
  t.same((await verify(app, good)).json(), { result: 'deny' }, 'the 6th in the minute: deny (a 429 would be `ignore` for EMQX)')
  t.match(sink.lines().filter((l) => l.msg === 'request completed').at(-1), { outcome: 'deny', reason: 'more attempts a minute than RATE_LIMIT_VERIFY_PER_DEVICE', deviceKey: EXAMPLE.deviceKey })
  t.same((await verify(app, boiler('boiler-0001', EXAMPLE_SECRETS[1] as string))).json(), { result: 'allow' }, 'another device is not held back')
})

t.test('POST /verify – a field or body too large, username ours -> 200 deny (not a 400/413 the broker passes on); not ours -> 400/413', async (t) => {
  const sink = createLogSink()
  const app = await buildTestApp(t, { LOG_LEVEL: 'info' }, { logStream: sink.stream })
  const form = { 'content-type': 'application/x-www-form-urlencoded' }
  const cases: Array<[string, object | string, Record<string, string>?]> = [
    ['a long password', { ...good, password: 'A'.repeat(600) }],
    ['a long clientid', { ...good, clientid: 'c'.repeat(70_000) }],
    ['a body past 4 KiB', { ...good, peerhost: 'x'.repeat(5000) }],
    ['a form past 4 KiB', new URLSearchParams({ ...good, password: 'A'.repeat(5000) }).toString(), form]
  ]
  for (const [what, body, headers] of cases) {
    const res = await verify(app, body, headers)
    t.equal(res.statusCode, 200, what)
    t.same(res.json(), { result: 'deny' }, what)
  }
  t.match(sink.lines().filter((l) => l.msg === 'request completed').at(-1), { outcome: 'deny', reason: `body or field too large (username ${good.username})` })
  const notOurs = await verify(app, { ...good, username: 'plain-user', password: 'A'.repeat(600) })
  t.match(notOurs.json(), { statusCode: 400, code: 'VALIDATION_FAILED', details: [{ path: 'password' }] })
  const longUser = await verify(app, { ...good, username: `${'d'.repeat(600)}&123` })
  t.equal(longUser.statusCode, 400, 'a username too long is not ours')
})
