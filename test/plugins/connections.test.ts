// The default connection bound, read from the process's open-file limit, and the cut of quiet connections.
import { once } from 'node:events'
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'
import { connect, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import type { Duplex } from 'node:stream'
import { connect as tlsConnect } from 'node:tls'
import t, { type Test } from 'tap'
import { AppError } from '../../src/errors.js'
import { FD_RESERVE, defaultMaxConnections } from '../../src/plugins/connections.js'
import type { DeviceStore } from '../../src/store/store.js'
import { makePki } from '../e2e/tls-helper.js'
import { buildTestApp, tempDir } from '../helper.js'

const LIMITS = (soft: string): string => [
  'Limit                     Soft Limit           Hard Limit           Units     ',
  'Max processes             127431               127431               processes ',
  `Max open files            ${soft.padEnd(20)} 1048576              files     `,
  ''
].join('\n')

t.test('the default bound is the soft open-file limit less the reserve', async (t) => {
  const dir = t.testdir({ limits: LIMITS('1024'), tiny: LIMITS('64'), unlimited: LIMITS('unlimited') })
  t.equal(defaultMaxConnections(join(dir, 'limits')), 1024 - FD_RESERVE)
  t.equal(defaultMaxConnections(join(dir, 'tiny')), 16, 'never below 16')
  t.equal(defaultMaxConnections(join(dir, 'unlimited')), undefined, 'no limit, no bound')
  t.equal(defaultMaxConnections(join(dir, 'missing')), undefined, 'not Linux: no bound')
})

t.test('this process gets a bound from its real limit, and MAX_CONNECTIONS overrides it', async (t) => {
  const auto = await buildTestApp(t)
  t.equal(auto.server.maxConnections, defaultMaxConnections())
  const set = await buildTestApp(t, { MAX_CONNECTIONS: '77' })
  t.equal(set.server.maxConnections, 77)
})

// ---- the cut of quiet connections (a sweep, not Node's per-socket idle timer) ----

/** A store whose lookups never answer until the test ends: a request on it moves no byte. */
function stuckStore (t: Test): DeviceStore {
  const waiting: Array<() => void> = []
  t.teardown(() => { for (const release of waiting) release() })
  const stuck = async (): Promise<never> => {
    await new Promise<void>((resolve) => waiting.push(resolve))
    throw new AppError('STORE_UNAVAILABLE', 'released at the end of the test')
  }
  return { kind: 'fake', findDevice: stuck, findDevices: stuck, checkHealth: async () => ({ ok: true, kind: 'fake', detail: 'stuck' }), close: async () => {} }
}

const SIGN = JSON.stringify({ productKey: '123', deviceKey: 'test', clientId: '123', timestamp: '1524448722000' })
const SIGN_REQUEST = `POST /sign HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${SIGN.length}\r\n\r\n${SIGN}`
// REQUEST_TIMEOUT_MS=300: connections are looked at every 75 ms and cut after 2 × 300 + 75 ms without a byte.
const QUIET = { REQUEST_TIMEOUT_MS: '300' }
const IDLE_MS = 675

/** Sends one whole request on `socket` and resolves with how long the server took to close the connection (Infinity: it did not within 5 s). */
async function closedAfter (socket: Duplex): Promise<number> {
  const started = Date.now()
  socket.on('error', () => {})
  socket.write(SIGN_REQUEST)
  let timer: NodeJS.Timeout | undefined
  const closed = await Promise.race([
    once(socket, 'close').then(() => true),
    new Promise<false>((resolve) => { timer = setTimeout(resolve, 5000, false) })
  ])
  clearTimeout(timer)
  socket.destroy()
  return closed ? Date.now() - started : Infinity
}

t.test('a connection on which nothing moves is closed once the idle limit has passed, not before', async (t) => {
  const app = await buildTestApp(t, QUIET, { store: stuckStore(t) })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const socket = connect((app.server.address() as AddressInfo).port, '127.0.0.1')
  await once(socket, 'connect')
  const elapsed = await closedAfter(socket)
  // The request is whole, so neither the request nor the headers timeout applies: only the sweep closes it.
  t.ok(elapsed >= IDLE_MS - 20 && elapsed < IDLE_MS + 2000, `closed after ${elapsed} ms`)
})

/** Sends `count` requests one after the other, `gapMs` apart, through one keep-alive connection of `agent`. */
async function busyConnection (t: Test, send: (agent: HttpAgent) => Promise<number>, agent: HttpAgent, count: number, gapMs: number): Promise<void> {
  t.teardown(() => agent.destroy())
  for (let i = 0; i < count; i++) {
    t.equal(await send(agent), 200)
    await new Promise((resolve) => setTimeout(resolve, gapMs))
  }
}

t.test('a busy keep-alive connection is not cut, however long it lives', async (t) => {
  const app = await buildTestApp(t, QUIET)
  await app.listen({ port: 0, host: '127.0.0.1' })
  let connections = 0
  app.server.on('connection', () => { connections++ })
  const port = (app.server.address() as AddressInfo).port
  const send = async (agent: HttpAgent): Promise<number> => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/sign', method: 'POST', agent, headers: { 'content-type': 'application/json' } })
    req.end(SIGN)
    const [res] = await once(req, 'response') as [IncomingMessage]
    res.resume()
    await once(res, 'end')
    return res.statusCode ?? 0
  }
  // 15 requests 100 ms apart: the connection lives about twice the idle limit.
  await busyConnection(t, send, new HttpAgent({ keepAlive: true, maxSockets: 1 }), 15, 100)
  t.equal(connections, 1, 'every request went over the first connection')
})

t.test('over HTTPS the TLS connection is what is watched: busy ones live on, quiet ones are cut', async (t) => {
  const pki = makePki(tempDir(t, 'pki-'))
  const cert = pki.issue('server', 'localhost', { san: 'subjectAltName=DNS:localhost,IP:127.0.0.1' })
  const app = await buildTestApp(t, { ...QUIET, TLS_CERT_FILE: cert.certFile, TLS_KEY_FILE: cert.keyFile })
  await app.listen({ port: 0, host: '127.0.0.1' })
  let connections = 0
  app.server.on('secureConnection', () => { connections++ })
  const port = (app.server.address() as AddressInfo).port
  const send = async (agent: HttpAgent): Promise<number> => {
    const req = httpsRequest({ host: '127.0.0.1', port, path: '/healthz', servername: 'localhost', agent })
    req.end()
    const [res] = await once(req, 'response') as [IncomingMessage]
    res.resume()
    await once(res, 'end')
    return res.statusCode ?? 0
  }
  await busyConnection(t, send, new HttpsAgent({ keepAlive: true, maxSockets: 1, ca: pki.ca.cert }), 15, 100)
  t.equal(connections, 1, 'every request went over the first connection')

  const stuck = await buildTestApp(t, { ...QUIET, TLS_CERT_FILE: cert.certFile, TLS_KEY_FILE: cert.keyFile }, { store: stuckStore(t) })
  await stuck.listen({ port: 0, host: '127.0.0.1' })
  const socket = tlsConnect({ host: '127.0.0.1', port: (stuck.server.address() as AddressInfo).port, servername: 'localhost', ca: pki.ca.cert })
  await once(socket, 'secureConnect')
  const elapsed = await closedAfter(socket)
  t.ok(elapsed >= IDLE_MS - 20 && elapsed < IDLE_MS + 2000, `closed after ${elapsed} ms`)
})
