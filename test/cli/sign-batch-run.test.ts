// runSignBatch in this process: resume after each way an answer can end, usage errors, failing inputs and outputs, interruption.
import { once } from 'node:events'
import { readFileSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { join } from 'node:path'
import { PassThrough, Readable, Writable } from 'node:stream'
import t from 'tap'
import type { Io } from '../../src/cli/io.js'
import { runSignBatch, type SignBatchOptions } from '../../src/cli/sign-batch.js'
import { closedPort, filesIn, listenFakeBatch, listenTestApp, parseCsv, readCsv } from './cli-helper.js'

interface Run { code: number, stdout: string, stderr: string }

function collector (onText: (text: string) => void = () => {}): Writable & { text: () => string } {
  const chunks: string[] = []
  const stream = new Writable({
    write (chunk: Buffer, _encoding, done) {
      chunks.push(chunk.toString())
      onText(chunk.toString())
      done()
    }
  })
  return Object.assign(stream, { text: () => chunks.join('') })
}

/**
 * Runs sign-batch with these options (defaults: quiet, 8 retries, 1 s apart at most) and `io`;
 * `onStderr` sees each message as it is written.
 */
async function run (options: Partial<SignBatchOptions> & Pick<SignBatchOptions, 'url' | 'in' | 'out'>, io: Partial<Io> = {}, onStderr?: (text: string) => void): Promise<Run> {
  const stdout = collector()
  const stderr = collector(onStderr)
  const code = await runSignBatch({ quiet: true, retries: 8, maxDelay: 1, timeout: 60, ...options }, {
    stdin: new PassThrough(),
    stdout,
    stderr,
    signal: new AbortController().signal,
    ...io
  })
  return { code, stdout: stdout.text(), stderr: stderr.text() }
}

const EIO = (): Error => Object.assign(new Error('read EIO'), { code: 'EIO' })

/** Standard input that gives `text` at the first read, then fails (`fail`) or waits forever at the next. */
function stdinOf (text: string, next: 'fail' | 'wait'): Readable {
  let reads = 0
  return new Readable({
    read () {
      if (reads++ === 0) this.push(text)
      else if (next === 'fail') this.destroy(EIO())
    }
  })
}

function devicesCsv (count: number): string {
  return 'productKey,deviceKey,reference\n' + Array.from({ length: count }, (_, i) => `P,d${i + 1},r${i + 1}\n`).join('')
}

t.test('a cut answer: the next request resends only what was left unanswered, first, and the output has each device once', async (t) => {
  const fake = await listenFakeBatch(t, (n) => n === 1 ? { answer: 3, ending: 'none' } : {})
  const dir = t.testdir({ 'devices.csv': devicesCsv(10) })
  const result = await run({ url: fake.url, in: join(dir, 'devices.csv'), out: join(dir, 'out.csv'), quiet: false })
  t.equal(result.code, 0, result.stderr)
  t.equal(fake.requests.length, 2)
  const keys = (lines: string[]): string[] => lines.map((line) => (JSON.parse(line) as { deviceKey: string }).deviceKey)
  t.same(keys(fake.requests[1]?.lines ?? []), ['d4', 'd5', 'd6', 'd7', 'd8', 'd9', 'd10'], 'the three answered devices are not sent again')
  t.same(readCsv(join(dir, 'out.csv')).rows.map((row) => row.deviceKey), ['d1', 'd2', 'd3', 'd4', 'd5', 'd6', 'd7', 'd8', 'd9', 'd10'])
  t.match(result.stderr, /the answer was cut before its summary line; retry 1 of 8 in [\d.]+ s/, 'the retry is told without --quiet')
})

t.test('a retry that gets new results starts the count again: --retries 1 is enough for a service that always cuts after 2', async (t) => {
  const fake = await listenFakeBatch(t, () => ({ answer: 2, ending: 'none' }))
  const dir = t.testdir({ 'devices.csv': devicesCsv(7) })
  const result = await run({ url: fake.url, in: join(dir, 'devices.csv'), out: join(dir, 'out.csv'), retries: 1, maxDelay: 1 })
  t.equal(result.code, 0, result.stderr)
  t.equal(fake.requests.length, 4, '2 + 2 + 2 + 1')
  t.equal(readCsv(join(dir, 'out.csv')).rows.length, 7)
})

t.test('every result arrived but the summary line did not: nothing is left to ask, exit 0', async (t) => {
  const fake = await listenFakeBatch(t, () => ({ ending: 'none' }))
  const dir = t.testdir({ 'devices.csv': devicesCsv(3) })
  const result = await run({ url: fake.url, in: join(dir, 'devices.csv'), out: join(dir, 'out.csv') })
  t.equal(result.code, 0, result.stderr)
  t.equal(fake.requests.length, 1)
  t.equal(readCsv(join(dir, 'out.csv')).rows.length, 3)
})

t.test('a summary before every device is answered, or the service\'s own error line: the rest is sent again', async (t) => {
  const fake = await listenFakeBatch(t, (n) => n === 1 ? { answer: 2 } : n === 2 ? { answer: 2, ending: 'error' } : { broker: { uri: 'mqtts://mqtt.example.com:8883' } })
  const dir = t.testdir({ 'devices.csv': devicesCsv(6) })
  const result = await run({ url: fake.url, in: join(dir, 'devices.csv'), out: join(dir, 'out.ndjson'), quiet: false })
  t.equal(result.code, 0, result.stderr)
  t.equal(fake.requests.length, 3)
  t.match(result.stderr, /the service ended its answer before answering every device; retry 1/)
  t.match(result.stderr, /the service ended the answer: REQUEST_TIMEOUT: the stream sent nothing; retry 1/)
  t.match(result.stderr, /the broker for these credentials: mqtts:\/\/mqtt\.example\.com:8883/)
  const lines = readFileSync(join(dir, 'out.ndjson'), 'utf8').trim().split('\n').map((line) => JSON.parse(line) as { line: number, reference: string })
  t.same(lines.map((line) => line.line), [2, 3, 4, 5, 6, 7], 'input lines, each once')
})

t.test('results numbered wrongly: the service is not what it should be, exit 2, nothing written', async (t) => {
  const fake = await listenFakeBatch(t, () => ({ lineOffset: 4 }))
  const dir = t.testdir({ 'devices.csv': devicesCsv(2) })
  const result = await run({ url: fake.url, in: join(dir, 'devices.csv'), out: join(dir, 'out.csv') })
  t.equal(result.code, 2)
  t.match(result.stderr, /does not answer like the signing service \(a result for request line 5 came where line 1 was expected\); check --url/)
  t.same(filesIn(dir), ['devices.csv'])
})

t.test('an empty input still asks the service once (which checks --url and the token): exit 0 with a header-only output', async (t) => {
  const { url } = await listenTestApp(t)
  const dir = t.testdir({ 'devices.csv': 'productKey,deviceKey\n' })
  const result = await run({ url, in: join(dir, 'devices.csv'), out: join(dir, 'out.csv') })
  t.equal(result.code, 0, result.stderr)
  t.same(readCsv(join(dir, 'out.csv')), { header: ['productKey', 'deviceKey', 'reference', 'clientId', 'timestamp', 'signMethod', 'mqttClientId', 'mqttUsername', 'mqttPassword'], rows: [] })
  t.match(result.stderr, /0 signed, 0 failed, 0 devices/)

  const down = await run({ url: `http://127.0.0.1:${await closedPort()}`, in: join(dir, 'devices.csv'), out: join(dir, 'down.csv'), retries: 0 })
  t.equal(down.code, 2, 'and an unreachable service is an error even then')
  t.match(down.stderr, /giving up after 1 attempt without progress/)
})

t.test('a service that ends each stream at BATCH_STREAM_MAX_ITEMS: the rest goes in new streams, each device signed once, exit 0', async (t) => {
  const { url } = await listenTestApp(t, { BATCH_STREAM_MAX_ITEMS: '3' })
  const dir = t.testdir({ 'devices.csv': 'productKey,deviceKey,reference\n' + Array.from({ length: 10 }, (_, i) => `123,test,r-${i}\n`).join('') })
  const result = await run({ url, in: join(dir, 'devices.csv'), out: join(dir, 'out.csv'), quiet: false }, {}, () => {})
  t.equal(result.code, 0, result.stderr)
  t.same(readCsv(join(dir, 'out.csv')).rows.map((row) => row.reference), Array.from({ length: 10 }, (_, i) => `r-${i}`))
  t.match(result.stderr, /STREAM_LIMIT_REACHED: a stream answers at most 3 lines \(BATCH_STREAM_MAX_ITEMS\); it was ended after line 3, with 3 devices signed; send the rest in a new stream; retry 1/)
  t.match(result.stderr, /10 signed, 0 failed/)
})

t.test('more failures than are listed: without --errors the summary says how to get them all', async (t) => {
  const { url } = await listenTestApp(t)
  const dir = t.testdir({ 'devices.csv': 'productKey,deviceKey\n' + Array.from({ length: 22 }, (_, i) => `P,ghost-${i}\n`).join('') })
  const result = await run({ url, in: join(dir, 'devices.csv'), out: join(dir, 'out.csv') })
  t.equal(result.code, 1)
  t.match(result.stderr, /0 signed, 22 failed/)
  t.match(result.stderr, /add --errors FILE to get every failure/)
})

t.test('usage errors: exit 2 with the reason, before anything is sent or written', async (t) => {
  const dir = t.testdir({ 'devices.csv': devicesCsv(1), 'devices.txt': '', folder: {} })
  const csv = join(dir, 'devices.csv')
  const url = 'http://127.0.0.1:9'
  const cases: Array<[Partial<SignBatchOptions> & Pick<SignBatchOptions, 'url' | 'in' | 'out'>, RegExp]> = [
    [{ url: 'ftp://host', in: csv, out: join(dir, 'o.csv') }, /--url must be an http:\/\/ or https:\/\/ URL/],
    [{ url: 'not a url', in: csv, out: join(dir, 'o.csv') }, /--url must be/],
    [{ url, in: '-', out: join(dir, 'o.csv') }, /needs --format/],
    [{ url, in: join(dir, 'devices.txt'), out: join(dir, 'o.csv') }, /cannot tell the format of .*devices\.txt/],
    [{ url, in: csv, out: '-' }, /needs --out-format/],
    [{ url, in: csv, out: join(dir, 'o.txt') }, /cannot tell the output format/],
    [{ url, in: csv, out: csv, outFormat: 'csv' }, /--in and --out name the same file/],
    [{ url, in: csv, out: join(dir, 'o.csv'), errors: join(dir, 'o.csv') }, /--out and --errors name the same file/],
    [{ url, in: csv, out: '-', outFormat: 'csv', errors: '-' }, /--out and --errors name the same standard output/],
    [{ url, in: join(dir, 'missing.csv'), out: join(dir, 'o.csv') }, /cannot read .*missing\.csv \(ENOENT\)/],
    [{ url, in: join(dir, 'folder'), format: 'csv', out: join(dir, 'o.csv') }, /cannot read .*folder: it is a directory/],
    [{ url, in: csv, out: join(dir, 'folder', 'no', 'o.csv') }, /cannot write .*o\.csv \(ENOENT\)/],
    [{ url, in: csv, out: join(dir, 'o.csv'), errors: join(dir, 'no', 'e.csv') }, /cannot write .*e\.csv \(ENOENT\)/]
  ]
  for (const [options, message] of cases) {
    const result = await run(options)
    t.equal(result.code, 2, String(message))
    t.match(result.stderr, message)
  }
  t.same(filesIn(dir), ['devices.csv', 'devices.txt', 'folder'], 'nothing was written')
})

t.test('an input that turns out bad mid-run: exit 2, naming the input, and the outputs removed', async (t) => {
  const fake = await listenFakeBatch(t)
  const devices = Array.from({ length: 5000 }, (_, i) => ({ productKey: 'P', deviceKey: `d${i}` }))
  const dir = t.testdir({})
  const input = join(dir, 'devices.json')
  // Cut short, as a copy that was interrupted: the first devices are sent before the end is read.
  writeFileSync(input, JSON.stringify({ devices }).slice(0, -10))
  const result = await run({ url: fake.url, in: input, out: join(dir, 'out.csv'), errors: join(dir, 'errors.csv') })
  t.equal(result.code, 2)
  t.match(result.stderr, /devices\.json: the input is not valid JSON/)
  t.match(result.stderr, /out\.csv was not written/)
  t.ok((fake.requests[0]?.lines.length ?? 0) > 0, 'devices had been sent')
  t.same(filesIn(dir), ['devices.json'])
})

t.test('standard input that fails, after some devices or at once: exit 2, naming it', async (t) => {
  const fake = await listenFakeBatch(t)
  const late = await run({ url: fake.url, in: '-', format: 'ndjson', out: '-', outFormat: 'ndjson' }, { stdin: stdinOf('{"productKey":"P","deviceKey":"d1"}\n', 'fail') })
  t.equal(late.code, 2)
  t.match(late.stderr, /standard input: cannot be read \(EIO\)/)

  const broken = new PassThrough()
  broken.destroy(EIO())
  const early = await run({ url: fake.url, in: '-', format: 'csv', out: '-', outFormat: 'csv' }, { stdin: broken })
  t.equal(early.code, 2)
  t.match(early.stderr, /standard input: cannot be read \(EIO\)/)
})

t.test('an output that fails mid-run (a closed pipe): exit 2, and the errors file is not left behind', async (t) => {
  const fake = await listenFakeBatch(t)
  const dir = t.testdir({ 'devices.csv': devicesCsv(3000) })
  let written = 0
  const stdout = new Writable({
    write (_chunk, _encoding, done) {
      done(++written > 2 ? Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }) : undefined)
    }
  })
  const result = await run({ url: fake.url, in: join(dir, 'devices.csv'), out: '-', outFormat: 'ndjson', errors: join(dir, 'errors.csv') }, { stdout })
  t.equal(result.code, 2)
  t.match(result.stderr, /cannot write standard output \(EPIPE\)/)
  t.same(filesIn(dir), ['devices.csv'])
})

