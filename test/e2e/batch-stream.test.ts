// POST /sign/batch with NDJSON on a real socket: answered as it arrives, backpressure both ways, idle and cut streams.
import { once } from 'node:events'
import { request, type ClientRequest, type IncomingMessage } from 'node:http'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { createFileStore } from '../../src/store/file-store.js'
import type { DeviceStore } from '../../src/store/store.js'
import { EXAMPLE_PASSWORDS, buildTestApp, createLogSink } from '../helper.js'

const silent = { info () {}, warn () {}, error () {} }

interface Served { app: FastifyInstance, port: number, sink: ReturnType<typeof createLogSink>, lookups: () => number }

/** The real service on a real file store of `count` devices P1/dev-<i>, counting the devices looked up. */
async function serve (t: Test, env: Record<string, string> = {}, count = 100): Promise<Served> {
  const devices = Array.from({ length: count }, (_, i) => ({ productKey: 'P1', deviceKey: `dev-${i}`, deviceSecret: `secret-${i}` }))
  devices.push({ productKey: '123', deviceKey: 'test', deviceSecret: 'deviceSecret' })
  const dir = t.testdir({ 'devices.json': JSON.stringify({ devices }) })
  const files = await createFileStore({ path: join(dir, 'devices.json'), watch: false, log: silent })
  let lookups = 0
  const store: DeviceStore = {
    ...files,
    kind: files.kind,
    findDevices: async (keys) => {
      lookups += keys.length
      return files.findDevices(keys)
    }
  }
  const sink = createLogSink()
  const app = await buildTestApp(t, { LOG_LEVEL: 'info', ...env }, { store, logStream: sink.stream })
  await app.listen({ port: 0, host: '127.0.0.1' })
  return { app, port: (app.server.address() as { port: number }).port, sink, lookups: () => lookups }
}

interface Stream { req: ClientRequest, response: Promise<IncomingMessage> }

function openStream (port: number): Stream {
  const req = request({ port, host: '127.0.0.1', method: 'POST', path: '/sign/batch', headers: { 'content-type': 'application/x-ndjson' } })
  req.on('error', () => {})
  const response = once(req, 'response').then(([res]) => res as IncomingMessage)
  // Headers go out now, not with the first body write: the server starts answering before the body ends.
  req.flushHeaders()
  return { req, response }
}

async function readAll (res: IncomingMessage): Promise<string> {
  let text = ''
  for await (const chunk of res) text += String(chunk)
  return text
}

const parseLines = (text: string): Array<Record<string, unknown>> => text.split('\n').filter((line) => line !== '').map((line) => JSON.parse(line) as Record<string, unknown>)

const line = (deviceKey: string, extra: Record<string, string> = {}): string => JSON.stringify({ productKey: 'P1', deviceKey, ...extra }) + '\n'

/** Waits until `value()` has not changed for a few polls: the way to see that work has stopped. */
async function settled (value: () => number): Promise<number> {
  let last = -1
  let same = 0
  while (same < 5) {
    await new Promise((resolve) => setTimeout(resolve, 50))
    const now = value()
    same = now === last ? same + 1 : 0
    last = now
  }
  return last
}

t.test('NDJSON – one result per line in order, with line numbers; bad lines answered alone; the summary last', async (t) => {
  const { port } = await serve(t, { MQTT_HOST: 'mqtt.example.com', BODY_LIMIT: '1024' })
  const { req, response } = openStream(port)
  req.end([
    JSON.stringify({ productKey: '123', deviceKey: 'test', clientId: '123', timestamp: '1524448722000', reference: 'r-1' }),
    '',
    '   ',
    '{"productKey": "P1", oops}',
    JSON.stringify({ productKey: 'P1', deviceKey: 'nobody', reference: 'r-5' }),
    JSON.stringify({ productKey: 'P1', deviceKey: 'dev-1', reference: 'x'.repeat(2000) }),
    '[1, 2]',
    JSON.stringify({ productKey: 'P1', deviceKey: 'dev-2', signMethod: 'md5', reference: 'r-8' }) + '\r',
    JSON.stringify({ productKey: 'P1', deviceKey: 'dev-3', clientId: 'last, no newline' })
  ].join('\n'))
  const res = await response
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^application\/x-ndjson/)
  const results = parseLines(await readAll(res))
  t.match(results, [
    { line: 1, reference: 'r-1', ok: true, mqttPassword: EXAMPLE_PASSWORDS.hmacsha1 },
    { line: 4, ok: false, error: { code: 'MALFORMED_JSON', message: 'line 4 is not valid JSON' } },
    { line: 5, reference: 'r-5', ok: false, error: { code: 'DEVICE_NOT_FOUND' } },
    { line: 6, ok: false, error: { code: 'PAYLOAD_TOO_LARGE', message: 'line 6 is longer than 1024 bytes (BODY_LIMIT); one line holds one device' } },
    { line: 7, ok: false, error: { code: 'VALIDATION_FAILED' } },
    { line: 8, reference: 'r-8', ok: true, signMethod: 'md5' },
    { line: 9, ok: true, clientId: 'last, no newline' },
    { summary: { total: 7, signed: 3, failed: 4 }, broker: { host: 'mqtt.example.com' } }
  ])
  t.equal(results.length, 8, 'blank lines get no result')
})

