// Writing results: CSV and NDJSON, to a temporary file renamed into place at the end, or to a stream; write failures.
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { PassThrough, Writable } from 'node:stream'
import t from 'tap'
import { CREDENTIAL_COLUMNS, OutputError, openRows, outputFormatOf } from '../../src/cli/outputs.js'
import { filesIn } from './cli-helper.js'

t.test('outputFormatOf: --out-format first, then the extension; standard output needs --out-format', async (t) => {
  t.equal(outputFormatOf('a.csv', undefined), 'csv')
  t.equal(outputFormatOf('a.NDJSON', undefined), 'ndjson')
  t.equal(outputFormatOf('a.jsonl', undefined), 'ndjson')
  t.equal(outputFormatOf('-', 'csv'), 'csv')
  t.throws(() => outputFormatOf('-', undefined), { name: 'UsageError', message: /\(--out -\) needs --out-format/ })
  t.throws(() => outputFormatOf('out.json', undefined), { name: 'UsageError', message: /cannot tell the output format of out\.json/ })
})

t.test('a CSV file appears only on commit, complete, readable by its owner only; until then a hidden temporary file', async (t) => {
  const dir = t.testdir({})
  const path = join(dir, 'credentials.csv')
  const rows = await openRows(path, new PassThrough(), 'csv', CREDENTIAL_COLUMNS)
  rows.write({ productKey: 'P', deviceKey: 'd', reference: 'a "quoted", ref', mqttPassword: 'X' })
  const [temp] = filesIn(dir)
  t.match(temp, /^\.credentials\.csv\.[0-9a-f]{8}\.tmp$/)
  t.equal(statSync(join(dir, temp as string)).mode & 0o777, 0o600)
  await rows.drained()
  await rows.commit()
  t.same(filesIn(dir), ['credentials.csv'])
  t.equal(readFileSync(path, 'utf8'), `${CREDENTIAL_COLUMNS.join(',')}\nP,d,"a ""quoted"", ref",,,,,,X\n`)
})

t.test('a CSV with no rows still has its header; abort removes the temporary file and keeps an older output as it was', async (t) => {
  const dir = t.testdir({ 'old.csv': 'the previous run\n' })
  const empty = await openRows(join(dir, 'empty.csv'), new PassThrough(), 'csv', ['line', 'code'])
  await empty.commit()
  t.equal(readFileSync(join(dir, 'empty.csv'), 'utf8'), 'line,code\n')
  const aborted = await openRows(join(dir, 'old.csv'), new PassThrough(), 'csv', ['line'])
  aborted.write({ line: 1 })
  await aborted.abort()
  t.same(filesIn(dir), ['empty.csv', 'old.csv'])
  t.equal(readFileSync(join(dir, 'old.csv'), 'utf8'), 'the previous run\n')
})

t.test('NDJSON to a stream (standard output), with backpressure', async (t) => {
  const chunks: string[] = []
  let release: () => void = () => {}
  const slow = new Writable({
    highWaterMark: 16,
    write (chunk: Buffer, _encoding, done) {
      chunks.push(chunk.toString())
      release = done
    }
  })
  const rows = await openRows('-', slow, 'ndjson', [])
  rows.write({ line: 1, ok: true })
  rows.write({ line: 2, ok: false })
  t.equal(rows.isFull, true, 'the stream wants a pause')
  const drained = rows.drained()
  release()
  release()
  await drained
  t.equal(rows.isFull, false)
  const committed = rows.commit()
  release()
  await committed
  await rows.abort()
  t.same(chunks.join(''), '{"line":1,"ok":true}\n{"line":2,"ok":false}\n')
})

t.test('a destination that fails: OutputError on the next write, wait or commit; nothing left behind', async (t) => {
  const broken = new Writable({
    write (_chunk, _encoding, done) {
      done(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }))
    }
  })
  const rows = await openRows('-', broken, 'csv', ['line'])
  rows.write({ line: 1 })
  await new Promise((resolve) => broken.on('close', resolve))
  t.throws(() => rows.write({ line: 2 }), new OutputError('cannot write standard output (EPIPE)'))
  await t.rejects(rows.drained(), { name: 'OutputError' })
  await t.rejects(rows.commit(), { name: 'OutputError' })

  const full = new Writable({
    highWaterMark: 1,
    write (_chunk, _encoding, done) {
      setImmediate(() => done(new Error('no space left')))
    }
  })
  const waiting = await openRows('-', full, 'ndjson', [])
  waiting.write({ line: 1 })
  await t.rejects(waiting.drained(), { name: 'OutputError', message: 'cannot write standard output (no space left)' }, 'a wait for drain ends when the stream fails')
})

t.test('an output that cannot be created or put in place is reported with its path', async (t) => {
  const dir = t.testdir({ sub: { x: '' } })
  await t.rejects(openRows(join(dir, 'missing', 'out.csv'), new PassThrough(), 'csv', ['line']), { name: 'UsageError', message: /cannot write .*out\.csv \(ENOENT\)/ })
  // A directory that is not empty stands where the file should go: the rename at the end fails.
  const blocked = await openRows(join(dir, 'sub'), new PassThrough(), 'ndjson', [])
  await t.rejects(blocked.commit(), { name: 'OutputError', message: /cannot write .*sub \((EISDIR|ENOTEMPTY|EEXIST)\)/ })
  await blocked.abort()
  t.same(filesIn(dir), ['sub'], 'the temporary file is removed')
})
