// Rate limits per device (POST /sign and batch items together), per caller, and per caller's batch items: 429 RATE_LIMITED with Retry-After, 0 turns one off.
import t from 'tap'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { OPEN_CALLER } from '../../src/auth/caller.js'
import { addressKey } from '../../src/plugins/rate-limits.js'
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
    message: `more than 30 signatures a minute for device "test" of product "123" (RATE_LIMIT_PER_DEVICE); retry after ${retryAfter} s`
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
  const app = await buildTestApp(t, { RATE_LIMIT_PER_DEVICE: '0', RATE_LIMIT_PER_CALLER: '0', RATE_LIMIT_BATCH_ITEMS_PER_CALLER: '0' })
  for (let i = 0; i < 100; i++) {
    const res = await app.inject({ method: 'POST', url: '/sign', payload: example })
    if (res.statusCode !== 200) t.fail(`request ${i}: ${res.statusCode}`)
  }
  t.pass('100 requests for one device, none limited')
  const batch = await app.inject({ method: 'POST', url: '/sign/batch', payload: { devices: Array(1000).fill(example) } })
  t.same(batch.json().summary, { total: 1000, signed: 1000, failed: 0 }, 'a batch of 1000 items for that device, none limited')
  t.match((await app.inject({ method: 'GET', url: '/readyz' })).json().access, { rateLimits: { perCaller: 0, perDevice: 0, shared: false } })
})

t.test('a device the caller may not sign for is refused before its limit is counted', async (t) => {
  const tokens = [makeToken('tool', ['sign'], ['Ab12Cd34']), makeToken('owner', ['sign'], ['123'])]
  const app = await buildTestApp(t, { AUTH_MODE: 'token', AUTH_TOKENS_FILE: writeTokenFile(t, tokens), RATE_LIMIT_PER_DEVICE: '2' })
  const as = (i: number): Record<string, string> => ({ authorization: `Bearer ${tokens[i]?.token as string}` })
  for (let i = 0; i < 5; i++) t.equal((await app.inject({ method: 'POST', url: '/sign', headers: as(0), payload: example })).statusCode, 403)
  t.equal((await app.inject({ method: 'POST', url: '/sign', headers: as(1), payload: example })).statusCode, 200, 'a stranger cannot use up the device\'s limit')
})

const NDJSON = { 'content-type': 'application/x-ndjson' }
const ndjson = (items: readonly object[]): string => items.map((item) => JSON.stringify(item)).join('\n') + '\n'
/** The result lines of an NDJSON answer, without the summary. */
const streamResults = (body: string): Array<{ ok: boolean, error?: { code: string, message: string } }> =>
  body.trim().split('\n').map((line) => JSON.parse(line)).filter((line) => !('summary' in line))
const codes = (results: ReadonlyArray<{ ok: boolean, error?: { code: string } }>): Record<string, number> => {
  const counted: Record<string, number> = {}
  for (const result of results) {
    const code = result.ok ? 'signed' : result.error?.code as string
    counted[code] = (counted[code] ?? 0) + 1
  }
  return counted
}

t.test('a device refused with 429 on /sign is refused in a JSON batch and an NDJSON stream too: each such item fails alone with RATE_LIMITED', async (t) => {
  const app = await buildTestApp(t, { RATE_LIMIT_PER_DEVICE: '30' })
  for (let i = 0; i < 30; i++) await app.inject({ method: 'POST', url: '/sign', payload: example })
  t.equal((await app.inject({ method: 'POST', url: '/sign', payload: example })).statusCode, 429)

  const batch = await app.inject({ method: 'POST', url: '/sign/batch', payload: { devices: [...Array(999).fill(example), other] } })
  t.equal(batch.statusCode, 200)
  const { results, summary } = batch.json()
  t.same(summary, { total: 1000, signed: 1, failed: 999 })
  t.match(results[0], { index: 0, ok: false, error: { code: 'RATE_LIMITED', message: /^more than 30 signatures a minute for device "test" of product "123" \(RATE_LIMIT_PER_DEVICE\); retry after \d+ s$/ } })
  t.match(results[999], { index: 999, ok: true }, 'another device in the same batch is signed')

  const stream = await app.inject({ method: 'POST', url: '/sign/batch', headers: NDJSON, payload: ndjson(Array(5000).fill(example)) })
  t.same(codes(streamResults(stream.body)), { RATE_LIMITED: 5000 }, 'not one of 5000 stream lines signed')
})

t.test('POST /sign and batch items share one budget per device: a batch spends it, /sign is then refused', async (t) => {
  const app = await buildTestApp(t, { RATE_LIMIT_PER_DEVICE: '30' })
  const { results } = (await app.inject({ method: 'POST', url: '/sign/batch', payload: { devices: Array(40).fill(example) } })).json()
  t.same(codes(results), { signed: 30, RATE_LIMITED: 10 }, 'the first 30 items signed, the next 10 refused')
  t.equal((await app.inject({ method: 'POST', url: '/sign', payload: example })).statusCode, 429)
  const stream = await app.inject({ method: 'POST', url: '/sign/batch', headers: NDJSON, payload: ndjson(Array(40).fill(other)) })
  t.same(codes(streamResults(stream.body)), { signed: 30, RATE_LIMITED: 10 }, 'a stream counts each line')
})

