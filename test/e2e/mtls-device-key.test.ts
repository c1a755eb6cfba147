// MTLS_IDENTITY=deviceKey on a real TLS listener: refused while the store holds a deviceKey in two products (file at startup and reload, PostgreSQL at startup and per request).
import { rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'
import { FIXED_NOW, makeToken, tempDir, writeTokenFile } from '../helper.js'
import { createDeviceDatabase, startPostgres } from '../pg-helper.js'
import { CHILD_BUDGET_MS, run, waitFor } from './process-helper.js'
import { post } from './tls-client.js'
import { makePki, type Pki } from './tls-helper.js'

t.setTimeout(5 * CHILD_BUDGET_MS)

const SECRET_A = 'secret-of-pa-dev-1-aaaaaaaaaaaa'
const SECRET_B = 'secret-of-pb-dev-1-bbbbbbbbbbbb'
const pa = { productKey: 'PA', deviceKey: 'dev-1', deviceSecret: SECRET_A, enabled: true }
const pb = { productKey: 'PB', deviceKey: 'dev-1', deviceSecret: SECRET_B, enabled: true }

async function writeStore (path: string, devices: readonly object[]): Promise<void> {
  await writeFile(`${path}.new`, JSON.stringify({ devices }))
  await rename(`${path}.new`, path)
}

interface Tls { pki: Pki, env: Record<string, string> }

function tlsEnv (t: Test): Tls {
  const pki = makePki(tempDir(t, 'pki-'))
  const server = pki.issue('server', 'localhost', { san: 'subjectAltName=DNS:localhost,IP:127.0.0.1' })
  return { pki, env: { AUTH_MODE: 'mtls', TLS_CERT_FILE: server.certFile, TLS_KEY_FILE: server.keyFile, TLS_CLIENT_CA_FILE: pki.ca.certFile } }
}

async function listen (t: Test, env: Record<string, string>): Promise<{ app: FastifyInstance, port: number }> {
  const app = await buildApp(loadConfig({ LOG_LEVEL: 'silent', STORE_WATCH: 'false', RATE_LIMIT_PER_CALLER: '0', RATE_LIMIT_PER_DEVICE: '0', ...env }), { clock: () => FIXED_NOW })
  t.teardown(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  return { app, port: (app.server.address() as { port: number }).port }
}

t.test('the real service with MTLS_IDENTITY=deviceKey will not start on a store with a deviceKey in two products; with the default it starts, and a certificate signs for its own product only', async (t) => {
  const { pki, env } = tlsEnv(t)
  const storeFile = join(tempDir(t, 'store-'), 'devices.json')
  await writeStore(storeFile, [pa, pb])
  const refused = run(t, { ...env, STORE_FILE: storeFile, MTLS_IDENTITY: 'deviceKey' })
  t.equal((await refused.exit)[0], 1)
  t.match(refused.output(), `enos-mqtt-signer: ${storeFile}: a deviceKey is in more than one product: "dev-1" (products "PA", "PB"); ` +
    'MTLS_IDENTITY=deviceKey would let the certificate of one sign for all of them: set MTLS_IDENTITY=productKey/deviceKey')
  t.notMatch(refused.output(), /secret-of/)
  const started = run(t, { ...env, STORE_FILE: storeFile, AUTH_TOKENS_FILE: '' })
  const [, listening] = await waitFor(started, /Server listening at http:\/\/127\.0\.0\.1:(\d+)/)
  await waitFor(started, /"msg":"access control: mtls"/)
  const port = Number(listening)
  // The defect: a certificate naming the bare deviceKey of PA's dev-1 also signed for PB's dev-1.
  const bare = pki.issue('bare', 'dev-1')
  for (const productKey of ['PA', 'PB']) {
    t.match(await post(port, '/sign', { productKey, deviceKey: 'dev-1' }, { ca: pki.ca.cert, client: bare }), { status: 401, body: { message: 'the client certificate names no device (MTLS_IDENTITY=productKey/deviceKey)' } })
  }
  const named = pki.issue('named', 'PA/dev-1')
  t.equal((await post(port, '/sign', { productKey: 'PA', deviceKey: 'dev-1' }, { ca: pki.ca.cert, client: named })).status, 200)
  t.match(await post(port, '/sign', { productKey: 'PB', deviceKey: 'dev-1' }, { ca: pki.ca.cert, client: named }), { status: 403, body: { code: 'FORBIDDEN' } }, 'PA\'s certificate signs nothing of PB')
  started.child.kill('SIGTERM')
  t.same(await started.exit, [0, null])
})

t.test('MTLS_IDENTITY=deviceKey: a reload that brings the deviceKey into a second product is refused, shows in /readyz, and the old store stays', async (t) => {
  const { pki, env } = tlsEnv(t)
  const storeFile = join(tempDir(t, 'store-'), 'devices.json')
  await writeStore(storeFile, [pa])
  const { app, port } = await listen(t, { ...env, STORE_FILE: storeFile, MTLS_IDENTITY: 'deviceKey' })
  const device = pki.issue('dev-1', 'dev-1')
  t.equal((await post(port, '/sign', { productKey: 'PA', deviceKey: 'dev-1' }, { ca: pki.ca.cert, client: device })).status, 200)
  await writeStore(storeFile, [pa, pb])
  await app.reload()
  const ready = (await app.inject('/readyz')).json<{ store: { lastReloadError?: { message: string } } }>()
  t.match(ready.store.lastReloadError?.message, /STORE_FILE: a deviceKey is in more than one product: "dev-1" \(products "PA", "PB"\); MTLS_IDENTITY=deviceKey would let/)
  t.notMatch(JSON.stringify(ready), /secret-of/)
  t.match(await post(port, '/sign', { productKey: 'PB', deviceKey: 'dev-1' }, { ca: pki.ca.cert, client: device }), { status: 404, body: { code: 'DEVICE_NOT_FOUND' } }, 'the new version was not applied')
  t.equal((await post(port, '/sign', { productKey: 'PA', deviceKey: 'dev-1' }, { ca: pki.ca.cert, client: device })).status, 200, 'the old one still serves')
})

t.test('MTLS_IDENTITY=deviceKey over PostgreSQL: startup stops on a shared deviceKey; one added later refuses the certificate at once', async (t) => {
  const postgres = await startPostgres(t)
  const { pki, env } = tlsEnv(t)
  const pgEnv = { ...env, STORE: 'postgres', MTLS_IDENTITY: 'deviceKey' }
  const shared = await createDeviceDatabase(postgres, [pa, pb, { ...pa, productKey: 'PC' }, { ...pa, deviceKey: 'dev-2' }, { ...pb, deviceKey: 'dev-2' }])
  const err: unknown = await listen(t, { ...pgEnv, DATABASE_URL: shared }).catch((e: unknown) => e)
  t.match(err, {
    name: 'SharedDeviceKeyError',
    message: 'STORE=postgres: 2 deviceKeys are in more than one product: "dev-1" (products "PA", "PB", "PC"), "dev-2" (products "PA", "PB"); MTLS_IDENTITY=deviceKey would let'
  })
  t.notMatch(String(err), /secret-of/)

  const url = await createDeviceDatabase(postgres, [pa])
  const token = makeToken('tool', ['sign'], '*')
  const { port } = await listen(t, { ...pgEnv, DATABASE_URL: url, AUTH_TOKENS_FILE: writeTokenFile(t, [token]) })
  const device = pki.issue('dev-1', 'dev-1')
  t.equal((await post(port, '/sign', { productKey: 'PA', deviceKey: 'dev-1' }, { ca: pki.ca.cert, client: device })).status, 200)
  await postgres.sql(url, 'INSERT INTO devices (product_key, device_key, device_secret) VALUES ($1, $2, $3)', ['PB', 'dev-1', SECRET_B])
  const message = 'deviceKey "dev-1" is in more than one product, so a client certificate that names only the deviceKey (MTLS_IDENTITY=deviceKey) signs for none of them'
  for (const productKey of ['PA', 'PB']) {
    t.same((await post(port, '/sign', { productKey, deviceKey: 'dev-1' }, { ca: pki.ca.cert, client: device })).body, { statusCode: 403, code: 'FORBIDDEN', error: 'Forbidden', message }, `not for ${productKey}, cached or not`)
  }
  t.equal((await post(port, '/sign', { productKey: 'PB', deviceKey: 'dev-1' }, { ca: pki.ca.cert, headers: { authorization: `Bearer ${token.token}` } })).status, 200, 'a token names its products: not affected')
})
