// POST /sign/batch with NDJSON on a real socket: answered as it arrives, backpressure both ways, idle and cut streams.
import { once } from 'node:events'
import { renameSync, writeFileSync } from 'node:fs'
import type { ClientRequest } from 'node:http'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { createFileStore } from '../../src/store/file-store.js'
import type { DeviceStore } from '../../src/store/store.js'
import { EXAMPLE_PASSWORDS, buildTestApp, createLogSink, makeToken, writeTokenFile, type TestToken } from '../helper.js'
import { openStream, readAll, writeUntilStalled } from './ndjson-client.js'

const silent = { info () {}, warn () {}, error () {} }

/** A lookup held until `release()`: `started` resolves once the stream's lookup is waiting on it. */
interface HeldLookup { started: Promise<void>, release: () => void }

interface Served {
  app: FastifyInstance
  port: number
  sink: ReturnType<typeof createLogSink>
  lookups: () => number
  /** Holds the next batch lookup of the store (a slow database, without a clock): the lines of that chunk wait on it. */
  holdNextLookup: () => HeldLookup
}

/** The real service on a real file store of `count` devices P1/dev-<i>, counting the devices looked up. */
async function serve (t: Test, env: Record<string, string> = {}, count = 100): Promise<Served> {
  const devices = Array.from({ length: count }, (_, i) => ({ productKey: 'P1', deviceKey: `dev-${i}`, deviceSecret: `secret-${i}` }))
  devices.push({ productKey: '123', deviceKey: 'test', deviceSecret: 'deviceSecret' })
  const dir = t.testdir({ 'devices.json': JSON.stringify({ devices }) })
  const files = await createFileStore({ path: join(dir, 'devices.json'), watch: false, log: silent })
  let lookups = 0
  let held: { started: () => void, released: Promise<void> } | undefined
  const store: DeviceStore = {
    ...files,
    kind: files.kind,
    findDevices: async (keys) => {
      lookups += keys.length
      const hold = held
      held = undefined
      if (hold !== undefined) {
        hold.started()
        await hold.released
      }
      return files.findDevices(keys)
    }
  }
  const holdNextLookup = (): HeldLookup => {
    let onStarted = (): void => {}
    let release = (): void => {}
    const started = new Promise<void>((resolve) => { onStarted = resolve })
    held = { started: () => onStarted(), released: new Promise<void>((resolve) => { release = resolve }) }
    // Released at the latest when the test ends, so that nothing is left waiting.
    t.teardown(() => release())
    return { started, release: () => release() }
  }
  const sink = createLogSink()
  const app = await buildTestApp(t, { LOG_LEVEL: 'info', ...env }, { store, logStream: sink.stream })
  await app.listen({ port: 0, host: '127.0.0.1' })
  return { app, port: (app.server.address() as { port: number }).port, sink, lookups: () => lookups, holdNextLookup }
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
  // A gap of 100 ms between lines against a timeout of 1000 ms: only a stall of 900 ms in this
  // process (client and server alike) could look idle, which a busy machine does not reach.
  const { port } = await serve(t, { REQUEST_TIMEOUT_MS: '1000' })
  const { req, response } = openStream(port)
  const started = Date.now()
  let sent = 0
  // A line every 100 ms for twice the timeout and more.
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      req.write(line(`dev-${sent++}`))
      if (Date.now() - started > 2200) {
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

t.test('NDJSON – an idle stream is ended with a REQUEST_TIMEOUT line and an incomplete summary, and logged once', async (t) => {
  const { port, sink } = await serve(t, { REQUEST_TIMEOUT_MS: '300' })
  const { req, response } = openStream(port)
  req.write(line('dev-1'))
  const res = await response
  const text = await readAll(res)
  t.match(parseLines(text), [
    { line: 1, ok: true },
    { error: { code: 'REQUEST_TIMEOUT', message: 'the stream sent nothing for 300 ms (REQUEST_TIMEOUT_MS); it was ended after line 1, with 1 devices signed; send the rest in a new stream' } },
    { summary: { total: 1, signed: 1, failed: 0 }, complete: false }
  ])
  t.equal(parseLines(text).length, 3)
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

t.test('shutdown: a stream in flight answers what it has read, ends with SHUTTING_DOWN and its summary, and close() does not wait for it', async (t) => {
  const { app, port, sink } = await serve(t, { KEEP_ALIVE_TIMEOUT_MS: '60000', SHUTDOWN_TIMEOUT_MS: '60000', REQUEST_TIMEOUT_MS: '60000' })
  const { req, response } = openStream(port)
  req.write(line('dev-1'))
  const res = await response
  const [first] = await once(res, 'data') as [Buffer]
  t.match(parseLines(first.toString()), [{ line: 1, ok: true }])
  const rest = readAll(res)
  // The client keeps its request open: only the shutdown can end this stream.
  await app.close()
  t.match(parseLines(await rest), [
    { error: { code: 'SHUTTING_DOWN', message: 'the service is shutting down; it was ended after line 1, with 1 devices signed; send the rest in a new stream' } },
    { summary: { total: 1, signed: 1, failed: 0 }, complete: false }
  ])
  req.destroy()
  t.match(sink.lines().filter((l) => l.msg === 'request completed'), [{ route: '/sign/batch', audit: true, batch: { size: 1, signed: 1 }, outcome: 'SHUTTING_DOWN' }])
})

t.test('NDJSON – a stream ends with STREAM_LIMIT_REACHED after BATCH_STREAM_MAX_ITEMS lines, naming the last line answered', async (t) => {
  const { port, sink } = await serve(t, { BATCH_STREAM_MAX_ITEMS: '5' })
  const { req, response } = openStream(port)
  req.write(line('dev-1') + line('dev-2') + '\n' + line('dev-3'))
  const res = await response
  const [first] = await once(res, 'data') as [Buffer]
  req.write(line('dev-4') + line('dev-5') + line('dev-6') + line('dev-7'))
  const results = parseLines(first.toString() + await readAll(res))
  t.match(results, [
    { line: 1, ok: true }, { line: 2, ok: true }, { line: 4, ok: true }, { line: 5, ok: true }, { line: 6, ok: true },
    { error: { code: 'STREAM_LIMIT_REACHED', message: 'a stream answers at most 5 lines (BATCH_STREAM_MAX_ITEMS); it was ended after line 6, with 5 devices signed; send the rest in a new stream' } },
    { summary: { total: 5, signed: 5, failed: 0 }, complete: false }
  ])
  t.equal(results.length, 7, 'line 7 is not answered')
  req.destroy()
  t.match(sink.lines().filter((l) => l.msg === 'request completed'), [{ route: '/sign/batch', batch: { size: 5, signed: 5 }, outcome: 'STREAM_LIMIT_REACHED' }])
})

t.test('NDJSON – a stream that stays open BATCH_STREAM_MAX_MS is ended, even while it sends nothing', async (t) => {
  const { port, sink } = await serve(t, { BATCH_STREAM_MAX_MS: '1000', REQUEST_TIMEOUT_MS: '600000' })
  const { req, response } = openStream(port)
  req.write(line('dev-1'))
  const results = parseLines(await readAll(await response))
  t.match(results, [
    { line: 1, ok: true },
    { error: { code: 'STREAM_LIMIT_REACHED', message: 'a stream stays open at most 1000 ms (BATCH_STREAM_MAX_MS); it was ended after line 1, with 1 devices signed; send the rest in a new stream' } },
    { summary: { total: 1, signed: 1, failed: 0 }, complete: false }
  ])
  req.destroy()
  t.match(sink.lines().filter((l) => l.msg === 'request completed'), [{ route: '/sign/batch', outcome: 'STREAM_LIMIT_REACHED', reason: 'a stream stays open at most 1000 ms (BATCH_STREAM_MAX_MS)' }])
})

/** Replaces the token file as operators are told to: a new file, then `mv` over the old one. */
function replaceTokenFile (path: string, tokens: readonly TestToken[]): void {
  writeFileSync(`${path}.next`, JSON.stringify({ tokens: tokens.map(({ entry }) => entry) }))
  renameSync(`${path}.next`, path)
}

/** Polls a new request with `token` until it gets `status`: then the service has the new token file (or the expiry) in force. */
async function untilStatus (port: number, token: string, status: number, path = '/sign', body: object = { productKey: 'P1', deviceKey: 'dev-1' }): Promise<void> {
  for (;;) {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify(body) })
    await res.arrayBuffer()
    if (res.status === status) return
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** A token-mode service on a watched token file of `tokens`. */
async function serveTokens (t: Test, tokens: readonly TestToken[]): Promise<Served & { path: string }> {
  const path = writeTokenFile(t, tokens)
  return { ...await serve(t, { AUTH_MODE: 'token', AUTH_TOKENS_FILE: path, STORE_WATCH: 'true', REQUEST_TIMEOUT_MS: '60000' }), path }
}

/** Opens a stream with `token`, sends `first`, and returns its first results and a promise of the rest. */
async function startStream (port: number, token: string, first: string): Promise<{ req: ClientRequest, first: Array<Record<string, unknown>>, rest: Promise<string> }> {
  const { req, response } = openStream(port, token)
  req.write(first)
  const res = await response
  const [chunk] = await once(res, 'data') as [Buffer]
  return { req, first: parseLines(chunk.toString()), rest: readAll(res) }
}

const completed = (sink: Served['sink']): Array<Record<string, unknown>> => sink.lines().filter((l) => l.msg === 'request completed' && l.route === '/sign/batch')

t.test('NDJSON – a token removed from AUTH_TOKENS_FILE (mv) stops signing on every stream it holds: UNAUTHENTICATED, the summary, the audit line', async (t) => {
  const holder = makeToken('line-1', ['sign', 'sign:batch'], ['P1'])
  const other = makeToken('other', ['sign'], '*')
  const { port, sink, path } = await serveTokens(t, [holder, other])
  const one = await startStream(port, holder.token, line('dev-1'))
  const two = await startStream(port, holder.token, line('dev-2') + line('dev-3'))
  t.match(one.first, [{ line: 1, ok: true }])
  t.match(two.first, [{ line: 1, ok: true }, { line: 2, ok: true }])
  const removed = Date.now()
  replaceTokenFile(path, [other])
  await untilStatus(port, holder.token, 401)
  t.comment(`new requests refused ${Date.now() - removed} ms after the mv`)
  // Sent once new requests are refused: neither stream may sign them.
  one.req.end(line('dev-4'))
  two.req.end(line('dev-5'))
  t.match(parseLines(await one.rest), [
    { error: { code: 'UNAUTHENTICATED', message: 'the bearer token is not valid; it was ended after line 1, with 1 devices signed' } },
    { summary: { total: 1, signed: 1, failed: 0 }, complete: false }
  ])
  const rest = parseLines(await two.rest)
  t.match(rest, [{ error: { code: 'UNAUTHENTICATED', message: /after line 2, with 2 devices signed$/ } }, { summary: { total: 2, signed: 2 }, complete: false }])
  t.equal(rest.length, 2, 'no line sent after the removal is answered')
  t.match(completed(sink), [
    { audit: true, caller: 'line-1', outcome: 'UNAUTHENTICATED', reason: 'the bearer token is not valid', batch: { size: 1, signed: 1 } },
    { audit: true, caller: 'line-1', outcome: 'UNAUTHENTICATED', batch: { size: 2, signed: 2 } }
  ])
})

t.test('NDJSON – a stream stops signing when its token reaches its expires', async (t) => {
  const holder = makeToken('short', ['sign', 'sign:batch'], ['P1'])
  const { port, sink, path } = await serveTokens(t, [holder])
  const stream = await startStream(port, holder.token, line('dev-1'))
  t.match(stream.first, [{ line: 1, ok: true }])
  // The expiry is set only once the first line is answered, so a slow machine cannot refuse that line. Put
  // in force before it comes, the stream's timer ends it; after, the reload does: the same answer either way.
  replaceTokenFile(path, [{ ...holder, entry: { ...holder.entry, expires: new Date(Date.now() + 1000).toISOString() } }])
  await untilStatus(port, holder.token, 401)
  stream.req.end(line('dev-2'))
  const rest = parseLines(await stream.rest)
  t.match(rest, [
    { error: { code: 'UNAUTHENTICATED', message: 'the bearer token has expired; it was ended after line 1, with 1 devices signed' } },
    { summary: { total: 1, signed: 1, failed: 0 }, complete: false }
  ])
  t.equal(rest.length, 2, 'the line sent after the expiry is not answered')
  t.match(completed(sink), [{ caller: 'short', outcome: 'UNAUTHENTICATED', reason: 'the bearer token has expired' }])
})

t.test('NDJSON – a token removed while a chunk is being looked up: the chunk is not signed, the stream ends UNAUTHENTICATED', async (t) => {
  const holder = makeToken('line-1', ['sign', 'sign:batch'], ['P1'])
  const other = makeToken('other', ['sign'], '*')
  const { port, sink, path, holdNextLookup } = await serveTokens(t, [holder, other])
  const stream = await startStream(port, holder.token, line('dev-1'))
  t.match(stream.first, [{ line: 1, ok: true }])
  const lookup = holdNextLookup()
  stream.req.write(line('dev-2') + line('dev-3'))
  await lookup.started
  // The lines were read and checked before the removal; their lookup answers only after it is in force.
  replaceTokenFile(path, [other])
  await untilStatus(port, holder.token, 401)
  lookup.release()
  stream.req.end()
  const text = await stream.rest
  t.notMatch(text, /mqttPassword/, 'nothing signed after the removal')
  t.match(parseLines(text), [
    { line: 2, ok: false, error: { code: 'UNAUTHENTICATED', message: 'the bearer token is not valid' } },
    { line: 3, ok: false, error: { code: 'UNAUTHENTICATED' } },
    { error: { code: 'UNAUTHENTICATED', message: 'the bearer token is not valid; it was ended after line 3, with 1 devices signed' } },
    { summary: { total: 3, signed: 1, failed: 2 }, complete: false }
  ])
  t.match(completed(sink), [{ caller: 'line-1', outcome: 'UNAUTHENTICATED', batch: { size: 3, signed: 1, failed: 2 } }])
})

t.test('NDJSON – a token narrowed while a chunk is being looked up: that chunk\'s items of the lost product fail alone', async (t) => {
  const holder = makeToken('line-1', ['sign', 'sign:batch'], ['P1', '123'])
  const { port, path, holdNextLookup } = await serveTokens(t, [holder])
  const stream = await startStream(port, holder.token, line('dev-1'))
  const lookup = holdNextLookup()
  stream.req.write(line('dev-2') + JSON.stringify({ productKey: '123', deviceKey: 'test' }) + '\n')
  await lookup.started
  replaceTokenFile(path, [{ ...holder, entry: { ...holder.entry, products: ['123'] } }])
  await untilStatus(port, holder.token, 403)
  lookup.release()
  stream.req.end()
  t.match(parseLines(await stream.rest), [
    { line: 2, ok: false, error: { code: 'FORBIDDEN', message: 'the token "line-1" may not sign for product "P1"' } },
    { line: 3, ok: true, mqttUsername: 'test&123' },
    { summary: { total: 3, signed: 2, failed: 1 } }
  ])
})

t.test('NDJSON – a token narrowed to fewer products keeps its stream, whose items of the other products now fail alone', async (t) => {
  const holder = makeToken('line-1', ['sign', 'sign:batch'], ['P1', '123'])
  const { port, path } = await serveTokens(t, [holder])
  const stream = await startStream(port, holder.token, line('dev-1'))
  t.match(stream.first, [{ line: 1, ok: true }])
  replaceTokenFile(path, [{ ...holder, entry: { ...holder.entry, products: ['123'] } }])
  await untilStatus(port, holder.token, 403)
  stream.req.end(line('dev-2') + JSON.stringify({ productKey: '123', deviceKey: 'test' }) + '\n')
  t.match(parseLines(await stream.rest), [
    { line: 2, ok: false, error: { code: 'FORBIDDEN', message: 'the token "line-1" may not sign for product "P1"' } },
    { line: 3, ok: true, mqttUsername: 'test&123' },
    { summary: { total: 3, signed: 2, failed: 1 } }
  ])
})

t.test('NDJSON – a token that loses sign:batch ends its streams with FORBIDDEN', async (t) => {
  const holder = makeToken('line-1', ['sign', 'sign:batch'], ['P1'])
  const { port, path, sink } = await serveTokens(t, [holder])
  const stream = await startStream(port, holder.token, line('dev-1'))
  replaceTokenFile(path, [{ ...holder, entry: { ...holder.entry, scopes: ['sign'] } }])
  await untilStatus(port, holder.token, 403, '/sign/batch', { devices: [{ productKey: 'P1', deviceKey: 'dev-1' }] })
  stream.req.end(line('dev-2'))
  const rest = parseLines(await stream.rest)
  t.match(rest, [
    { error: { code: 'FORBIDDEN', message: 'the token "line-1" has no "sign:batch" scope; it was ended after line 1, with 1 devices signed' } },
    { summary: { total: 1, signed: 1 }, complete: false }
  ])
  t.equal(rest.length, 2)
  // The stream's audit line, among those of the JSON batches that polled for the change.
  t.match(completed(sink).filter((l) => l.statusCode === 200 && l.outcome !== 'signed'), [{ outcome: 'FORBIDDEN', batch: { size: 1, signed: 1 } }])
})

t.test('NDJSON – a token file reload that leaves the token as it was leaves its stream alone', async (t) => {
  const holder = makeToken('line-1', ['sign', 'sign:batch'], ['P1'])
  const added = makeToken('added', ['sign'], ['P1'])
  const { port, path } = await serveTokens(t, [holder])
  const stream = await startStream(port, holder.token, line('dev-1'))
  replaceTokenFile(path, [holder, added])
  await untilStatus(port, added.token, 200)
  stream.req.end(line('dev-2'))
  t.match(parseLines(await stream.rest), [{ line: 2, ok: true }, { summary: { total: 2, signed: 2, failed: 0 } }])
})

t.test('NDJSON – a stream whose first chunk fills BATCH_STREAM_MAX_ITEMS exactly ends at the next line, naming the last one answered', async (t) => {
  const { port } = await serve(t, { BATCH_STREAM_MAX_ITEMS: '2' })
  const stream = await startStream(port, '', line('dev-1') + line('dev-2'))
  t.match(stream.first, [{ line: 1, ok: true }, { line: 2, ok: true }])
  stream.req.end(line('dev-3'))
  t.match(parseLines(await stream.rest), [
    { error: { code: 'STREAM_LIMIT_REACHED', message: /it was ended after line 2, with 2 devices signed; send the rest in a new stream$/ } },
    { summary: { total: 2, signed: 2 }, complete: false }
  ])
})

t.test('NDJSON – a stream ended by its token and then cut at shutdown (its client does not read) keeps its first reason in its audit line', async (t) => {
  const holder = makeToken('line-1', ['sign', 'sign:batch'], ['P1'])
  const { app, port, path, sink } = await serveTokens(t, [holder])
  const { req, response } = openStream(port, holder.token)
  const res = await response
  res.on('error', () => {})
  res.pause()
  // Write until the request is held back for good: the answer cannot go out, so the stream is stuck.
  // "For good" is 5 s without a drain, as in process-stream-shutdown.test.ts: a busy machine can take
  // over a second for a chunk, and a stop that early leaves an answer small enough for the socket
  // buffers, which then ends instead of being cut.
  let chunk = ''
  for (let i = 0; i < 1000; i++) chunk += line(`dev-${i % 100}`)
  await writeUntilStalled(req, chunk)
  replaceTokenFile(path, [])
  await untilStatus(port, holder.token, 401)
  const closing = app.close()
  // What SHUTDOWN_TIMEOUT_MS does in start.ts: the stream cannot end, so its connection is cut.
  app.server.closeAllConnections()
  await closing
  req.destroy()
  t.match(completed(sink), [{ outcome: 'UNAUTHENTICATED', reason: 'the bearer token is not valid; the answer was cut before it ended', batch: { signedByProduct: { P1: Number } } }])
})
