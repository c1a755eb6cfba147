// The edges of HTTP on a real socket: slow bodies, odd methods and headers, pipelining, connection limits and shutdown.
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { EXAMPLE_PASSWORDS, buildTestApp, createLogSink, unavailableStore, untilServerRead, type Teardown } from '../helper.js'

interface Listening { app: FastifyInstance, port: number, sink: ReturnType<typeof createLogSink> }

async function listen (t: Teardown, env: Record<string, string> = {}): Promise<Listening> {
  const sink = createLogSink()
  const app = await buildTestApp(t, { LOG_LEVEL: 'info', ...env }, { logStream: sink.stream })
  await app.listen({ port: 0, host: '127.0.0.1' })
  return { app, port: (app.server.address() as { port: number }).port, sink }
}

async function open (port: number): Promise<{ socket: Socket, received: () => string }> {
  const socket = connect(port, '127.0.0.1')
  let received = ''
  socket.on('data', (chunk: Buffer) => { received += chunk.toString() })
  socket.on('error', () => {})
  await once(socket, 'connect')
  return { socket, received: () => received }
}

/** Sends raw bytes and resolves with everything the server wrote before closing the connection. */
async function raw (port: number, request: string): Promise<string> {
  const { socket, received } = await open(port)
  socket.write(request)
  await once(socket, 'close')
  return received()
}

/** The status line and headers, lower-cased, each line ending in CRLF. */
function headersOf (answer: string): string {
  return answer.slice(0, answer.indexOf('\r\n\r\n') + 2).toLowerCase()
}

function bodyOf (answer: string): Record<string, unknown> {
  return JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>
}

const completed = (sink: Listening['sink']): Array<Record<string, unknown>> => sink.lines().filter((line) => line.msg === 'request completed')

const SIGN_BODY = JSON.stringify({ productKey: '123', deviceKey: 'test', clientId: '123', timestamp: '1524448722000' })

t.test('a body sent a byte at a time -> 408 REQUEST_TIMEOUT at REQUEST_TIMEOUT_MS, one log line', async (t) => {
  const { port, sink } = await listen(t, { REQUEST_TIMEOUT_MS: '1000' })
  const { socket, received } = await open(port)
  const started = Date.now()
  socket.write(`POST /sign HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${SIGN_BODY.length}\r\n\r\n`)
  // One byte every 100 ms: the body would need 8 s; each byte keeps the socket from looking idle.
  let sent = 0
  const drip = setInterval(() => { if (!socket.destroyed) socket.write(SIGN_BODY.charAt(sent++)) }, 100)
  t.teardown(() => clearInterval(drip))
  // A byte dripped after the server closed fails with EPIPE or ECONNRESET (an 'error' event, which
  // once() would turn into a rejection): stop at the answer, and wait for the close whatever comes first.
  socket.once('data', () => clearInterval(drip))
  await new Promise((resolve) => socket.once('close', resolve))
  const elapsed = Date.now() - started
  t.ok(elapsed >= 1000 && elapsed < SIGN_BODY.length * 100, `answered after ${elapsed} ms, before the body could finish`)
  t.match(received(), /^HTTP\/1\.1 408 Request Timeout\r\n/)
  t.match(headersOf(received()), /\r\nconnection: close/)
  t.match(headersOf(received()), /\r\nx-request-id: /)
  t.same(bodyOf(received()), { statusCode: 408, code: 'REQUEST_TIMEOUT', error: 'Request Timeout', message: 'the request was not received in time (see REQUEST_TIMEOUT_MS)' })
  t.match(completed(sink), [{ method: 'POST', route: '/sign', statusCode: 408, outcome: 'REQUEST_TIMEOUT' }])
  t.equal(completed(sink).length, 1)
})

t.test('a stalled body is answered 408 and logged, not closed silently', async (t) => {
  const { port, sink } = await listen(t, { REQUEST_TIMEOUT_MS: '300' })
  const answer = await raw(port, `POST /sign HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${SIGN_BODY.length}\r\n\r\n{"prod`)
  t.match(answer, /^HTTP\/1\.1 408 /)
  t.match(completed(sink), [{ statusCode: 408, outcome: 'REQUEST_TIMEOUT' }])
})

t.test('headers that never finish -> 408 on the bare socket, logged once', async (t) => {
  const { port, sink } = await listen(t, { REQUEST_TIMEOUT_MS: '300' })
  const answer = await raw(port, 'POST /sign HTTP/1.1\r\nHost: x\r\nContent-Type: appli')
  t.match(answer, /^HTTP\/1\.1 408 /)
  t.match(headersOf(answer), /\r\nx-request-id: [0-9a-f-]{36}\r\n/)
  t.match(bodyOf(answer), { statusCode: 408, code: 'REQUEST_TIMEOUT' })
  t.match(completed(sink), [{ statusCode: 408, outcome: 'REQUEST_TIMEOUT', connection: 'closed' }])
})

