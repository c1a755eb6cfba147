// TLS_CRL_FILE on a real listener with an openssl CA: revoked device certificates refused, a new CRL picked up without a restart, on open connections too.
import { once } from 'node:events'
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import type { IncomingMessage } from 'node:http'
import { Agent, request } from 'node:https'
import { connect } from 'node:net'
import { join } from 'node:path'
import { connect as connectTls, type TLSSocket } from 'node:tls'
import t from 'tap'
import { EXAMPLE_PASSWORDS, buildTestApp, tempDir } from '../helper.js'
import { type Answer, fetchReady, post, serve } from './tls-client.js'
import { makePki } from './tls-helper.js'

const example = { productKey: '123', deviceKey: 'test', clientId: '123', timestamp: '1524448722000' }

/** Writes `content` beside `path` and moves it into place, as an operator replacing a file atomically does. */
async function replaceFile (path: string, content: string): Promise<void> {
  await writeFile(`${path}.new`, content)
  await rename(`${path}.new`, path)
}

/** POST /sign over a TLS socket the test set up itself. */
async function postOver (socket: TLSSocket, body: object): Promise<{ status: number, body: Record<string, unknown> }> {
  const req = request({ path: '/sign', method: 'POST', headers: { host: 'localhost', 'content-type': 'application/json' }, createConnection: () => socket })
  req.end(JSON.stringify(body))
  const [res] = await once(req, 'response') as [IncomingMessage]
  let text = ''
  for await (const chunk of res) text += String(chunk)
  return { status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }
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
  // Until the reload: 200; a connection accepted just before it (its handshake after) gets 401 "changed after this connection was opened".
  const signsOrStale = (answer: Answer): boolean => answer.status === 200 || String(answer.body.message).includes('changed after this connection was opened')
  let answer = await post(port, '/sign', example, { ca, client: later })
  while (signsOrStale(answer)) answer = await post(port, '/sign', example, { ca, client: later })
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
  t.match(await buildTestApp(t, env).catch((e: unknown) => e), { name: 'TlsFileError', message: 'TLS_CRL_FILE holds no PEM certificate revocation list (-----BEGIN X509 CRL-----)' })
  await writeFile(crlFile, '-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n')
  t.match(await buildTestApp(t, env).catch((e: unknown) => e), { name: 'TlsFileError', message: /^TLS_CRL_FILE holds a revocation list that does not parse: / })
  const folder = join(pki.dir, 'crl.d')
  await mkdir(folder)
  t.match(await buildTestApp(t, { ...env, TLS_CRL_FILE: folder }).catch((e: unknown) => e), { name: 'TlsFileError', message: 'TLS_CRL_FILE is not a regular file' })
  t.match(await buildTestApp(t, { ...env, TLS_CRL_FILE: join(pki.dir, 'missing.pem') }).catch((e: unknown) => e), { name: 'TlsFileError', message: 'TLS_CRL_FILE cannot be read (ENOENT)' })

  const revoked = pki.issue('revoked', '123/test')
  pki.revoke('revoked')
  await writeFile(crlFile, pki.crl())
  const { port, sink } = await serve(t, () => ({ ...env, ...watching }), pki)
  await replaceFile(crlFile, 'not a CRL\n')
  while (!sink.raw().includes('TLS reload failed')) await new Promise((resolve) => setTimeout(resolve, 50))
  const ready = await fetchReady(port, pki.ca.cert)
  t.match(ready.access, { tls: { lastReloadError: { message: 'TLS_CRL_FILE holds no PEM certificate revocation list (-----BEGIN X509 CRL-----)' } } })
  t.notOk(JSON.stringify(ready).includes(pki.dir), 'and not where the file is')
  t.match(await post(port, '/sign', example, { ca: pki.ca.cert, client: revoked }), { status: 401, body: { message: 'the client certificate has been revoked (CERT_REVOKED)' } }, 'the old CRL still counts')
  t.equal((await post(port, '/sign', example, { ca: pki.ca.cert, client: pki.issue('fine', '123/test') })).status, 200)
})

