// A client for the TLS tests: POST and GET /readyz over HTTPS with or without a client certificate, and an app served over TLS.
import { once } from 'node:events'
import { type Agent, request } from 'node:https'
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'
import type { PeerCertificate, TLSSocket } from 'node:tls'
import type { Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildTestApp, createLogSink, tempDir } from '../helper.js'
import { makePki, type Pem, type Pki } from './tls-helper.js'

/** GET /readyz over HTTPS. */
export async function fetchReady (port: number, ca: string): Promise<{ access: Record<string, unknown> }> {
  const req = request({ host: '127.0.0.1', port, path: '/readyz', servername: 'localhost', ca, agent: false })
  req.end()
  const [res] = await once(req, 'response') as [IncomingMessage]
  let text = ''
  for await (const chunk of res) text += String(chunk)
  return JSON.parse(text) as { access: Record<string, unknown> }
}

export interface Answer { status: number, body: Record<string, unknown>, peer: PeerCertificate, headers: IncomingHttpHeaders }

/** POST a JSON body over HTTPS, trusting the test CA, with an optional client certificate and headers; a new connection unless `agent` keeps one. */
export async function post (port: number, path: string, body: object, options: { ca: string, client?: Pem, headers?: Record<string, string>, agent?: Agent }): Promise<Answer> {
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
  const [res] = await once(req, 'response') as [IncomingMessage]
  // Read before the body: a keep-alive socket goes back to its agent once the response has ended.
  const peer = (res.socket as TLSSocket).getPeerCertificate()
  let text = ''
  for await (const chunk of res) text += String(chunk)
  return { status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown>, peer, headers: res.headers }
}

export interface Served { app: FastifyInstance, port: number, pki: Pki, server: Pem, sink: ReturnType<typeof createLogSink> }

/** The app on a new (or the given) test PKI, over HTTPS on a free port, logging at info into a sink. */
export async function serve (t: Test, env: (pki: Pki, server: Pem) => Record<string, string>, pki = makePki(tempDir(t, 'pki-'))): Promise<Served> {
  const server = pki.issue('server', 'localhost', { san: 'subjectAltName=DNS:localhost,IP:127.0.0.1' })
  const sink = createLogSink()
  const app = await buildTestApp(t, { TLS_CERT_FILE: server.certFile, TLS_KEY_FILE: server.keyFile, LOG_LEVEL: 'info', ...env(pki, server) }, { logStream: sink.stream })
  await app.listen({ port: 0, host: '127.0.0.1' })
  return { app, port: (app.server.address() as { port: number }).port, pki, server, sink }
}