t.test('interrupted while waiting for standard input: 130 for SIGINT, 143 for SIGTERM, nothing written', async (t) => {
  const dir = t.testdir({})
  for (const [reason, code] of [['SIGINT', 130], ['SIGTERM', 143], [undefined, 130]] as const) {
    const stop = new AbortController()
    // Stopped right after the command starts waiting for input, which never comes.
    const stdin = new Readable({ read () { setImmediate(() => stop.abort(reason)) } })
    const result = await run({ url: 'http://127.0.0.1:9', in: '-', format: 'ndjson', out: join(dir, 'out.csv') }, { signal: stop.signal, stdin })
    t.equal(result.code, code, `stopped by ${String(reason)}`)
    t.match(result.stderr, /interrupted/)
  }
  t.same(filesIn(dir), [])
})

t.test('interrupted while waiting to retry: 130, and the outputs removed', async (t) => {
  const dir = t.testdir({})
  const stop = new AbortController()
  const fake = await listenFakeBatch(t, () => ({ answer: 0, ending: 'none' }))
  const result = await run({ url: fake.url, in: '-', format: 'ndjson', out: join(dir, 'out.csv'), errors: join(dir, 'errors.csv'), quiet: false },
    { signal: stop.signal, stdin: Readable.from([Buffer.from('{"productKey":"P","deviceKey":"d"}\n')]) },
    (text) => { if (text.includes('; retry 1 of')) stop.abort('SIGINT') })
  t.equal(result.code, 130, result.stderr)
  t.same(filesIn(dir), [])
})