t.test('a renewed server certificate leaves open device connections as they are; a changed client CA file makes them reconnect', async (t) => {
  const pki = makePki(tempDir(t, 'pki-'))
  const crlFile = join(pki.dir, 'crl.pem')
  await writeFile(crlFile, pki.crl())
  const caFile = join(tempDir(t, 'trust-'), 'ca.pem')
  await writeFile(caFile, pki.ca.cert)
  const { port, server, sink } = await serve(t, () => ({ AUTH_MODE: 'mtls', TLS_CLIENT_CA_FILE: caFile, TLS_CRL_FILE: crlFile, ...watching }), pki)
  const ca = pki.ca.cert
  const device = pki.issue('device', '123/test')
  const open = new Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => open.destroy())
  const first = await post(port, '/sign', example, { ca, client: device, agent: open })
  t.equal(first.status, 200)
  const reloads = (): number => sink.lines().filter((line) => line.msg === 'TLS certificate reloaded').length

  const renewed = pki.issue('renewed', 'localhost', { san: 'subjectAltName=DNS:localhost,IP:127.0.0.1' })
  await rename(renewed.keyFile, server.keyFile)
  await rename(renewed.certFile, server.certFile)
  while (reloads() === 0) await new Promise((resolve) => setTimeout(resolve, 50))
  const same = await post(port, '/sign', example, { ca, client: device, agent: open })
  t.equal(same.peer.serialNumber, first.peer.serialNumber, 'the connection opened before the renewal')
  t.equal(same.status, 200, 'signs on: the client CA and CRL did not change')

  // Waits for the reload that changed the trust: the renewal above may still reload once more (its two files).
  const trustReloads = (): number => sink.lines().filter((line) => line.msg === 'TLS certificate reloaded' && line.trustChanged === true).length
  t.equal(trustReloads(), 0, 'the renewal changed no trust')
  await replaceFile(caFile, pki.ca.cert + makePki(tempDir(t, 'pki-'), 'another-ca').ca.cert)
  while (trustReloads() === 0) await new Promise((resolve) => setTimeout(resolve, 50))
  t.match(await post(port, '/sign', example, { ca, client: device, agent: open }), { status: 401, headers: { connection: 'close' } }, 'checked under the old client CA')
  t.equal((await post(port, '/sign', example, { ca, client: device, agent: open })).status, 200, 'and signs once reconnected')
})

t.test('SIGHUP applies a new CRL at once, without waiting for the file to settle', async (t) => {
  const pki = makePki(tempDir(t, 'pki-'))
  const device = pki.issue('device', '123/test')
  const crlFile = join(pki.dir, 'crl.pem')
  await writeFile(crlFile, pki.crl())
  // A change is picked up by itself only after a minute here: what counts below is SIGHUP's reload.
  const { app, port } = await serve(t, (pki) => ({ AUTH_MODE: 'mtls', TLS_CLIENT_CA_FILE: pki.ca.certFile, TLS_CRL_FILE: crlFile, STORE_SETTLE_MS: '60000' }), pki)
  t.equal((await post(port, '/sign', example, { ca: pki.ca.cert, client: device })).status, 200)
  pki.revoke('device')
  await replaceFile(crlFile, pki.crl())
  await app.reload()
  t.match(await post(port, '/sign', example, { ca: pki.ca.cert, client: device }), { status: 401, body: { message: 'the client certificate has been revoked (CERT_REVOKED)' } })
})

