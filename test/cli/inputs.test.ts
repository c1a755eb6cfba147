// Reading devices: the CSV header mapping, the three formats as streams, batching, counting, and what is refused.
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { PassThrough, Readable } from 'node:stream'
import t from 'tap'
import { MAX_BATCH, MAX_LINE_BYTES, batched, countItems, inputFormatOf, isDevice, mapCsvHeader, openInput, readInput, type InputFormat, type InputRecord } from '../../src/cli/inputs.js'
import { UsageError } from '../../src/cli/usage-error.js'

async function readAll (text: string | Buffer[], format: InputFormat): Promise<InputRecord[]> {
  const records: InputRecord[] = []
  for await (const batch of readInput(Readable.from(typeof text === 'string' ? [Buffer.from(text)] : text), format)) records.push(...batch)
  return records
}

t.test('mapCsvHeader: the known columns in any order; unknown, nameless, repeated or missing ones are refused', async (t) => {
  t.same(mapCsvHeader(['productKey', 'deviceKey']), ['productKey', 'deviceKey'])
  t.same(mapCsvHeader([' reference', 'signMethod ', 'deviceKey', 'timestamp', 'clientId', 'productKey']),
    ['reference', 'signMethod', 'deviceKey', 'timestamp', 'clientId', 'productKey'], 'names are trimmed')
  t.throws(() => mapCsvHeader(['productKey', 'deviceKey', 'deviceSecret']), { name: 'UsageError', message: /unknown column "deviceSecret"/ })
  t.throws(() => mapCsvHeader(['productKey', 'deviceKey', '']), { message: /column 3 has no name/ })
  t.throws(() => mapCsvHeader(['productKey', 'deviceKey', 'deviceKey']), { message: /column "deviceKey" appears twice/ })
  t.throws(() => mapCsvHeader(['productkey', 'deviceKey']), { message: /unknown column "productkey".*no productKey column/ })
  t.throws(() => mapCsvHeader(['reference']), { message: /no productKey column; no deviceKey column\. The columns are productKey and deviceKey, and optionally clientId, timestamp, signMethod, reference, in any order/ })
})

t.test('inputFormatOf: --format first, then the extension; standard input needs --format', async (t) => {
  t.equal(inputFormatOf('a.CSV', undefined), 'csv')
  t.equal(inputFormatOf('a.json', undefined), 'json')
  t.equal(inputFormatOf('a.ndjson', undefined), 'ndjson')
  t.equal(inputFormatOf('a.jsonl', undefined), 'ndjson')
  t.equal(inputFormatOf('a.txt', 'csv'), 'csv')
  t.equal(inputFormatOf('-', 'json'), 'json')
  t.throws(() => inputFormatOf('-', undefined), { message: /\(--in -\) needs --format/ })
  t.throws(() => inputFormatOf('devices.txt', undefined), { message: /cannot tell the format of devices\.txt/ })
})

t.test('CSV: a BOM, CRLF, blank lines, quoted fields across lines; records placed by the line they start on', async (t) => {
  const records = await readAll('\uFEFFdeviceKey,productKey,reference\r\n\r\nd1,P1,"a, b"\r\n  ,  \r\nd2,P2,"two\nlines"\r\nd3,P3,\r\nd4\r\n,,r9\r\n', 'csv')
  t.same(records, [
    { at: 3, line: '{"deviceKey":"d1","productKey":"P1","reference":"a, b"}', productKey: 'P1', deviceKey: 'd1', reference: 'a, b' },
    { at: 5, line: '{"deviceKey":"d2","productKey":"P2","reference":"two\\nlines"}', productKey: 'P2', deviceKey: 'd2', reference: 'two\nlines' },
    { at: 7, line: '{"deviceKey":"d3","productKey":"P3"}', productKey: 'P3', deviceKey: 'd3', reference: '' },
    { at: 8, reference: '', error: { code: 'VALIDATION_FAILED', message: 'line 8 has 1 fields where the header has 3' } },
    { at: 9, line: '{"reference":"r9"}', productKey: '', deviceKey: '', reference: 'r9' }
  ])
  t.ok(isDevice(records[0] as InputRecord))
  t.notOk(isDevice(records[3] as InputRecord))
  const mixed = await readAll('productKey,deviceKey\nP1,d1\r\nP2,d2', 'csv')
  t.same(mixed.map((record) => record.at), [2, 3], 'LF and CRLF in one file, and no newline at the end')
})

