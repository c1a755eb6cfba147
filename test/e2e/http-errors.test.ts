import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildTestApp, createLogSink, type Teardown } from '../helper.js'

async function listen (t: Teardown, env: Record<string, string> = {}): Promise<{ app: FastifyInstance, port: number, sink: ReturnType<typeof createLogSink> }> {
  const sink = createLogSink()
  const app = await buildTestApp(t, { LOG_LEVEL: 'info', ...env }, { logStream: sink.stream })
  await app.listen({ port: 0, host: '127.0.0.1' })
  return { app, port: (app.server.address() as { port: number }).port, sink }
}

/** Sends raw bytes and resolves with everything the server wrote before closing the connection. */
async function raw (port: number, request: string): Promise<string> {
  const socket = connect(port, '127.0.0.1')
  let answer = ''
  socket.on('data', (chunk: Buffer) => { answer += chunk.toString() })
  socket.on('error', () => {})
  socket.write(request)
  await once(socket, 'close')
  return answer
}

function bodyOf (answer: string): Record<string, unknown> {
  return JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>
}

t.test('a request Node cannot parse -> 400 BAD_REQUEST in the usual error shape, logged once', async (t) => {
  const { port, sink } = await listen(t)
  const answer = await raw(port, 'POST /sign HTTP/1.1\r\nHost: x\r\nBad Header: yes\r\n\r\n')
  t.match(answer, /^HTTP\/1\.1 400 Bad Request\r\n/)
  t.same(bodyOf(answer), { statusCode: 400, code: 'BAD_REQUEST', error: 'Bad Request', message: 'the request is not valid HTTP' })
  const completed = sink.lines().filter((line) => line.msg === 'request completed')
  t.match(completed, [{ statusCode: 400, outcome: 'BAD_REQUEST' }])
  t.equal(completed.length, 1)
})

t.test('headers over the size limit -> 431 HEADERS_TOO_LARGE', async (t) => {
  const { port, sink } = await listen(t)
  const answer = await raw(port, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`)
  t.match(answer, /^HTTP\/1\.1 431 /)
  t.same(bodyOf(answer), { statusCode: 431, code: 'HEADERS_TOO_LARGE', error: 'Request Header Fields Too Large', message: 'the request headers are too large' })
  t.match(sink.lines().filter((line) => line.msg === 'request completed'), [{ statusCode: 431, outcome: 'HEADERS_TOO_LARGE', problem: 'HPE_HEADER_OVERFLOW' }])
})

t.test('a client that resets mid-request is dropped without an answer or a log line', async (t) => {
  const { port, sink } = await listen(t)
  const socket: Socket = connect(port, '127.0.0.1')
  await once(socket, 'connect')
  socket.write('POST /sign HTTP/1.1\r\nHost: x\r\nContent-Le')
  socket.resetAndDestroy()
  await once(socket, 'close')
  const res = await fetch(`http://127.0.0.1:${port}/healthz`)
  t.equal(res.status, 200)
  t.same(sink.lines().filter((line) => line.msg === 'request completed').map((line) => line.route), ['/healthz'], { lines: sink.lines() })
})