t.test('an HTTP/1.1 request without Host -> 400 BAD_REQUEST with a body and a log line', async (t) => {
  const { port, sink } = await listen(t)
  const answer = await raw(port, 'GET /healthz HTTP/1.1\r\n\r\n')
  t.match(answer, /^HTTP\/1\.1 400 Bad Request\r\n/)
  t.same(bodyOf(answer), { statusCode: 400, code: 'BAD_REQUEST', error: 'Bad Request', message: 'an HTTP/1.1 request needs a Host header' })
  t.match(completed(sink), [{ route: '/healthz', statusCode: 400, outcome: 'BAD_REQUEST' }])
  const http10 = await raw(port, 'GET /healthz HTTP/1.0\r\n\r\n')
  t.match(http10, /^HTTP\/1\.1 200 OK\r\n/, 'HTTP/1.0 has no Host header to require')
})

t.test('Expect: 999-x -> 417 EXPECTATION_FAILED with a body and a log line', async (t) => {
  const { port, sink } = await listen(t)
  const answer = await raw(port, 'POST /sign HTTP/1.1\r\nHost: x\r\nExpect: 999-x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n')
  t.match(answer, /^HTTP\/1\.1 417 Expectation Failed\r\n/)
  t.match(bodyOf(answer), { statusCode: 417, code: 'EXPECTATION_FAILED', message: /100-continue/ })
  t.match(completed(sink), [{ route: '/sign', statusCode: 417, outcome: 'EXPECTATION_FAILED' }])
})

