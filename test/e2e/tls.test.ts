// HTTPS and mutual TLS on a real listener: device certificates bound to their device, other CAs and expired certificates refused, renewals picked up.
import { X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import { copyFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Agent, request } from 'node:https'
import type { PeerCertificate, TLSSocket } from 'node:tls'
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { EXAMPLE_PASSWORDS, buildTestApp, createLogSink, makeToken, tempDir, writeTokenFile } from '../helper.js'
import { makePki, type Pem, type Pki } from './tls-helper.js'

/** GET /readyz over HTTPS. */
async function fetchReady (port: number, ca: string): Promise<{ access: Record<string, unknown> }> {
  const req = request({ host: '127.0.0.1', port, path: '/readyz', servername: 'localhost', ca, agent: false })
  req.end()
  const [res] = await once(req, 'response') as [import('node:http').IncomingMessage]
  let text = ''
  for await (const chunk of res) text += String(chunk)
  return JSON.parse(text) as { access: Record<string, unknown> }
}

interface Answer { status: number, body: Record<string, unknown>, peer: PeerCertificate, headers: import('node:http').IncomingHttpHeaders }

/** POST a JSON body over HTTPS, trusting the test CA, with an optional client certificate and headers; a new connection unless `agent` keeps one. */
async function post (port: number, path: string, body: object, options: { ca: string, client?: Pem, headers?: Record<string, string>, agent?: Agent }): Promise<Answer> {
  const req = request({
    host: '127.0.0.1',
    port,
    path,
    method: 'POST',
    servername: 'localhost',
    ca: options.ca,
    ...(options.client !== undefined && { cert: options.client.cert, key: options.client.key }),
    headers: { 'content-type': 'application/json', ...options.headers },
    agent: options.agent ?? false
  })
  req.end(JSON.stringify(body))
  const [res] = await once(req, 'response') as [import('node:http').IncomingMessage]
  // Read before the body: a keep-alive socket goes back to its agent once the response has ended.
  const peer = (res.socket as TLSSocket).getPeerCertificate()
  let text = ''
  for await (const chunk of res) text += String(chunk)
  return { status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown>, peer, headers: res.headers }
}

const example = { productKey: '123', deviceKey: 'test', clientId: '123', timestamp: '1524448722000' }
const other = { productKey: 'Ab12Cd34', deviceKey: 'boiler-0001' }

interface Served { app: FastifyInstance, port: number, pki: Pki, server: Pem, sink: ReturnType<typeof createLogSink> }

async function serve (t: Test, env: (pki: Pki, server: Pem) => Record<string, string>, pki = makePki(tempDir(t, 'pki-'))): Promise<Served> {
  const server = pki.issue('server', 'localhost', { san: 'subjectAltName=DNS:localhost,IP:127.0.0.1' })
  const sink = createLogSink()
  const app = await buildTestApp(t, { TLS_CERT_FILE: server.certFile, TLS_KEY_FILE: server.keyFile, LOG_LEVEL: 'info', ...env(pki, server) }, { logStream: sink.stream })
  await app.listen({ port: 0, host: '127.0.0.1' })
  return { app, port: (app.server.address() as { port: number }).port, pki, server, sink }
}

t.test('TLS_CERT_FILE and TLS_KEY_FILE serve HTTPS', async (t) => {
  const { port, pki } = await serve(t, () => ({}))
  const answer = await post(port, '/sign', example, { ca: pki.ca.cert })
  t.equal(answer.status, 200)
  t.equal(answer.body.mqttPassword, EXAMPLE_PASSWORDS.hmacsha1)
  const plain = await fetch(`http://127.0.0.1:${port}/healthz`).catch((err: Error) => err)
  t.type(plain, Error, 'plain HTTP is not answered on the TLS port')
})

t.test('a renewed certificate is served to new connections without a restart; a half-renewed pair keeps the old one', async (t) => {
  const { port, pki, server, sink } = await serve(t, () => ({ STORE_WATCH: 'true', STORE_SETTLE_MS: '50', STORE_POLL_MS: '100' }))
  const before = (await post(port, '/sign', example, { ca: pki.ca.cert })).peer.serialNumber
  const renewed = pki.issue('renewed', 'localhost', { san: 'subjectAltName=DNS:localhost,IP:127.0.0.1' })
  // The certificate first: it does not match the old key, so the old pair stays in use.
  await copyFile(renewed.certFile, server.certFile)
  while (!sink.raw().includes('TLS reload failed')) await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal((await post(port, '/sign', example, { ca: pki.ca.cert })).peer.serialNumber, before, 'still the old certificate')
  const ready = await fetchReady(port, pki.ca.cert)
  t.match(ready.access, { tls: { lastReloadError: { message: /do not make a TLS context/ } } })
  t.notMatch(JSON.stringify(ready), /PRIVATE KEY/)
  await copyFile(renewed.keyFile, server.keyFile)
  const serial = new X509Certificate(renewed.cert).serialNumber
  while ((await post(port, '/sign', example, { ca: pki.ca.cert })).peer.serialNumber !== serial) await new Promise((resolve) => setTimeout(resolve, 50))
  t.pass('the renewed certificate, once its key followed')
  t.notOk('lastReloadError' in ((await fetchReady(port, pki.ca.cert)).access as { tls: object }).tls, 'and the error is gone')
})

t.test('a key that does not match its certificate stops startup naming the files, not the key', async (t) => {
  const pki = makePki(tempDir(t, 'pki-'))
  const one = pki.issue('one', 'localhost')
  const two = pki.issue('two', 'localhost')
  const err: unknown = await buildTestApp(t, { TLS_CERT_FILE: one.certFile, TLS_KEY_FILE: two.keyFile }).catch((e: unknown) => e)
  t.match(err, { name: 'TlsFileError', message: /^TLS_CERT_FILE, TLS_KEY_FILE and TLS_CLIENT_CA_FILE do not make a TLS context: / })
  t.notMatch((err as Error).message, /PRIVATE KEY|BEGIN/)
})

t.test('mutual TLS: a device certificate signs for its own device only, with no token', async (t) => {
  const token = makeToken('provisioning', ['sign', 'sign:batch'], '*')
  const { port, pki, sink } = await serve(t, (pki) => ({ AUTH_MODE: 'mtls', TLS_CLIENT_CA_FILE: pki.ca.certFile, AUTH_TOKENS_FILE: writeTokenFile(t, [token]) }))
  const device = pki.issue('device-test', '123/test')
  const mine = await post(port, '/sign', example, { ca: pki.ca.cert, client: device })
  t.equal(mine.status, 200)
  t.equal(mine.body.mqttPassword, EXAMPLE_PASSWORDS.hmacsha1)
  const theirs = await post(port, '/sign', other, { ca: pki.ca.cert, client: device })
  t.equal(theirs.status, 403)
  t.same(theirs.body, { statusCode: 403, code: 'FORBIDDEN', error: 'Forbidden', message: 'this client certificate may sign only for its own device' })
  const batch = await post(port, '/sign/batch', { devices: [example] }, { ca: pki.ca.cert, client: device })
  t.match(batch, { status: 403, body: { code: 'FORBIDDEN', message: 'this client certificate has no "sign:batch" scope' } })
  const tool = await post(port, '/sign/batch', { devices: [example, other] }, { ca: pki.ca.cert, headers: { authorization: `Bearer ${token.token}` } })
  t.match(tool, { status: 200, body: { summary: { signed: 2 } } }, 'a provisioning tool uses a token over the same listener')
  t.match(await post(port, '/sign', example, { ca: pki.ca.cert }), { status: 401, body: { code: 'UNAUTHENTICATED', message: 'send a client certificate of the device, or Authorization: Bearer <token>' } })
  t.match(sink.lines().filter((l) => l.audit === true && l.route === '/sign'), [{ caller: 'cert:123/test', outcome: 'signed' }, { caller: 'cert:123/test', outcome: 'FORBIDDEN' }, { caller: null, outcome: 'UNAUTHENTICATED' }])
})

t.test('mutual TLS: an expired certificate and one from another CA are refused', async (t) => {
  const { port, pki } = await serve(t, (pki) => ({ AUTH_MODE: 'mtls', TLS_CLIENT_CA_FILE: pki.ca.certFile }))
  const expired = await post(port, '/sign', example, { ca: pki.ca.cert, client: pki.issue('expired', '123/test', { expired: true }) })
  t.match(expired, { status: 401, body: { code: 'UNAUTHENTICATED', message: 'the client certificate is not accepted (CERT_HAS_EXPIRED)' } })
  const stranger = makePki(tempDir(t, 'pki-'), 'other-ca').issue('stranger', '123/test')
  const foreign = await post(port, '/sign', example, { ca: pki.ca.cert, client: stranger })
  t.match(foreign, { status: 401, body: { code: 'UNAUTHENTICATED', message: /^the client certificate is not accepted \((UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)\)$/ } })
  const nameless = await post(port, '/sign', example, { ca: pki.ca.cert, client: pki.issue('nameless', 'not a key!') })
  t.match(nameless, { status: 401, body: { message: 'the client certificate names no device (MTLS_IDENTITY=productKey/deviceKey)' } })
  const bare = await post(port, '/sign', example, { ca: pki.ca.cert, client: pki.issue('bare', 'test') })
  t.match(bare, { status: 401, body: { message: 'the client certificate names no device (MTLS_IDENTITY=productKey/deviceKey)' } }, 'by default a bare deviceKey names no device')
})

t.test('MTLS_IDENTITY=productKey/deviceKey (the default) binds a certificate to one product\'s device, by CN or SAN', async (t) => {
  const { port, pki } = await serve(t, (pki) => ({ AUTH_MODE: 'mtls', TLS_CLIENT_CA_FILE: pki.ca.certFile }))
  const byCn = pki.issue('by-cn', '123/test')
  t.equal((await post(port, '/sign', example, { ca: pki.ca.cert, client: byCn })).status, 200)
  const bySan = pki.issue('by-san', 'some device', { san: 'subjectAltName=URI:Ab12Cd34/boiler-0001,DNS:ignored.example' })
  t.equal((await post(port, '/sign', other, { ca: pki.ca.cert, client: bySan })).status, 200)
  t.equal((await post(port, '/sign', example, { ca: pki.ca.cert, client: bySan })).status, 403)
  const wrongProduct = pki.issue('wrong-product', 'Ab12Cd34/test')
  t.equal((await post(port, '/sign', example, { ca: pki.ca.cert, client: wrongProduct })).status, 403, 'the same deviceKey in another product')
})

/** Writes `content` beside `path` and moves it into place, as an operator replacing a file atomically does. */
async function replaceFile (path: string, content: string): Promise<void> {
  await writeFile(`${path}.new`, content)
  await rename(`${path}.new`, path)
}

const watching = { STORE_WATCH: 'true', STORE_SETTLE_MS: '50', STORE_POLL_MS: '100' }

t.test('TLS_CRL_FILE: a revoked device certificate gets 401; a new CRL moved into place counts without a restart, on open connections too', async (t) => {
  const pki = makePki(tempDir(t, 'pki-'))
  const revoked = pki.issue('revoked', '123/test')
  const later = pki.issue('later', '123/test')
  const kept = pki.issue('kept', '123/test')
  pki.revoke('revoked')
  const crlFile = join(pki.dir, 'crl.pem')
  await writeFile(crlFile, pki.crl())
  const { port, sink } = await serve(t, (pki) => ({ AUTH_MODE: 'mtls', TLS_CLIENT_CA_FILE: pki.ca.certFile, TLS_CRL_FILE: crlFile, ...watching }), pki)
  const ca = pki.ca.cert
  t.match(await post(port, '/sign', example, { ca, client: revoked }), {
    status: 401,
    body: { code: 'UNAUTHENTICATED', message: 'the client certificate has been revoked (CERT_REVOKED)' }
  })
  t.match(await post(port, '/sign', example, { ca, client: later }), { status: 200, body: { mqttPassword: EXAMPLE_PASSWORDS.hmacsha1 } }, 'another certificate of the same CA signs')
  const open = new Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => open.destroy())
  t.equal((await post(port, '/sign', example, { ca, client: kept, agent: open })).status, 200, 'a device on a keep-alive connection')

  pki.revoke('later')
  await replaceFile(crlFile, pki.crl())
  let answer = await post(port, '/sign', example, { ca, client: later })
  while (answer.status === 200) answer = await post(port, '/sign', example, { ca, client: later })
  t.match(answer, { status: 401, body: { message: 'the client certificate has been revoked (CERT_REVOKED)' } }, 'revoked by the new CRL, no restart')
  t.ok(sink.raw().includes('TLS certificate reloaded'))

  // A connection opened before the new CRL was checked against the old one: it must reconnect to be checked again.
  const stale = await post(port, '/sign', example, { ca, client: kept, agent: open })
  t.match(stale, { status: 401, body: { code: 'UNAUTHENTICATED', message: /changed after this connection was opened: send the request again on a new connection/ }, headers: { connection: 'close' } })
  t.equal((await post(port, '/sign', example, { ca, client: kept, agent: open })).status, 200, 'the same agent reconnects and signs')
  t.equal((await post(port, '/sign', example, { ca, client: revoked })).status, 401, 'the first revocation still holds')
})

