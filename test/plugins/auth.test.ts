// Access control with bearer tokens: 401s, 403s without enumeration, scopes, the token file and its reloads, and the audit line.
import { writeFile } from 'node:fs/promises'
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { EXAMPLE_PASSWORDS, buildTestApp, createLogSink, makeToken, writeTokenFile, type TestToken } from '../helper.js'

const example = { productKey: '123', deviceKey: 'test', clientId: '123', timestamp: '1524448722000' }

const signer = makeToken('factory-line-1', ['sign', 'sign:batch'], ['123'])
const other = makeToken('other-product', ['sign', 'sign:batch'], ['Ab12Cd34'])
const single = makeToken('single-only', ['sign'], '*')
const verifier = makeToken('broker', ['verify'], '*')
const expired = makeToken('old', ['sign'], '*', '2020-01-01T00:00:00Z')
const ALL = [signer, other, single, verifier, expired]

interface Setup { app: FastifyInstance, sink: ReturnType<typeof createLogSink>, tokensFile: string }

async function setup (t: Test, tokens: readonly TestToken[] = ALL, env: Record<string, string> = {}): Promise<Setup> {
  const tokensFile = writeTokenFile(t, tokens)
  const sink = createLogSink()
  const app = await buildTestApp(t, { AUTH_MODE: 'token', AUTH_TOKENS_FILE: tokensFile, LOG_LEVEL: 'info', ...env }, { logStream: sink.stream })
  return { app, sink, tokensFile }
}

const bearer = (token: TestToken | string): Record<string, string> => ({ authorization: `Bearer ${typeof token === 'string' ? token : token.token}` })

async function sign (app: FastifyInstance, headers: Record<string, string>, body: object = example): Promise<{ statusCode: number, headers: Record<string, unknown>, body: string, json: () => Record<string, unknown> }> {
  const res = await app.inject({ method: 'POST', url: '/sign', headers, payload: body })
  return { statusCode: res.statusCode, headers: res.headers, body: res.body, json: () => res.json() }
}

t.test('the right token signs its product\'s device', async (t) => {
  const { app } = await setup(t)
  const res = await sign(app, bearer(signer))
  t.equal(res.statusCode, 200)
  t.equal(res.json().mqttPassword, EXAMPLE_PASSWORDS.hmacsha1)
  t.equal((await sign(app, bearer(single))).statusCode, 200, 'a token for every product ("*")')
})

t.test('no token -> 401 UNAUTHENTICATED with a Bearer challenge', async (t) => {
  const { app } = await setup(t)
  const res = await sign(app, {})
  t.equal(res.statusCode, 401)
  t.equal(res.headers['www-authenticate'], 'Bearer realm="enos-mqtt-signer"')
  t.same(res.json(), { statusCode: 401, code: 'UNAUTHENTICATED', error: 'Unauthorized', message: 'send Authorization: Bearer <token>' })
})

t.test('a malformed Authorization header -> 401 invalid_request, whatever it holds', async (t) => {
  const { app } = await setup(t)
  for (const header of ['Basic dXNlcjpwYXNz', 'Bearer', 'Bearer ', 'bearer', `Bearer ${'a'.repeat(600)}`, 'Bearer tok en', 'Bearer tökén', `Bearer ${signer.token} extra`, 'Token abc']) {
    const res = await sign(app, { authorization: header })
    t.equal(res.statusCode, 401, header.slice(0, 30))
    t.equal(res.headers['www-authenticate'], 'Bearer realm="enos-mqtt-signer", error="invalid_request"')
    t.match(res.json(), { code: 'UNAUTHENTICATED', message: 'the Authorization header must be "Bearer <token>"' })
  }
})

