// Hostile input on every route, with and without credentials: never a 5xx, never a secret or a token out, and the service answers normally afterwards.
import fc from 'fast-check'
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { ERROR_STATUS } from '../../src/errors.js'
import { EXAMPLE_PASSWORDS, EXAMPLE_SECRETS, buildTestApp, createLogSink, makeToken, writeTokenFile } from '../helper.js'

const CODES = new Set(Object.keys(ERROR_STATUS))
const good = makeToken('fuzzer', ['sign', 'sign:batch', 'verify'], '*')
const narrow = makeToken('narrow', ['sign'], ['Ab12Cd34'])
let cases = 0

const field = fc.oneof(fc.string({ maxLength: 70 }), fc.constantFrom('123', 'test', 'sha256', 'MD5', '1524448722000', 'deviceSecret'), fc.anything())
const item = fc.oneof(
  fc.anything(),
  fc.record({ productKey: field, deviceKey: field, clientId: field, timestamp: field, signMethod: field, reference: field }, { requiredKeys: [] }),
  fc.dictionary(fc.string({ maxLength: 12 }), field)
)
/** Authorization headers a hostile client sends: nothing, garbage, huge, unicode, other schemes, empty or real bearers. */
const authorization = fc.oneof(
  fc.constant(undefined),
  fc.constantFrom('Bearer', 'Bearer ', 'Basic dXNlcjpwYXNz', 'bearer x', `Bearer ${good.token}`, `Bearer ${narrow.token}`, `Bearer ${good.token}x`, 'Bearer ' + 'A'.repeat(5000), 'Digest a=b'),
  fc.string({ maxLength: 300 }).map((text) => `Bearer ${text}`),
  fc.string({ unit: 'grapheme', maxLength: 100 }).map((text) => `Bearer ${text}`),
  fc.string({ maxLength: 100 })
)

/** One request as a hostile client might send it; the answer must be a 2xx or a 4xx with a known code. */
async function attack (app: FastifyInstance, request: { url: string, type: string, payload: string, authorization: string | undefined }): Promise<string> {
  cases++
  // Headers that HTTP itself cannot carry (control characters) are the HTTP layer's business, not the app's.
  const headers: Record<string, string> = { 'content-type': request.type }
  if (request.authorization !== undefined && /^[\t\x20-\x7e\x80-\xff]*$/.test(request.authorization)) headers.authorization = request.authorization
  const res = await app.inject({ method: 'POST', url: request.url, headers, payload: request.payload })
  if (res.statusCode >= 500) throw new Error(`${res.statusCode} ${res.body} for ${JSON.stringify(request).slice(0, 300)}`)
  if (res.statusCode >= 400 && res.headers['content-type']?.toString().includes('json') === true) {
    const error = res.json()
    if (!CODES.has(error.code) || error.statusCode !== res.statusCode) throw new Error(`unknown error ${res.body}`)
  }
  // A secret the request itself carried may come back (a reference is echoed); one it did not carry never may.
  const sent = JSON.stringify(request)
  for (const secret of [...EXAMPLE_SECRETS, good.token, good.entry.sha256, narrow.token]) {
    if (res.body.includes(secret) && !sent.includes(secret)) throw new Error(`a secret in the answer to ${sent.slice(0, 200)}`)
  }
  return res.body
}

const requestArb = fc.oneof(
  fc.record({ url: fc.constant('/sign'), type: fc.constant('application/json'), payload: item.map((value) => JSON.stringify(value) ?? 'null'), authorization }),
  fc.record({ url: fc.constant('/sign/batch'), type: fc.constant('application/json'), payload: fc.oneof(fc.array(item, { maxLength: 20 }).map((devices) => JSON.stringify({ devices })), item.map((value) => JSON.stringify(value) ?? 'null')), authorization }),
  fc.record({ url: fc.constant('/sign/batch'), type: fc.constant('application/x-ndjson'), payload: fc.array(fc.oneof(item.map((value) => JSON.stringify(value) ?? ''), fc.string({ maxLength: 80 })), { maxLength: 20 }).map((lines) => lines.join('\n')), authorization }),
  fc.record({ url: fc.constantFrom('/sign', '/sign/batch', '/healthz', '/nowhere'), type: fc.constantFrom('application/json', 'application/x-ndjson', 'text/plain', 'application/x-www-form-urlencoded'), payload: fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes).toString('latin1')), authorization })
)

for (const mode of ['none', 'token'] as const) {
  t.test(`every route, AUTH_MODE=${mode}: random bodies and Authorization headers get no 5xx, and no secret or token comes out`, async (t) => {
    const sink = createLogSink()
    const env: Record<string, string> = mode === 'token' ? { AUTH_MODE: 'token', AUTH_TOKENS_FILE: writeTokenFile(t, [good, narrow]) } : {}
    const app = await buildTestApp(t, { ...env, LOG_LEVEL: 'info', RATE_LIMIT_PER_DEVICE: '1000000', RATE_LIMIT_PER_CALLER: '1000000' }, { logStream: sink.stream })
    const before = cases
    await fc.assert(fc.asyncProperty(requestArb, async (request) => { await attack(app, request) }), { numRuns: 1000 })
    // The logs hold no request bodies, so not even a secret a client sent itself.
    for (const secret of [...EXAMPLE_SECRETS.slice(1), good.token, good.entry.sha256, narrow.token, narrow.entry.sha256]) {
      t.notOk(sink.raw().includes(secret), `no ${secret.slice(0, 6)}… in ${sink.lines().length} log lines`)
    }
    // And afterwards it still signs as it should.
    const res = await app.inject({ method: 'POST', url: '/sign', headers: { authorization: `Bearer ${good.token}` }, payload: { productKey: '123', deviceKey: 'test', clientId: '123', timestamp: '1524448722000' } })
    t.equal(res.json().mqttPassword, EXAMPLE_PASSWORDS.hmacsha1, 'the service answers normally afterwards')
    t.comment(`${cases - before} hostile requests tried`)
    t.pass(`${cases - before} hostile requests answered without a 5xx`)
  })
}

t.test('POST /sign – random bytes as a JSON body get a 4xx', async (t) => {
  const app = await buildTestApp(t)
  await fc.assert(fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 300 }), async (bytes) => {
    cases++
    const res = await app.inject({ method: 'POST', url: '/sign', headers: { 'content-type': 'application/json' }, payload: Buffer.from(bytes) })
    if (res.statusCode < 400 || res.statusCode >= 500) throw new Error(`${res.statusCode} ${res.body}`)
  }), { numRuns: 200 })
  t.pass('200 random payloads answered with a 4xx')
})

t.teardown(() => { process.stdout.write(`# hostile requests tried in all: ${cases}\n`) })