t.test('TLS_CRL_FILE: a CRL past its nextUpdate refuses every certificate, saying revocation cannot be checked', async (t) => {
  const pki = makePki(tempDir(t, 'pki-'))
  const crlFile = join(pki.dir, 'crl.pem')
  await writeFile(crlFile, pki.crl({ expired: true }))
  const { port } = await serve(t, (pki) => ({ AUTH_MODE: 'mtls', TLS_CLIENT_CA_FILE: pki.ca.certFile, TLS_CRL_FILE: crlFile }), pki)
  t.match(await post(port, '/sign', example, { ca: pki.ca.cert, client: pki.issue('device', '123/test') }), {
    status: 401,
    body: { code: 'UNAUTHENTICATED', message: "the revocation of the client certificate cannot be checked: the service's TLS_CRL_FILE is out of date or lacks the CRL of its CA (CRL_HAS_EXPIRED)" }
  })
})

t.test('TLS_CRL_FILE: a file of CRLs of several CAs counts each of them', async (t) => {
  const pki = makePki(tempDir(t, 'pki-'))
  const second = makePki(tempDir(t, 'pki-'), 'second-ca')
  const device = pki.issue('device', '123/test')
  const revoked = second.issue('revoked', '123/test')
  second.revoke('revoked')
  const dir = tempDir(t, 'trust-')
  const caFile = join(dir, 'cas.pem')
  const crlFile = join(dir, 'crls.pem')
  await writeFile(caFile, pki.ca.cert + second.ca.cert)
  await writeFile(crlFile, pki.crl() + second.crl())
  const { port } = await serve(t, () => ({ AUTH_MODE: 'mtls', TLS_CLIENT_CA_FILE: caFile, TLS_CRL_FILE: crlFile }), pki)
  t.equal((await post(port, '/sign', example, { ca: pki.ca.cert, client: device })).status, 200)
  t.match(await post(port, '/sign', example, { ca: pki.ca.cert, client: revoked }), { status: 401, body: { message: 'the client certificate has been revoked (CERT_REVOKED)' } }, 'the second CRL of the file')
  t.match(await post(port, '/sign', example, { ca: pki.ca.cert, client: second.issue('fine', '123/test') }), { status: 200 })
})