t.test('/readyz names a TLS file that cannot be read by its variable, never by its path (certificate, key, client CA, CRL)', async (t) => {
  const pki = makePki(tempDir(t, 'pki-'))
  const crlFile = join(pki.dir, 'crl.pem')
  await writeFile(crlFile, pki.crl())
  const { app, port, server } = await serve(t, (pki) => ({ AUTH_MODE: 'mtls', TLS_CLIENT_CA_FILE: pki.ca.certFile, TLS_CRL_FILE: crlFile }), pki)
  const files = { TLS_CERT_FILE: server.certFile, TLS_KEY_FILE: server.keyFile, TLS_CLIENT_CA_FILE: pki.ca.certFile, TLS_CRL_FILE: crlFile }
  for (const [name, path] of Object.entries(files)) {
    const content = await readFile(path)
    await rm(path)
    await app.reload()
    const ready = await fetchReady(port, pki.ca.cert)
    t.match(ready.access, { tls: { lastReloadError: { message: `${name} cannot be read (ENOENT)` } } }, name)
    t.notOk(JSON.stringify(ready).includes(pki.dir), `${name}: no path in /readyz`)
    await writeFile(path, content)
    await app.reload()
    t.notOk('lastReloadError' in ((await fetchReady(port, pki.ca.cert)).access as { tls: object }).tls, `${name} back: the error is gone`)
  }
})

t.test('a connection accepted before a new CRL, with its handshake after it, was checked against the old CRL: its certificate gets 401', async (t) => {
  const pki = makePki(tempDir(t, 'pki-'))
  const device = pki.issue('device', '123/test')
  const crlFile = join(pki.dir, 'crl.pem')
  await writeFile(crlFile, pki.crl())
  const { app, port } = await serve(t, (pki) => ({ AUTH_MODE: 'mtls', TLS_CLIENT_CA_FILE: pki.ca.certFile, TLS_CRL_FILE: crlFile }), pki)
  const ca = pki.ca.cert
  // A TCP connection only: the server accepts it (Node gives it the secure context in force now), but no ClientHello is sent yet.
  const accepted = once(app.server, 'connection')
  const tcp = connect(port, '127.0.0.1')
  t.teardown(() => tcp.destroy())
  await accepted
  pki.revoke('device')
  await replaceFile(crlFile, pki.crl())
  await app.reload()
  // The handshake now, after the reload, on the connection accepted before it.
  const late = connectTls({ socket: tcp, ca, cert: device.cert, key: device.key, servername: 'localhost' })
  t.teardown(() => late.destroy())
  await once(late, 'secureConnect')
  t.match(await postOver(late, example), {
    status: 401,
    body: { code: 'UNAUTHENTICATED', message: /changed after this connection was opened: send the request again on a new connection/ }
  }, 'not signed: the handshake was checked against the old CRL')
  t.match(await post(port, '/sign', example, { ca, client: device }), { status: 401, body: { message: 'the client certificate has been revoked (CERT_REVOKED)' } }, 'a new connection is checked against the new CRL')
})

t.test('TLS reloads asked for while one runs wait for it and are merged; the one that runs last reads the files as they were when last asked for', async (t) => {
  const pki = makePki(tempDir(t, 'pki-'))
  const device = pki.issue('device', '123/test')
  const crlFile = join(pki.dir, 'crl.pem')
  await writeFile(crlFile, pki.crl())
  const { app, port, sink } = await serve(t, (pki) => ({ AUTH_MODE: 'mtls', TLS_CLIENT_CA_FILE: pki.ca.certFile, TLS_CRL_FILE: crlFile }), pki)
  const reloads = (): number => sink.lines().filter((line) => line.msg === 'TLS certificate reloaded').length
  // Four SIGHUPs at once: the first reads, the other three wait for it and then read once, together.
  await Promise.all([app.reload(), app.reload(), app.reload(), app.reload()])
  t.equal(reloads(), 2, 'two reads, one after the other')

  const asked = [app.reload()]
  pki.revoke('device')
  await replaceFile(crlFile, pki.crl())
  asked.push(app.reload(), app.reload())
  await Promise.all(asked)
  t.match(await post(port, '/sign', example, { ca: pki.ca.cert, client: device }), { status: 401, body: { message: 'the client certificate has been revoked (CERT_REVOKED)' } }, 'the CRL asked for last is in force')
})