t.test('the Bearer scheme is case-insensitive (RFC 7235): bearer, BEARER and BeArEr sign', async (t) => {
  const { app } = await setup(t)
  for (const scheme of ['bearer', 'BEARER', 'BeArEr']) {
    const res = await sign(app, { authorization: `${scheme} ${signer.token}` })
    t.equal(res.statusCode, 200, scheme)
    t.equal(res.json().mqttPassword, EXAMPLE_PASSWORDS.hmacsha1, scheme)
  }
})

t.test('an unknown or an expired token -> 401 invalid_token', async (t) => {
  const { app } = await setup(t)
  const unknown = await sign(app, bearer(makeToken('x', ['sign'], '*')))
  t.equal(unknown.statusCode, 401)
  t.equal(unknown.headers['www-authenticate'], 'Bearer realm="enos-mqtt-signer", error="invalid_token"')
  t.match(unknown.json(), { code: 'UNAUTHENTICATED', message: 'the bearer token is not valid' })
  t.match((await sign(app, bearer(expired))).json(), { statusCode: 401, code: 'UNAUTHENTICATED', message: 'the bearer token has expired' })
})

t.test('a token for another product -> 403, byte for byte the same whether or not the device exists', async (t) => {
  const { app } = await setup(t)
  const exists = await sign(app, { ...bearer(other), 'x-request-id': 'same' })
  const missing = await sign(app, { ...bearer(other), 'x-request-id': 'same' }, { ...example, deviceKey: 'no-such-device' })
  t.equal(exists.statusCode, 403)
  t.same(exists.json(), { statusCode: 403, code: 'FORBIDDEN', error: 'Forbidden', message: 'the token "other-product" may not sign for product "123"' })
  t.equal(missing.body, exists.body, 'the same body')
  const headers = (res: typeof exists): Record<string, unknown> => Object.fromEntries(Object.entries(res.headers).filter(([name]) => name !== 'date'))
  t.same(headers(missing), headers(exists), 'the same headers')
  const unknownProduct = await sign(app, bearer(other), { ...example, productKey: 'NoSuchPk' })
  t.equal(unknownProduct.statusCode, 403, 'and for a product that does not exist at all')
})

t.test('a token without the route\'s scope -> 403 FORBIDDEN', async (t) => {
  const { app } = await setup(t)
  t.match((await sign(app, bearer(verifier))).json(), { statusCode: 403, code: 'FORBIDDEN', message: 'the token "broker" has no "sign" scope' })
  const batch = await app.inject({ method: 'POST', url: '/sign/batch', headers: bearer(single), payload: { devices: [example] } })
  t.equal(batch.statusCode, 403)
  t.match(batch.json(), { code: 'FORBIDDEN', message: 'the token "single-only" has no "sign:batch" scope' })
})

t.test('a batch fails the items of products outside the token\'s list, one by one', async (t) => {
  const { app, sink } = await setup(t)
  const res = await app.inject({
    method: 'POST',
    url: '/sign/batch',
    headers: bearer(signer),
    payload: { devices: [example, { ...example, deviceKey: 'nobody' }, { productKey: 'Ab12Cd34', deviceKey: 'boiler-0001' }, { productKey: 'Ab12Cd34', deviceKey: 'nobody' }] }
  })
  t.equal(res.statusCode, 200)
  const forbidden = { ok: false, error: { code: 'FORBIDDEN', message: 'the token "factory-line-1" may not sign for product "Ab12Cd34"' } }
  t.match(res.json(), {
    results: [{ index: 0, ok: true }, { index: 1, ok: false, error: { code: 'DEVICE_NOT_FOUND' } }, { index: 2, ...forbidden }, { index: 3, ...forbidden }],
    summary: { total: 4, signed: 1, failed: 3 }
  })
  t.same(res.json().results[2].error, res.json().results[3].error, 'an item of a hidden product: the same whether or not the device exists')
  const [line] = sink.lines().filter((l) => l.msg === 'request completed')
  t.match(line, {
    audit: true,
    caller: 'factory-line-1',
    clientAddress: '127.0.0.1',
    route: '/sign/batch',
    batch: {
      size: 4,
      signed: 1,
      failed: 3,
      // In input order, although refusals by the caller are decided before the lookups.
      failures: [
        { index: 1, productKey: '123', deviceKey: 'nobody', code: 'DEVICE_NOT_FOUND' },
        { index: 2, productKey: 'Ab12Cd34', deviceKey: 'boiler-0001', code: 'FORBIDDEN' },
        { index: 3, productKey: 'Ab12Cd34', deviceKey: 'nobody', code: 'FORBIDDEN' }
      ],
      signedByProduct: { 123: 1 }
    }
  })
})