t.test('NDJSON – the first results arrive before the last line is sent', async (t) => {
  const { port } = await serve(t)
  const { req, response } = openStream(port)
  req.write(line('dev-1') + line('dev-2'))
  const res = await response
  const [first] = await once(res, 'data') as [Buffer]
  t.match(parseLines(first.toString()), [{ line: 1, ok: true }, { line: 2, ok: true }], 'answered while the request is still open')
  req.end(line('dev-3'))
  const rest = parseLines(await readAll(res))
  t.match(rest, [{ line: 3, ok: true }, { summary: { total: 3, signed: 3, failed: 0 } }])
})

t.test('NDJSON – a stream that keeps flowing is not cut by REQUEST_TIMEOUT_MS', async (t) => {
  const { port } = await serve(t, { REQUEST_TIMEOUT_MS: '400' })
  const { req, response } = openStream(port)
  const started = Date.now()
  let sent = 0
  // A line every 100 ms for twice the timeout and more.
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      req.write(line(`dev-${sent++}`))
      if (Date.now() - started > 1200) {
        clearInterval(timer)
        resolve()
      }
    }, 100)
  })
  req.end()
  const results = parseLines(await readAll(await response))
  t.equal(results.length, sent + 1)
  t.match(results.at(-1), { summary: { total: sent, signed: sent, failed: 0 } })
})

t.test('NDJSON – an idle stream is ended with a REQUEST_TIMEOUT line and no summary, and logged once', async (t) => {
  const { port, sink } = await serve(t, { REQUEST_TIMEOUT_MS: '300' })
  const { req, response } = openStream(port)
  req.write(line('dev-1'))
  const res = await response
  const text = await readAll(res)
  t.match(parseLines(text), [
    { line: 1, ok: true },
    { error: { code: 'REQUEST_TIMEOUT', message: 'the stream sent nothing for 300 ms (REQUEST_TIMEOUT_MS); it was ended after 1 devices' } }
  ])
  t.notMatch(text, /summary/)
  await once(req.socket as NonNullable<typeof req.socket>, 'close')
  t.match(sink.lines().filter((l) => l.msg === 'request completed'), [{ route: '/sign/batch', statusCode: 200, batch: { size: 1, signed: 1, failed: 0 }, outcome: 'REQUEST_TIMEOUT' }])
})

t.test('NDJSON – a client that does not read holds the server back, and gets everything once it reads', async (t) => {
  const total = 200_000
  const { port, lookups } = await serve(t, {}, 1000)
  const { req, response } = openStream(port)
  const res = await response
  res.pause()
  // Write until the request is held back: the server stopped reading because its answer cannot go out.
  let sent = 0
  while (sent < total) {
    let chunk = ''
    for (let i = 0; i < 1000; i++) chunk += line(`dev-${(sent + i) % 1000}`)
    sent += 1000
    if (!req.write(chunk)) await Promise.race([once(req, 'drain'), settled(lookups)])
    if (req.writableNeedDrain) break
  }
  const stalled = await settled(lookups)
  t.ok(req.writableNeedDrain, 'the request cannot be written any further')
  t.ok(stalled < sent, `the server stopped at ${stalled} of the ${sent} devices sent, instead of buffering them`)
  const answer = readAll(res)
  for (; sent < total; sent += 1000) {
    let chunk = ''
    for (let i = 0; i < 1000; i++) chunk += line(`dev-${(sent + i) % 1000}`)
    if (!req.write(chunk)) await once(req, 'drain')
  }
  req.end()
  const results = parseLines(await answer)
  t.equal(results.length, total + 1)
  t.match(results.at(-1), { summary: { total, signed: total, failed: 0 } })
})

t.test('NDJSON – a client that disconnects mid-stream stops the work at once', async (t) => {
  const { port, lookups, sink } = await serve(t, {}, 1000)
  const { req, response } = openStream(port)
  let chunk = ''
  for (let i = 0; i < 5000; i++) chunk += line(`dev-${i % 1000}`)
  req.write(chunk)
  const res = await response
  await once(res, 'data')
  req.destroy()
  const done = await settled(lookups)
  const keptWriting = new Promise<void>((resolve) => setTimeout(resolve, 300))
  await keptWriting
  t.equal(lookups(), done, 'no more lookups after the client left')
  t.ok(done <= 5000)
  await t.resolves(async () => {
    while (!sink.lines().some((l) => l.msg === 'request completed')) await new Promise((resolve) => setTimeout(resolve, 20))
  })
  t.match(sink.lines().filter((l) => l.msg === 'request completed'), [{ route: '/sign/batch', outcome: 'aborted' }])
})

t.test('shutdown: a stream in flight finishes, its connection then ends, and close() does not wait for a keep-alive', async (t) => {
  const { app, port } = await serve(t, { KEEP_ALIVE_TIMEOUT_MS: '60000' })
  const { req, response } = openStream(port)
  req.write(line('dev-1'))
  const res = await response
  await once(res, 'data')
  const closing = app.close()
  req.end(line('dev-2'))
  const results = parseLines(await readAll(res))
  await closing
  t.match(results, [{ line: 2, ok: true }, { summary: { total: 2, signed: 2 } }])
})
