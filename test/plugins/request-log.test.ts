import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { ERROR_STATUS } from '../../src/errors.js'
import { RequestLogController, genReqId, serializeError, type LoggedError } from '../../src/plugins/request-log.js'
import { EXAMPLE, EXAMPLE_SECRETS, brokenStore, buildTestApp, createLogSink, makeToken, unavailableStore, untilServerRead, writeTokenFile } from '../helper.js'

const json = { 'content-type': 'application/json' }
const example = { productKey: EXAMPLE.productKey, deviceKey: EXAMPLE.deviceKey }

/** One request of every kind the API answers: successes and every error code. */
async function driveEverything (app: FastifyInstance, down: FastifyInstance, broken: FastifyInstance): Promise<string[]> {
  const passwords: string[] = []
  for (const signMethod of ['hmacsha1', 'sha256', 'md5']) {
    const res = await app.inject({ method: 'POST', url: '/sign', payload: { ...example, signMethod } })
    passwords.push(res.json().mqttPassword)
  }
  const res = await app.inject({ method: 'POST', url: '/sign', payload: { productKey: 'Ab12Cd34', deviceKey: 'boiler-0001' } })
  passwords.push(res.json().mqttPassword)
  await app.inject({ method: 'POST', url: '/sign', payload: { ...example, deviceSecret: 'deviceSecret' } })
  await app.inject({ method: 'POST', url: '/sign', payload: { ...example, signMethod: 'sha512' } })
  await app.inject({ method: 'POST', url: '/sign', headers: json, payload: '{"deviceSecret": "deviceSecret",' })
  await app.inject({ method: 'GET', url: '/%zz' })
  await app.inject({ method: 'POST', url: '/sign', payload: { productKey: 'Ab12Cd34', deviceKey: 'retired-0003' } })
  await app.inject({ method: 'POST', url: '/sign', payload: { productKey: '123', deviceKey: 'ghost' } })
  await app.inject({ method: 'GET', url: '/nowhere' })
  await app.inject({ method: 'POST', url: '/sign', headers: json, payload: JSON.stringify({ ...example, pad: 'deviceSecret'.repeat(200) }) })
  await app.inject({ method: 'POST', url: '/sign', headers: { 'content-type': 'text/plain' }, payload: 'deviceSecret' })
  await app.inject({ method: 'GET', url: '/healthz' })
  await app.inject({ method: 'GET', url: '/readyz' })
  await broken.inject({ method: 'POST', url: '/sign', payload: example })
  await broken.inject({ method: 'GET', url: '/readyz' })
  await down.inject({ method: 'POST', url: '/sign', payload: example })
  await app.inject({ method: 'DELETE', url: '/sign' })
  await app.inject({ method: 'POST', url: '/sign', headers: { expect: 'deviceSecret' }, payload: example })
  await app.inject({ method: 'GET', url: '/docs/static/swagger-ui.css', headers: { 'if-match': '"deviceSecret"' } })
  await app.inject({ method: 'GET', url: '/docs/static/swagger-ui.css', headers: { range: 'bytes=999999999-' } })
  await app.inject({ method: 'POST', url: '/sign/batch', payload: { devices: [example, example, { ...example, deviceSecret: 'deviceSecret' }] } })
  return passwords
}

