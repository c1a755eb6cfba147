// A real MQTT broker for e2e tests that asks the running service: aedes over TLS and secure WebSocket,
// whose authenticate hook calls POST /verify over HTTP exactly as EMQX's HTTP authenticator does
// (JSON body {clientid, username, password}; 200 {"result":"allow"|"deny"|"ignore"}).
import { once } from 'node:events'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { createServer as createTlsServer, type Server } from 'node:tls'
import { Aedes, type AuthErrorCode, type AuthenticateError } from 'aedes'
import { WebSocketServer, createWebSocketStream } from 'ws'
import { createTlsCert } from './enos-broker.js'

/** One CONNECT, as the broker saw it and what the service answered. */
export interface VerifyAttempt {
  mqttClientId: string
  /** The `result` of POST /verify, or `http <status>` when it answered something else. */
  answer: string
}

export interface VerifyingBroker {
  /** MQTT over TLS: mqtts://localhost:<tlsPort> */
  tlsPort: number
  /** MQTT over secure WebSocket: wss://localhost:<wssPort>/mqtt */
  wssPort: number
  /** The self-signed certificate (PEM) of both listeners; clients pass it as `ca`. */
  ca: string
  caFile: string
  attempts: VerifyAttempt[]
}

interface Teardown { teardown: (fn: () => unknown) => void }

// CONNACK return codes of MQTT 3.1.1 (aedes's AuthErrorCode is a const enum, not usable from here).
const SERVER_UNAVAILABLE = 3 as AuthErrorCode
const BAD_USERNAME_OR_PASSWORD = 4 as AuthErrorCode
const NOT_AUTHORIZED = 5 as AuthErrorCode

/** What the broker makes of an answer: allow lets in; deny is a bad password; ignore (no other authenticator here) is not authorized. */
const REFUSALS: Record<string, AuthErrorCode> = { deny: BAD_USERNAME_OR_PASSWORD, ignore: NOT_AUTHORIZED }

/** POST /verify as EMQX sends it; the answer's `result`, or `http <status>`. */
async function askService (verifyUrl: string, token: string | undefined, body: { clientid: string, username: string, password: string }): Promise<string> {
  const res = await fetch(verifyUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token !== undefined && { authorization: `Bearer ${token}` }) },
    body: JSON.stringify(body),
    // EMQX's default request timeout is 5 s.
    signal: AbortSignal.timeout(5000)
  })
  if (res.status !== 200) return `http ${res.status}`
  const { result } = await res.json() as { result: string }
  return result
}

/** Starts the broker on two ephemeral ports; everything closes when the test ends. */
export async function startVerifyingBroker (t: Teardown, options: { dir: string, verifyUrl: () => string, token?: string }): Promise<VerifyingBroker> {
  const { key, cert } = createTlsCert(options.dir)
  const attempts: VerifyAttempt[] = []
  const aedes = await Aedes.createBroker({
    // mqttClientId with its |securemode=…| suffix is far longer than the 23 characters aedes allows by default.
    maxClientsIdLength: 256,
    authenticate (client, username, password, done) {
      const body = { clientid: client.id, username: username ?? '', password: password?.toString('utf8') ?? '' }
      askService(options.verifyUrl(), options.token, body).then((answer) => {
        attempts.push({ mqttClientId: client.id, answer })
        if (answer === 'allow') {
          done(null, true)
          return
        }
        const error: AuthenticateError = Object.assign(new Error(answer), { returnCode: REFUSALS[answer] ?? SERVER_UNAVAILABLE })
        done(error, false)
      }, (err: unknown) => {
        attempts.push({ mqttClientId: client.id, answer: String(err) })
        done(Object.assign(new Error('verify failed'), { returnCode: SERVER_UNAVAILABLE }), false)
      })
    }
  })
  const tls = createTlsServer({ key, cert }, (socket) => {
    // Without it Nagle holds back aedes's second small write (a forwarded PUBLISH after its PUBACK) ~40 ms.
    socket.setNoDelay(true)
    aedes.handle(socket)
  })
  const https = createHttpsServer({ key, cert })
  const wss = new WebSocketServer({ server: https, path: '/mqtt' })
  wss.on('connection', (ws, request) => { aedes.handle(createWebSocketStream(ws), request) })
  t.teardown(async () => {
    await new Promise<void>((resolve) => { aedes.close(() => { resolve() }) })
    for (const ws of wss.clients) ws.terminate()
    await new Promise<void>((resolve) => { wss.close(() => { resolve() }) })
    https.closeAllConnections()
    await Promise.all([closeServer(tls), closeServer(https)])
  })
  tls.listen(0, '127.0.0.1')
  https.listen(0, '127.0.0.1')
  await Promise.all([once(tls, 'listening'), once(https, 'listening')])
  const caFile = `${options.dir}/broker-cert.pem`
  return { tlsPort: portOf(tls), wssPort: portOf(https), ca: cert, caFile, attempts }
}

function portOf (server: Server | ReturnType<typeof createHttpsServer>): number {
  return (server.address() as AddressInfo).port
}

async function closeServer (server: Server | ReturnType<typeof createHttpsServer>): Promise<void> {
  await new Promise<void>((resolve, reject) => { server.close((err) => { if (err) reject(err); else resolve() }) })
}