t.test('standard output gets the credentials as CSV; JSON from standard input', async (t) => {
  const { url } = await listenTestApp(t)
  const stdin = new PassThrough()
  stdin.end(JSON.stringify({ devices: [{ productKey: '123', deviceKey: 'test' }] }))
  const result = await run({ url, in: '-', format: 'json', out: '-', outFormat: 'csv' }, { stdin })
  t.equal(result.code, 0, result.stderr)
  t.match(parseCsv(result.stdout).rows, [{ productKey: '123', deviceKey: 'test', reference: '' }])
})

t.test('standard input that fails while a retry waits for more of it: exit 2, naming the input', async (t) => {
  let requests = 0
  const server = createServer((req, res) => {
    requests++
    req.resume()
    res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '0' })
    res.end('{"code":"STORE_UNAVAILABLE","message":"later"}')
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  const stdin = stdinOf('{"productKey":"P","deviceKey":"d1"}\n', 'wait')
  const result = await run({ url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, in: '-', format: 'ndjson', out: '-', outFormat: 'csv', quiet: false },
    { stdin }, (text) => { if (text.includes('; retry 1 of')) stdin.destroy(EIO()) })
  t.equal(result.code, 2)
  t.equal(requests, 1)
  t.match(result.stderr, /standard input: cannot be read \(EIO\)/)
})