/** The requests only a real socket can make: a body too slow, headers too large, a request during shutdown. */
async function driveSockets (app: FastifyInstance): Promise<void> {
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  const send = async (bytes: string, thenClose = false): Promise<void> => {
    const accepted = once(app.server, 'connection') as Promise<[Socket]>
    const socket = connect(port, '127.0.0.1')
    socket.on('error', () => {})
    socket.resume()
    const [serverSide] = await accepted
    const closed = once(socket, 'close')
    socket.write(bytes)
    if (thenClose) {
      await untilServerRead(serverSide)
      const closing = app.close()
      socket.write('\r\n')
      await closing
    }
    await closed
  }
  await send('POST /sign HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 60\r\n\r\n{"deviceSecret":')
  await send(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'deviceSecret'.repeat(2000)}\r\n\r\n`)
  await send('GET /healthz HTTP/1.1\r\nHost: x\r\n', true)
}

t.test('every request, success or error, writes exactly one log line, and no secret reaches the logs', async (t) => {
  const sink = createLogSink()
  const deps = { logStream: sink.stream }
  const env = { LOG_LEVEL: 'trace', BODY_LIMIT: '1024', BATCH_MAX_ITEMS: '2', BATCH_STREAM_MAX_ITEMS: '1' }
  const app = await buildTestApp(t, env, deps)
  const down = await buildTestApp(t, env, { ...deps, store: unavailableStore() })
  const broken = await buildTestApp(t, env, { ...deps, store: brokenStore() })
  const sockets = await buildTestApp(t, { ...env, REQUEST_TIMEOUT_MS: '300' }, deps)
  const passwords = await driveEverything(app, down, broken)
  await driveSockets(sockets)
  // Access control: no token, a token for another product, one request too many for a device.
  const token = makeToken('other-product', ['sign'], ['Ab12Cd34'])
  const guarded = await buildTestApp(t, { ...env, AUTH_MODE: 'token', AUTH_TOKENS_FILE: writeTokenFile(t, [token]), RATE_LIMIT_PER_DEVICE: '1' }, deps)
  const headers = { authorization: `Bearer ${token.token}` }
  await guarded.inject({ method: 'POST', url: '/sign', payload: example })
  await guarded.inject({ method: 'POST', url: '/sign', headers, payload: example })
  await guarded.inject({ method: 'POST', url: '/sign', headers, payload: { productKey: 'Ab12Cd34', deviceKey: 'boiler-0001' } })
  await guarded.inject({ method: 'POST', url: '/sign', headers, payload: { productKey: 'Ab12Cd34', deviceKey: 'boiler-0001' } })
  // A stream past BATCH_STREAM_MAX_ITEMS ends with a STREAM_LIMIT_REACHED line.
  const limited = await app.inject({ method: 'POST', url: '/sign/batch', headers: { 'content-type': 'application/x-ndjson' }, payload: '{"productKey":"123","deviceKey":"test"}\n{"productKey":"123","deviceKey":"test"}\n' })
  t.match(limited.body, /"code":"STREAM_LIMIT_REACHED"/)

  const lines = sink.lines()
  const completed = lines.filter((line) => line.msg === 'request completed')
  t.equal(completed.length, 31, 'one line per request', { lines: completed.map((l) => `${String(l.route)} ${String(l.outcome)}`) })
  t.same(new Set(completed.map((line) => line.reqId)).size, 31, 'each with its own request id')
  const outcomes = new Set(completed.map((line) => line.outcome))
  // OVERLOADED answers are counted in /metrics and never logged one by one (test/plugins/admission.test.ts reaches it through HTTP).
  for (const code of Object.keys(ERROR_STATUS)) if (code !== 'OVERLOADED') t.ok(outcomes.has(code), `${code} was reached through HTTP and logged`)
  t.ok(outcomes.has('signed'))

  t.equal(passwords.length, 4)
  const raw = sink.raw()
  t.notOk(raw.includes(token.token) || raw.includes(token.entry.sha256), 'no token and no hash')
  for (const secret of [...EXAMPLE_SECRETS, ...passwords]) {
    t.equal(raw.includes(secret.slice(0, 12)), false, `no trace of ${secret.slice(0, 4)}… in ${lines.length} log lines`)
  }
  t.notMatch(raw, /"(deviceSecret|mqttPassword)"\s*:\s*"(?!\[redacted\])/, 'no field named like a secret with a value')
})

t.test('a completion line carries route, status, duration, device and outcome', async (t) => {
  const sink = createLogSink()
  const app = await buildTestApp(t, { LOG_LEVEL: 'info' }, { logStream: sink.stream })
  await app.inject({ method: 'POST', url: '/sign', headers: { 'x-request-id': 'boot-42' }, payload: example })
  const [line] = sink.lines().filter((l) => l.msg === 'request completed')
  t.match(line, {
    level: 30,
    reqId: 'boot-42',
    method: 'POST',
    route: '/sign',
    statusCode: 200,
    durationMs: Number,
    productKey: '123',
    deviceKey: 'test',
    outcome: 'signed'
  })
})

t.test('a failing request is also logged at error level with its real cause', async (t) => {
  const sink = createLogSink()
  const app = await buildTestApp(t, { LOG_LEVEL: 'info' }, { logStream: sink.stream, store: brokenStore() })
  await app.inject({ method: 'POST', url: '/sign', payload: example })
  const errorLine = sink.lines().find((l) => l.level === 50)
  t.match(errorLine, { msg: 'request failed', err: { type: 'Error', message: /connection string/ } })
})

t.test('X-Request-Id is taken when it is a plain token and echoed back; otherwise a UUID', async (t) => {
  const app = await buildTestApp(t)
  const given = await app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'abc-123' } })
  t.equal(given.headers['x-request-id'], 'abc-123')
  const bad = await app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'a b\u0000' } })
  t.match(bad.headers['x-request-id'], /^[0-9a-f-]{36}$/)
  t.match(genReqId({ headers: {} } as never), /^[0-9a-f-]{36}$/)
})

t.test('the redaction list censors secret fields if an object carrying one is ever logged', async (t) => {
  const sink = createLogSink()
  const app = await buildTestApp(t, { LOG_LEVEL: 'info' }, { logStream: sink.stream })
  app.log.info({ deviceSecret: 'leak-1', mqttPassword: 'leak-2', device: { deviceSecret: 'leak-3' }, credentials: { mqttPassword: 'leak-4' } }, 'oops')
  const line = sink.lines().find((l) => l.msg === 'oops')
  t.same(line && [line.deviceSecret, line.mqttPassword, line.device, line.credentials],
    ['[redacted]', '[redacted]', { deviceSecret: '[redacted]' }, { mqttPassword: '[redacted]' }])
  t.notMatch(sink.raw(), /leak-/)
})

t.test('the log controller writes the one line even on paths that bypass the error handler', async (t) => {
  const written: Array<Record<string, unknown>> = []
  let level = 'info'
  const logger = { isLevelEnabled: (wanted: string) => wanted === level, completed: (obj: Record<string, unknown>) => { written.push(obj) } }
  const controller = new RequestLogController()
  const request = { method: 'GET', url: '/x', routeOptions: { url: '/x' }, deviceRef: null, outcome: null, log: logger }
  controller.requestCompleted(null, request as never, { statusCode: 502, elapsedTime: 1.234 } as never)
  controller.requestCompleted(null, request as never, { statusCode: 204, elapsedTime: 0.5 } as never)
  level = 'warn'
  controller.requestCompleted(null, request as never, { statusCode: 200, elapsedTime: 0.5 } as never)
  t.same(written, [
    { method: 'GET', route: '/x', statusCode: 502, durationMs: 1.23, outcome: 'error' },
    { method: 'GET', route: '/x', statusCode: 204, durationMs: 0.5, outcome: 'ok' }
  ], 'and nothing when info is off')
})

t.test('a logged error keeps its type, message, code, stack and causes, but none of its other fields', async (t) => {
  const sink = createLogSink()
  const app = await buildTestApp(t, { LOG_LEVEL: 'info' }, { logStream: sink.stream })
  const inner = Object.assign(new Error('row failed'), { code: 'E_ROW', row: { deviceSecret: 'leak-row' } })
  const err = Object.assign(new TypeError('outer', { cause: inner }), { device: { deviceSecret: 'leak-device' }, credentials: { mqttPassword: 'leak-pw' } })
  app.log.error({ err }, 'store failed')
  app.log.error({ err: 'a thrown string' }, 'odd')
  const [line, odd] = sink.lines()
  t.match(line, { err: { type: 'TypeError', message: 'outer', stack: /outer/, cause: { type: 'Error', message: 'row failed', code: 'E_ROW', stack: /row failed/ } } })
  t.same(odd?.err, { type: 'string', message: 'a thrown string', stack: '' })
  t.notMatch(sink.raw(), /leak-/)
})

t.test('a cycle of causes is cut after a few levels', async (t) => {
  const a = new Error('a')
  const b = new Error('b', { cause: a })
  a.cause = b
  let depth = 0
  for (let node = serializeError(a); node.cause !== undefined; node = node.cause as LoggedError) depth++
  t.equal(depth, 5)
})