t.test('CONNECT -> 404 for a target that is no path, 405 with Allow for one that is; each logged', async (t) => {
  const { port, sink } = await listen(t)
  const tunnel = await raw(port, 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n')
  t.match(tunnel, /^HTTP\/1\.1 404 Not Found\r\n/)
  t.same(bodyOf(tunnel), { statusCode: 404, code: 'ROUTE_NOT_FOUND', error: 'Not Found', message: 'no route CONNECT example.com:443; see /docs' })
  const sign = await raw(port, 'CONNECT /sign HTTP/1.1\r\nHost: x\r\n\r\n')
  t.match(sign, /^HTTP\/1\.1 405 Method Not Allowed\r\n/)
  t.match(headersOf(sign), /\r\nallow: post\r\n/)
  t.match(completed(sink), [
    { method: 'CONNECT', statusCode: 404, outcome: 'ROUTE_NOT_FOUND' },
    { method: 'CONNECT', statusCode: 405, outcome: 'METHOD_NOT_ALLOWED' }
  ])
})

t.test('a path climbing out of /docs/static -> 404 ROUTE_NOT_FOUND, never 403 under another code', async (t) => {
  const { port, sink } = await listen(t)
  const answer = await raw(port, 'GET /docs/static/../../package.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  t.match(answer, /^HTTP\/1\.1 404 Not Found\r\n/)
  t.same(bodyOf(answer), { statusCode: 404, code: 'ROUTE_NOT_FOUND', error: 'Not Found', message: 'no such path; see /docs' })
  t.notMatch(answer, /"version"/, 'package.json is not served')
  t.match(completed(sink), [{ statusCode: 404, outcome: 'ROUTE_NOT_FOUND' }])
})

t.test('PUT, DELETE, OPTIONS with a JSON type and no body -> 404 where no route is, 405 with Allow where the path is', async (t) => {
  const { port, sink } = await listen(t)
  const send = async (method: string, path: string): Promise<string> =>
    raw(port, `${method} ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n`)
  const nowhere = await send('PUT', '/nowhere')
  t.match(nowhere, /^HTTP\/1\.1 404 /)
  t.same(bodyOf(nowhere), { statusCode: 404, code: 'ROUTE_NOT_FOUND', error: 'Not Found', message: 'no route PUT /nowhere; see /docs' })
  const deleteSign = await send('DELETE', '/sign')
  t.match(deleteSign, /^HTTP\/1\.1 405 /)
  t.match(headersOf(deleteSign), /\r\nallow: post\r\n/)
  t.same(bodyOf(deleteSign), { statusCode: 405, code: 'METHOD_NOT_ALLOWED', error: 'Method Not Allowed', message: 'DELETE /sign is not supported; this path takes POST' })
  const options = await send('OPTIONS', '/healthz?probe=1')
  t.match(headersOf(options), /\r\nallow: get, head\r\n/)
  t.match(completed(sink).map((line) => line.outcome), ['ROUTE_NOT_FOUND', 'METHOD_NOT_ALLOWED', 'METHOD_NOT_ALLOWED'])
})

t.test('a request pipelined behind a malformed one is not answered, and the log says so', async (t) => {
  const { port, sink } = await listen(t)
  const answer = await raw(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n')
  t.equal(answer.match(/HTTP\/1\.1 /g)?.length, 1, 'one answer: the 400')
  const unread = completed(sink)[0]?.unreadBytes
  t.ok(typeof unread === 'number' && unread >= 35, `the ${String(unread)} unread bytes include the 35 of the pipelined request`)
  t.match(completed(sink), [{
    statusCode: 400,
    outcome: 'BAD_REQUEST',
    connection: 'closed',
    unreadBytes: Number,
    note: 'bytes sent after the refused request (pipelined requests included) were not processed'
  }])
})

t.test('MAX_CONNECTIONS: connections beyond it are closed at once and the log says so; the rest are served', async (t) => {
  const { port, sink } = await listen(t, { MAX_CONNECTIONS: '2' })
  const held = [await open(port), await open(port)]
  for (let i = 0; i < 3; i++) {
    const extra = await open(port)
    await once(extra.socket, 'close')
    t.equal(extra.received(), '', 'closed without an answer')
  }
  const warnings = sink.lines().filter((line) => line.level === 40)
  t.match(warnings, [{ maxConnections: 2, dropped: 1, msg: 'MAX_CONNECTIONS reached: new connections are closed as they arrive' }])
  t.equal(warnings.length, 1, 'one warning for a burst, not one per connection')
  held[0]?.socket.end('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  await once(held[0]?.socket as Socket, 'close')
  t.match(held[0]?.received(), /^HTTP\/1\.1 200 /, 'a connection within the bound is served')
  held[1]?.socket.destroy()
})

t.test('shutdown: an in-flight keep-alive response says Connection: close, and close() does not wait for it to idle', async (t) => {
  const { app, port, sink } = await listen(t, { KEEP_ALIVE_TIMEOUT_MS: '60000' })
  const { socket, received } = await open(port)
  // Headers now, body later: the request is in flight when the server starts closing.
  socket.write(`POST /sign HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${SIGN_BODY.length}\r\n\r\n`)
  await new Promise<void>((resolve) => { app.server.once('request', () => { setImmediate(resolve) }) })
  const started = Date.now()
  const closing = app.close()
  socket.write(SIGN_BODY)
  await closing
  const elapsed = Date.now() - started
  await once(socket, 'close')
  t.ok(elapsed < 1000, `close() took ${elapsed} ms, not the keep-alive timeout`)
  t.match(received(), /^HTTP\/1\.1 200 OK\r\n/)
  t.match(headersOf(received()), /\r\nconnection: close\r\n/)
  t.match(received(), EXAMPLE_PASSWORDS.hmacsha1)
  t.match(completed(sink), [{ statusCode: 200, outcome: 'signed' }])
})

for (const path of ['/healthz', '/readyz', '/sign/batch']) {
  t.test(`shutdown: ${path} arriving while closing gets 503 SHUTTING_DOWN in the standard body`, async (t) => {
    const { app, port, sink } = await listen(t)
    const accepted = once(app.server, 'connection') as Promise<[Socket]>
    const { socket, received } = await open(port)
    const [serverSide] = await accepted
    // Half of a request, read by the server before the close: the connection is busy, not idle, so the close keeps it.
    socket.write(`${path === '/sign/batch' ? 'POST' : 'GET'} ${path} HTTP/1.1\r\nHost: x\r\n`)
    await untilServerRead(serverSide)
    const closing = app.close()
    socket.write('X-Request-Id: late-1\r\n\r\n')
    await once(socket, 'close')
    await closing
    t.match(received(), /^HTTP\/1\.1 503 Service Unavailable\r\n/)
    t.match(headersOf(received()), /\r\nretry-after: 1\r\n/)
    t.match(headersOf(received()), /\r\nx-request-id: late-1\r\n/)
    t.match(headersOf(received()), /\r\nconnection: close\r\n/)
    t.match(bodyOf(received()), { statusCode: 503, code: 'SHUTTING_DOWN', error: 'Service Unavailable', message: /shutting down/ })
    t.match(completed(sink), [{ reqId: 'late-1', statusCode: 503, outcome: 'SHUTTING_DOWN' }])
  })
}

t.test('a body that never comes, on a request whose handler is still busy, ends the connection at the timeout', async (t) => {
  let release: (() => void) | undefined
  const store = { ...unavailableStore(), checkHealth: async () => { await new Promise<void>((resolve) => { release = resolve }); return { ok: true, kind: 'fake', detail: 'slow' } } }
  const sink = createLogSink()
  const app = await buildTestApp(t, { LOG_LEVEL: 'info', REQUEST_TIMEOUT_MS: '300' }, { logStream: sink.stream, store })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const accepted = once(app.server, 'connection') as Promise<[Socket]>
  const { socket } = await open((app.server.address() as { port: number }).port)
  const [serverSide] = await accepted
  const clientClosed = once(socket, 'close')
  // GET /readyz does not read a body, so nothing can answer 408 for it: its handler is still running.
  socket.write('GET /readyz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n')
  await once(serverSide, 'close')
  t.ok(release !== undefined, 'the handler was still waiting on the store')
  release?.()
  await clientClosed
})
