// HTTPS and mutual TLS on a real listener: device certificates bound to their device, other CAs and expired certificates refused, renewals picked up.
import { X509Certificate } from 'node:crypto'
import { copyFile } from 'node:fs/promises'
import t from 'tap'
import { EXAMPLE_PASSWORDS, buildTestApp, makeToken, tempDir, writeTokenFile } from '../helper.js'
import { fetchReady, post, serve } from './tls-client.js'
import { makePki } from './tls-helper.js'

const example = { productKey: '123', deviceKey: 'test', clientId: '123', timestamp: '1524448722000' }
const other = { productKey: 'Ab12Cd34', deviceKey: 'boiler-0001' }

t.test('TLS_CERT_FILE and TLS_KEY_FILE serve HTTPS (admission control watching new connections from their handshake)', async (t) => {
  const { port, pki } = await serve(t, () => ({ OVERLOAD_QUEUE_MS: '100' }))
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