t.test('--errors - writes the failures to standard output', async (t) => {
  const { url } = await listenTestApp(t)
  const dir = t.testdir({ 'devices.csv': 'productKey,deviceKey,reference\n123,test,a\n123,nobody,b\n' })
  const result = await run({ url, in: join(dir, 'devices.csv'), out: join(dir, 'out.csv'), errors: '-' })
  t.equal(result.code, 1)
  t.match(parseCsv(result.stdout).rows, [{ line: '3', reference: 'b', code: 'DEVICE_NOT_FOUND' }])
  t.match(result.stderr, /every failure is in standard output/)
})

t.test('a slow standard output holds up the reading of answers (backpressure), and every device still arrives once', async (t) => {
  const fake = await listenFakeBatch(t)
  const dir = t.testdir({ 'devices.csv': devicesCsv(5000) })
  let text = ''
  let waits = 0
  const stdout = new Writable({
    highWaterMark: 1024,
    write (chunk: Buffer, _encoding, done) {
      text += chunk.toString()
      waits++
      setImmediate(done)
    }
  })
  const result = await run({ url: fake.url, in: join(dir, 'devices.csv'), out: '-', outFormat: 'ndjson' }, { stdout })
  t.equal(result.code, 0, result.stderr)
  const keys = text.trim().split('\n').map((line) => (JSON.parse(line) as { deviceKey: string }).deviceKey)
  t.equal(keys.length, 5000)
  t.equal(new Set(keys).size, 5000)
  t.ok(waits > 0)
})