t.test('CSV: a bad header, an empty input or broken quoting is a UsageError', async (t) => {
  await t.rejects(readAll('productKey,deviceSecret\nP,s\n', 'csv'), { name: 'UsageError', message: /line 1: bad CSV header/ })
  await t.rejects(readAll('', 'csv'), { name: 'UsageError', message: /the CSV input is empty/ })
  await t.rejects(readAll('\n \n', 'csv'), { name: 'UsageError', message: /the CSV input is empty/ })
  await t.rejects(readAll('productKey,deviceKey\nP,"d"x\n', 'csv'), { name: 'UsageError', message: /the input is not valid CSV: Invalid Closing Quote.*line 2/ })
})

t.test('CSV: a record longer than MAX_LINE_BYTES (a quote left open) is a UsageError naming its line, read in bounded memory', async (t) => {
  const piece = Buffer.alloc(64 * 1024, 'a')
  async function * openQuote (): AsyncGenerator<Buffer> {
    yield Buffer.from('productKey,deviceKey\nP,d1\nP,"')
    for (let i = 0; i < 256; i++) yield piece
  }
  const before = process.resourceUsage().maxRSS * 1024
  const records: InputRecord[] = []
  const reading = (async () => { for await (const batch of readInput(Readable.from(openQuote()), 'csv')) records.push(...batch) })()
  await t.rejects(reading, { name: 'UsageError', message: /^the input is not valid CSV: .*65536.* line 3/ })
  const grown = process.resourceUsage().maxRSS * 1024 - before
  t.ok(grown < 32 * 1024 * 1024, `peak memory grew by ${(grown / 1024 / 1024).toFixed(1)} MiB for 16 MiB in one open quote`)
  t.equal((await readAll(`productKey,deviceKey,reference\nP,d1,"${'r'.repeat(60_000)}"\n`, 'csv')).length, 1, 'a record under the bound is read')
})

t.test('CSV: a read error of the input ends the records with that error', async (t) => {
  const input = new PassThrough()
  // The parser holds the last record of what it has until more arrives: two, so that one comes out.
  input.write('productKey,deviceKey\nP,d1\nP,d2\n')
  const reading = (async () => {
    const records: InputRecord[] = []
    for await (const batch of readInput(input, 'csv')) {
      records.push(...batch)
      input.destroy(Object.assign(new Error('EIO'), { code: 'EIO' }))
    }
    return records
  })()
  await t.rejects(reading, { code: 'EIO' })
})

t.test('NDJSON: blank lines keep their numbers, bad and too long lines fail alone, a BOM is dropped', async (t) => {
  const long = JSON.stringify({ productKey: 'P', deviceKey: 'x'.repeat(MAX_LINE_BYTES) })
  const records = await readAll(`\uFEFF{"productKey":"P","deviceKey":"d1","reference":"r"}\r\n\n{oops\n${long}\n"text"\n{"productKey":1}`, 'ndjson')
  t.same(records, [
    { at: 1, line: '{"productKey":"P","deviceKey":"d1","reference":"r"}', productKey: 'P', deviceKey: 'd1', reference: 'r' },
    { at: 3, reference: '', error: { code: 'MALFORMED_JSON', message: 'line 3 is not valid JSON' } },
    { at: 4, reference: '', error: { code: 'PAYLOAD_TOO_LARGE', message: `line 4 is longer than ${MAX_LINE_BYTES} bytes; one line holds one device` } },
    { at: 5, line: '"text"', productKey: '', deviceKey: '', reference: '' },
    { at: 6, line: '{"productKey":1}', productKey: '', deviceKey: '', reference: '' }
  ], 'values that are not devices are sent as they are: the service says what is wrong')
})

t.test('JSON: the items of "devices" by index, streamed across chunks; other keys are skipped', async (t) => {
  const text = JSON.stringify({ note: { big: 'x'.repeat(100) }, devices: [{ productKey: 'P', deviceKey: 'd0', reference: 'r0' }, null, { productKey: 'P', deviceKey: 'd2' }] })
  const chunks = Array.from({ length: Math.ceil(text.length / 7) }, (_, i) => Buffer.from(text.slice(i * 7, i * 7 + 7)))
  t.same(await readAll(chunks, 'json'), [
    { at: 0, line: '{"productKey":"P","deviceKey":"d0","reference":"r0"}', productKey: 'P', deviceKey: 'd0', reference: 'r0' },
    { at: 1, line: 'null', productKey: '', deviceKey: '', reference: '' },
    { at: 2, line: '{"productKey":"P","deviceKey":"d2"}', productKey: 'P', deviceKey: 'd2', reference: '' }
  ])
})

