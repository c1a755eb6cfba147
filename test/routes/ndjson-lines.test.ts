// Cutting an NDJSON byte stream into lines: chunk boundaries anywhere, lines too long, and a stream that goes idle.
import { PassThrough } from 'node:stream'
import t from 'tap'
import { IdleStreamError, splitLines, withIdleLimit, type Line } from '../../src/routes/ndjson-lines.js'

async function * chunksOf (...chunks: Array<string | Buffer>): AsyncGenerator<Buffer> {
  for (const chunk of chunks) yield Buffer.from(chunk)
}

async function linesOf (chunks: AsyncIterable<Buffer>, maxBytes = 16): Promise<Line[]> {
  const all: Line[] = []
  for await (const lines of splitLines(chunks, maxBytes)) all.push(...lines)
  return all
}

t.test('lines are cut at LF wherever the chunks break, a CR before it is dropped, blank lines keep their number', async (t) => {
  t.same(await linesOf(chunksOf('{"a":', '1}\r\n\n  \n{"b"', ':2}\n{"c":3}')), [
    { number: 1, text: '{"a":1}' },
    { number: 4, text: '{"b":2}' },
    { number: 5, text: '{"c":3}' }
  ])
})

t.test('a character split across two chunks is decoded whole', async (t) => {
  const bytes = Buffer.from('"é😀"\n')
  t.same(await linesOf(chunksOf(bytes.subarray(0, 2), bytes.subarray(2, 5), bytes.subarray(5))), [{ number: 1, text: '"é😀"' }])
})

t.test('a line longer than the bound is reported, whether it comes in one chunk or many, and the next line is whole', async (t) => {
  t.same(await linesOf(chunksOf('x'.repeat(17) + '\nok\n')), [{ number: 1, tooLong: true }, { number: 2, text: 'ok' }], 'in one chunk')
  t.same(await linesOf(chunksOf('x'.repeat(10), 'x'.repeat(10), 'x'.repeat(10), '\nok\n')), [{ number: 1, tooLong: true }, { number: 2, text: 'ok' }], 'over several')
  t.same(await linesOf(chunksOf('x'.repeat(10), 'x'.repeat(10))), [{ number: 1, tooLong: true }], 'and as the last line')
  t.same(await linesOf(chunksOf('x'.repeat(8), 'x'.repeat(8) + '\n')), [{ number: 1, text: 'x'.repeat(16) }], 'exactly the bound is fine')
})

t.test('an empty stream has no lines, and a last blank line without a newline is nothing', async (t) => {
  t.same(await linesOf(chunksOf()), [])
  t.same(await linesOf(chunksOf('{}\n', '   ')), [{ number: 1, text: '{}' }])
})

t.test('withIdleLimit passes chunks through, ends with the stream, and throws when input stops for the limit', async (t) => {
  const input = new PassThrough()
  const seen: string[] = []
  const reading = (async () => {
    for await (const chunk of withIdleLimit(input, 100)) seen.push(chunk.toString())
  })()
  input.write('a')
  input.write('b')
  await t.rejects(reading, IdleStreamError)
  t.same(seen.join(''), 'ab')
  const done = new PassThrough()
  done.end('c')
  const all: string[] = []
  for await (const chunk of withIdleLimit(done, 1000)) all.push(chunk.toString())
  t.same(all, ['c'])
})

t.test('with maxLines, a chunk of many lines is yielded in groups of at most that many, each cut only when asked for', async (t) => {
  const groups: number[][] = []
  const chunk = Array.from({ length: 7 }, (_, i) => `{"n":${i}}`).join('\n') + '\n'
  const lines = splitLines(chunksOf(chunk, '{"n":7}\n'), 64, 3)
  for await (const group of lines) groups.push(group.map((line) => line.number))
  t.same(groups, [[1, 2, 3], [4, 5, 6], [7], [8]])
})