t.test('probes and docs stay open', async (t) => {
  const { app } = await setup(t)
  for (const url of ['/healthz', '/readyz', '/openapi.json', '/docs/']) {
    t.equal((await app.inject({ method: 'GET', url })).statusCode, 200, url)
  }
})

t.test('every signing decision is an audit line: caller, device, clientId, outcome, request id, address; never a token', async (t) => {
  const { app, sink } = await setup(t)
  await sign(app, { ...bearer(signer), 'x-request-id': 'a-1' })
  await sign(app, { ...bearer(other), 'x-request-id': 'a-2' })
  await sign(app, { 'x-request-id': 'a-3' })
  await sign(app, { ...bearer(signer), 'x-request-id': 'a-4' }, { ...example, deviceKey: 'ghost', clientId: 'SN-9' })
  const audit = sink.lines().filter((l) => l.audit === true)
  t.match(audit, [
    { reqId: 'a-1', caller: 'factory-line-1', productKey: '123', deviceKey: 'test', clientId: '123', outcome: 'signed', clientAddress: '127.0.0.1' },
    { reqId: 'a-2', caller: 'other-product', productKey: '123', deviceKey: 'test', outcome: 'FORBIDDEN' },
    { reqId: 'a-3', caller: null, outcome: 'UNAUTHENTICATED' },
    { reqId: 'a-4', caller: 'factory-line-1', deviceKey: 'ghost', clientId: 'SN-9', outcome: 'DEVICE_NOT_FOUND' }
  ])
  for (const { token, entry } of ALL) {
    t.notOk(sink.raw().includes(token), `no ${entry.name} token in the logs`)
    t.notOk(sink.raw().includes(entry.sha256), `no ${entry.name} hash in the logs`)
  }
})

t.test('the token file is reloaded on change; a bad version keeps the old tokens and shows in /readyz', async (t) => {
  const { app, tokensFile } = await setup(t, [signer])
  const added = makeToken('added', ['sign'], '*')
  t.equal((await sign(app, bearer(added))).statusCode, 401)
  await writeFile(tokensFile, JSON.stringify({ tokens: [signer.entry, added.entry] }))
  await app.reload()
  t.equal((await sign(app, bearer(added))).statusCode, 200, 'a new token works after the reload (SIGHUP)')
  await writeFile(tokensFile, JSON.stringify({ tokens: [signer.entry, { ...added.entry, scopes: ['admin'] }] }))
  await app.reload()
  t.equal((await sign(app, bearer(added))).statusCode, 200, 'the previous tokens stay in force')
  const ready = (await app.inject({ method: 'GET', url: '/readyz' })).json()
  t.match(ready.access, { mode: 'token', tokens: { tokens: 2, lastReloadError: { message: /tokens\[1\] \(added\): scopes must each be one of sign, sign:batch, verify/ } } })
  t.notMatch(JSON.stringify(ready), added.entry.sha256)
})

