// Rate limits per device on POST /sign and per caller on the signing routes: 429 RATE_LIMITED with Retry-After, 0 turns one off.
import t from 'tap'
import { buildTestApp, createLogSink, makeToken, writeTokenFile } from '../helper.js'

const example = { productKey: '123', deviceKey: 'test' }
const other = { productKey: 'Ab12Cd34', deviceKey: 'boiler-0001' }

t.test('31 quick requests for one device -> the 31st gets 429 RATE_LIMITED with Retry-After; other devices go on', async (t) => {
  const sink = createLogSink()
  const app = await buildTestApp(t, { RATE_LIMIT_PER_DEVICE: '30', LOG_LEVEL: 'info' }, { logStream: sink.stream })
  for (let i = 1; i <= 30; i++) {
    const res = await app.inject({ method: 'POST', url: '/sign', payload: example })
    if (res.statusCode !== 200) t.fail(`request ${i}: ${res.statusCode}`)
  }
  const limited = await app.inject({ method: 'POST', url: '/sign', payload: example })
  t.equal(limited.statusCode, 429)
  const retryAfter = Number(limited.headers['retry-after'])
  t.ok(retryAfter > 0 && retryAfter <= 60, `Retry-After: ${retryAfter} s`)
  t.equal(limited.headers['x-ratelimit-limit'], '30')
  t.equal(limited.headers['x-ratelimit-remaining'], '0')
  t.equal(limited.headers['x-ratelimit-reset'], String(retryAfter))
  t.same(limited.json(), {
    statusCode: 429,
    code: 'RATE_LIMITED',
    error: 'Too Many Requests',
    message: `more than 30 requests a minute for device "test" of product "123" (RATE_LIMIT_PER_DEVICE); retry after ${retryAfter} s`
  })
  t.equal((await app.inject({ method: 'POST', url: '/sign', payload: other })).statusCode, 200, 'another device is not held back')
  t.match(sink.lines().filter((l) => l.msg === 'request completed').at(-2), { audit: true, outcome: 'RATE_LIMITED', deviceKey: 'test' })
})

t.test('the per-caller limit counts a batch as one request, and names the caller', async (t) => {
  const tokens = [makeToken('tool', ['sign', 'sign:batch'], '*'), makeToken('other-tool', ['sign'], '*')]
  const app = await buildTestApp(t, { AUTH_MODE: 'token', AUTH_TOKENS_FILE: writeTokenFile(t, tokens), RATE_LIMIT_PER_CALLER: '3' })
  const headers = { authorization: `Bearer ${tokens[0]?.token as string}` }
  const batch = { devices: Array.from({ length: 50 }, () => example) }
  for (let i = 0; i < 3; i++) t.equal((await app.inject({ method: 'POST', url: '/sign/batch', headers, payload: batch })).statusCode, 200, `batch ${i + 1} of 50 devices`)
  const limited = await app.inject({ method: 'POST', url: '/sign', headers, payload: example })
  t.equal(limited.statusCode, 429)
  t.match(limited.json().message, /^more than 3 requests a minute from this caller \(RATE_LIMIT_PER_CALLER\); retry after \d+ s$/)
  const someoneElse = await app.inject({ method: 'POST', url: '/sign', headers: { authorization: `Bearer ${tokens[1]?.token as string}` }, payload: example })
  t.equal(someoneElse.statusCode, 200, 'another token has its own count')
})

t.test('open, the per-caller limit counts by client address; probes are never limited', async (t) => {
  const app = await buildTestApp(t, { RATE_LIMIT_PER_CALLER: '2' })
  for (let i = 0; i < 2; i++) await app.inject({ method: 'POST', url: '/sign', payload: example })
  t.equal((await app.inject({ method: 'POST', url: '/sign', payload: other })).statusCode, 429)
  t.equal((await app.inject({ method: 'POST', url: '/sign', payload: other, remoteAddress: '10.0.0.7' })).statusCode, 200, 'another address')
  for (let i = 0; i < 5; i++) t.equal((await app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200)
})

t.test('0 turns a limit off', async (t) => {
  const app = await buildTestApp(t, { RATE_LIMIT_PER_DEVICE: '0', RATE_LIMIT_PER_CALLER: '0' })
  for (let i = 0; i < 100; i++) {
    const res = await app.inject({ method: 'POST', url: '/sign', payload: example })
    if (res.statusCode !== 200) t.fail(`request ${i}: ${res.statusCode}`)
  }
  t.pass('100 requests for one device, none limited')
  t.match((await app.inject({ method: 'GET', url: '/readyz' })).json().access, { rateLimits: { perCaller: 0, perDevice: 0, shared: false } })
})

t.test('a device the caller may not sign for is refused before its limit is counted', async (t) => {
  const tokens = [makeToken('tool', ['sign'], ['Ab12Cd34']), makeToken('owner', ['sign'], ['123'])]
  const app = await buildTestApp(t, { AUTH_MODE: 'token', AUTH_TOKENS_FILE: writeTokenFile(t, tokens), RATE_LIMIT_PER_DEVICE: '2' })
  const as = (i: number): Record<string, string> => ({ authorization: `Bearer ${tokens[i]?.token as string}` })
  for (let i = 0; i < 5; i++) t.equal((await app.inject({ method: 'POST', url: '/sign', headers: as(0), payload: example })).statusCode, 403)
  t.equal((await app.inject({ method: 'POST', url: '/sign', headers: as(1), payload: example })).statusCode, 200, 'a stranger cannot use up the device\'s limit')
})