t.test('batch items count against RATE_LIMIT_BATCH_ITEMS_PER_CALLER: items past it fail alone, naming the setting; another caller has its own', async (t) => {
  const tokens = [makeToken('tool', ['sign:batch'], '*'), makeToken('other-tool', ['sign:batch'], '*')]
  const app = await buildTestApp(t, { AUTH_MODE: 'token', AUTH_TOKENS_FILE: writeTokenFile(t, tokens), RATE_LIMIT_BATCH_ITEMS_PER_CALLER: '100', RATE_LIMIT_PER_DEVICE: '0' })
  const as = (i: number): Record<string, string> => ({ authorization: `Bearer ${tokens[i]?.token as string}` })
  const first = (await app.inject({ method: 'POST', url: '/sign/batch', headers: as(0), payload: { devices: Array(80).fill(example) } })).json()
  t.same(first.summary, { total: 80, signed: 80, failed: 0 })
  const second = (await app.inject({ method: 'POST', url: '/sign/batch', headers: as(0), payload: { devices: Array(80).fill(other) } })).json()
  t.same(codes(second.results), { signed: 20, RATE_LIMITED: 60 })
  t.match(second.results[79], { ok: false, error: { code: 'RATE_LIMITED', message: /^more than 100 batch items a minute from this caller \(RATE_LIMIT_BATCH_ITEMS_PER_CALLER\); retry after \d+ s$/ } })
  const stream = await app.inject({ method: 'POST', url: '/sign/batch', headers: { ...as(0), ...NDJSON }, payload: ndjson(Array(1000).fill(example)) })
  t.same(codes(streamResults(stream.body)), { RATE_LIMITED: 1000 }, 'a stream of the same caller: spent')
  const someoneElse = await app.inject({ method: 'POST', url: '/sign/batch', headers: { ...as(1), ...NDJSON }, payload: ndjson(Array(100).fill(example)) })
  t.same(codes(streamResults(someoneElse.body)), { signed: 100 })
  t.match((await app.inject({ method: 'GET', url: '/readyz' })).json().access, { rateLimits: { batchItemsPerCaller: 100, perDevice: 0 } })
})

t.test('open, an IPv6 client is one caller per /64; an IPv4-mapped address is its IPv4 one', async (t) => {
  const app = await buildTestApp(t, { RATE_LIMIT_PER_CALLER: '2', RATE_LIMIT_PER_DEVICE: '0' })
  const from = async (remoteAddress: string): Promise<number> => (await app.inject({ method: 'POST', url: '/sign', payload: example, remoteAddress })).statusCode
  t.same([await from('2001:db8:1:2::1'), await from('2001:db8:1:2:ffff:ffff:ffff:fffe')], [200, 200])
  t.equal(await from('2001:0db8:0001:0002:0:0:0:99'), 429, 'a third address of the same /64, spelt out in full')
  t.equal(await from('2001:db8:1:3::1'), 200, 'the next /64 is another caller')
  t.same([await from('::ffff:192.0.2.1'), await from('192.0.2.1'), await from('192.0.2.1')], [200, 200, 429], 'IPv4-mapped and plain IPv4: one caller')
})

t.test('addressKey: IPv4 as it is, IPv6 as its /64 in one spelling', async (t) => {
  t.equal(addressKey('10.1.2.3'), '10.1.2.3')
  t.equal(addressKey(undefined), '(gone)', 'a request whose connection is gone (request.ip undefined) gets a key, not a TypeError')
  t.equal(addressKey('::FFFF:10.1.2.3'), '10.1.2.3')
  t.equal(addressKey('::1'), '0:0:0:0::/64')
  t.equal(addressKey('fe80::1%eth0'), 'fe80:0:0:0::/64')
  t.equal(addressKey('2001:DB8::'), '2001:db8:0:0::/64')
  t.equal(addressKey('2001:db8:aa:bb:cc:dd:ee:ff'), '2001:db8:aa:bb::/64')
  t.equal(addressKey('64:ff9b::192.0.2.33'), '64:ff9b:0:0::/64')
  t.equal(addressKey('::ffff:1:192.0.2.33'), '0:0:0:0::/64')
})

t.test('counting in this process makes no promise: the per-caller hook is done before it returns, the per-device count returns nothing', async (t) => {
  const app = await buildTestApp(t, { RATE_LIMIT_PER_CALLER: '1', RATE_LIMIT_PER_DEVICE: '1' })
  const request = { caller: OPEN_CALLER, ip: '192.0.2.1' } as unknown as FastifyRequest
  const headers: Record<string, string> = {}
  const reply = { headers: (set: Record<string, string>) => Object.assign(headers, set) } as unknown as FastifyReply
  const { perCaller, perDevice } = app.limits
  if (perCaller === undefined || perDevice === undefined) throw new Error('both limits are set')
  const answers: Array<Error | undefined> = []
  perCaller(request, reply, (err) => { answers.push(err) })
  perCaller(request, reply, (err) => { answers.push(err) })
  t.equal(answers.length, 2, 'each count answered before the hook returned')
  t.equal(answers[0], undefined)
  t.match(answers[1], { code: 'RATE_LIMITED', message: /^more than 1 requests a minute from this caller \(RATE_LIMIT_PER_CALLER\); retry after \d+ s$/ })
  t.equal(headers['x-ratelimit-limit'], '1')
  t.equal(perDevice(request, reply, example), undefined, 'not a promise')
  t.throws(() => perDevice(request, reply, example), { code: 'RATE_LIMITED' })
})