t.test('a bad token file stops startup naming each bad entry, never a token or a hash', async (t) => {
  const bad = [
    { name: 'ok', sha256: signer.entry.sha256, scopes: ['sign'], products: '*' },
    { name: 'ok', sha256: other.entry.sha256, scopes: [], products: ['bad key'] },
    { name: 'dup-hash', sha256: signer.entry.sha256.toUpperCase(), scopes: ['sign'], products: '*', expires: 'tomorrow' },
    { name: 'short', sha256: 'abc', scopes: ['sign'], products: '*', extra: 1 },
    'not an object'
  ]
  const path = writeTokenFile(t, [])
  await writeFile(path, JSON.stringify({ tokens: bad }))
  const err: unknown = await buildTestApp(t, { AUTH_MODE: 'token', AUTH_TOKENS_FILE: path }).catch((e: unknown) => e)
  t.match(err, { name: 'TokenFileError' })
  const message = (err as Error).message
  t.match(message, `${path}: `)
  t.match(message, /tokens\[1\] \(ok\): scopes must list at least one scope/)
  t.match(message, /tokens\[1\] \(ok\): products must each be "\*" or a productKey/)
  t.match(message, /tokens\[2\] \(dup-hash\): expires must be an ISO date and time/)
  t.match(message, /tokens\[3\] \(short\): sha256 must be the SHA-256 of the token/)
  t.match(message, /tokens\[3\] \(short\): (extra )?.*Unrecognized key/i)
  t.match(message, /tokens\[4\]: /)
  for (const { token, entry } of [signer, other]) {
    t.notOk(message.includes(token) || message.includes(entry.sha256) || message.includes(entry.sha256.toUpperCase()), 'no token or hash in the message')
  }
  for (const [text, problem] of [['{', /not valid JSON/], ['[]', /a "tokens" array/], ['{"tokens":5}', /tokens: /], ['{"tokens":[{"name":"a","sha256":"' + 'a'.repeat(64) + '","scopes":["sign"],"products":"*"},{"name":"a","sha256":"' + 'b'.repeat(64) + '","scopes":["sign"],"products":"*"}]}', /tokens\[1\] \(a\): the name is used by another entry/]] as const) {
    await writeFile(path, text)
    await t.rejects(buildTestApp(t, { AUTH_MODE: 'token', AUTH_TOKENS_FILE: path }), { name: 'TokenFileError', message: problem })
  }
  await writeFile(path, JSON.stringify({ tokens: [signer.entry, { ...signer.entry, name: 'again' }] }))
  await t.rejects(buildTestApp(t, { AUTH_MODE: 'token', AUTH_TOKENS_FILE: path }), { message: /tokens\[1\] \(again\): the same token \(sha256\) is in another entry/ })
})

t.test('a token is remembered until its file changes: a narrowed or removed token is refused after the reload, an expired one at once', async (t) => {
  const expiresAt = Date.now() + 3000
  const soon = makeToken('soon', ['sign'], '*', new Date(expiresAt).toISOString())
  const { app, tokensFile } = await setup(t, [single, soon])
  t.equal((await sign(app, bearer(single))).statusCode, 200)
  t.equal((await sign(app, bearer(single))).statusCode, 200, 'again, as remembered')
  await writeFile(tokensFile, JSON.stringify({ tokens: [{ ...single.entry, products: ['Ab12Cd34'] }, soon.entry] }))
  await app.reload()
  t.match((await sign(app, bearer(single))).json(), { code: 'FORBIDDEN', message: 'the token "single-only" may not sign for product "123"' }, 'narrowed')
  await writeFile(tokensFile, JSON.stringify({ tokens: [soon.entry] }))
  await app.reload()
  t.match((await sign(app, bearer(single))).json(), { code: 'UNAUTHENTICATED', message: 'the bearer token is not valid' }, 'removed')
  // Remembered before it expires (unless this machine is too slow to get there first), refused once it has.
  const before = await sign(app, bearer(soon))
  if (Date.now() < expiresAt - 500) t.equal(before.statusCode, 200)
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, expiresAt - Date.now() + 50)))
  const after = await sign(app, bearer(soon))
  t.equal(after.statusCode, 401)
  t.match(after.json(), { message: 'the bearer token has expired' })
})