t.test('TLS_CRL_FILE: a bad file stops startup naming it; a bad new version keeps the CRL in force and shows in /readyz', async (t) => {
  const pki = makePki(tempDir(t, 'pki-'))
  const server = pki.issue('server', 'localhost', { san: 'subjectAltName=DNS:localhost,IP:127.0.0.1' })
  const crlFile = join(pki.dir, 'crl.pem')
  const env = { AUTH_MODE: 'mtls', TLS_CERT_FILE: server.certFile, TLS_KEY_FILE: server.keyFile, TLS_CLIENT_CA_FILE: pki.ca.certFile, TLS_CRL_FILE: crlFile }
  await writeFile(crlFile, pki.ca.cert)
  t.match(await buildTestApp(t, env).catch((e: unknown) => e), { name: 'TlsFileError', message: `TLS_CRL_FILE: ${crlFile} holds no PEM certificate revocation list (-----BEGIN X509 CRL-----)` })
  await writeFile(crlFile, '-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n')
  t.match(await buildTestApp(t, env).catch((e: unknown) => e), { name: 'TlsFileError', message: `TLS_CRL_FILE: ${crlFile} holds a revocation list that does not parse: ` })

  const revoked = pki.issue('revoked', '123/test')
  pki.revoke('revoked')
  await writeFile(crlFile, pki.crl())
  const { port, sink } = await serve(t, () => ({ ...env, ...watching }), pki)
  await replaceFile(crlFile, 'not a CRL\n')
  while (!sink.raw().includes('TLS reload failed')) await new Promise((resolve) => setTimeout(resolve, 50))
  t.match((await fetchReady(port, pki.ca.cert)).access, { tls: { lastReloadError: { message: /^TLS_CRL_FILE: .* holds no PEM certificate revocation list/ } } })
  t.match(await post(port, '/sign', example, { ca: pki.ca.cert, client: revoked }), { status: 401, body: { message: 'the client certificate has been revoked (CERT_REVOKED)' } }, 'the old CRL still counts')
  t.equal((await post(port, '/sign', example, { ca: pki.ca.cert, client: pki.issue('fine', '123/test') })).status, 200)
})