t.test('JSON: not JSON, cut short, "devices" not an array, or no devices at all is a UsageError', async (t) => {
  await t.rejects(readAll('{"devices":[{"a":1}]} trailing', 'json'), { name: 'UsageError', message: /the input is not valid JSON/ })
  await t.rejects(readAll('{"devices":[{"a":1}', 'json'), { name: 'UsageError', message: /the input is not valid JSON/ })
  await t.rejects(readAll('{"devices":{"a":{}}}', 'json'), { name: 'UsageError', message: /"devices" must be an array/ })
  await t.rejects(readAll('{"devices":[]}', 'json'), { name: 'UsageError', message: /lists no devices/ })
  await t.rejects(readAll('[{"productKey":"P"}]', 'json'), { name: 'UsageError', message: /lists no devices/ })
})

/** Lets the event loop turn `count` times: a value that comes after that has to be waited for. */
async function turns (count: number): Promise<void> {
  for (let i = 0; i < count; i++) await new Promise((resolve) => setImmediate(resolve))
}

t.test('batched: takes what is ready, at most max, and never waits to fill a batch', async (t) => {
  async function * ready (count: number): AsyncGenerator<number> {
    for (let i = 0; i < count; i++) yield i
  }
  const sizes: number[] = []
  for await (const batch of batched(ready(2500), MAX_BATCH)) sizes.push(batch.length)
  t.same(sizes, [1000, 1000, 500])

  async function * slow (): AsyncGenerator<number> {
    yield 1
    yield 2
    await turns(2)
    yield 3
  }
  const batches: number[][] = []
  for await (const batch of batched(slow(), 10)) batches.push(batch)
  t.same(batches, [[1, 2], [3]], 'a value that has to be waited for starts the next batch')

  async function * failing (): AsyncGenerator<number> {
    yield 1
    await turns(2)
    throw new Error('read failed')
  }
  const seen: number[][] = []
  await t.rejects((async () => { for await (const batch of batched(failing(), 10)) seen.push(batch) })(), { message: 'read failed' })
  t.same(seen, [[1]])
  for await (const batch of batched(ready(0), 10)) t.fail(`nothing in, nothing out: ${String(batch)}`)
})

t.test('openInput: standard input, a file, or a usage error for what cannot be read', async (t) => {
  const dir = t.testdir({ 'devices.csv': 'productKey,deviceKey\n' })
  const stdin = new PassThrough()
  t.same(await openInput('-', stdin), { stream: stdin, isFile: false })
  const file = await openInput(join(dir, 'devices.csv'), stdin)
  t.equal(file.isFile, true)
  file.stream.destroy()
  await t.rejects(openInput(join(dir, 'missing.csv'), stdin), { name: 'UsageError', message: /cannot read .*missing\.csv \(ENOENT\)/ })
  mkdirSync(join(dir, 'folder.csv'))
  await t.rejects(openInput(join(dir, 'folder.csv'), stdin), new UsageError(`cannot read ${join(dir, 'folder.csv')}: it is a directory`))
})

t.test('countItems: the lines that are not blank, less a CSV header; unknown for JSON and standard input', async (t) => {
  const dir = t.testdir({})
  const csv = join(dir, 'a.csv')
  writeFileSync(csv, 'productKey,deviceKey\r\nP,a\r\n\r\n   \r\nP,b\nP,c')
  t.equal(await countItems(csv, 'csv'), 3)
  const ndjson = join(dir, 'a.ndjson')
  writeFileSync(ndjson, '{}\n'.repeat(100_000))
  t.equal(await countItems(ndjson, 'ndjson'), 100_000)
  writeFileSync(csv, '')
  t.equal(await countItems(csv, 'csv'), 0)
  t.equal(await countItems(ndjson, 'json'), undefined)
  t.equal(await countItems('-', 'csv'), undefined)
  t.equal(await countItems(join(dir, 'gone.csv'), 'csv'), undefined, 'a file that went away')
})
