// The log destination: lines written once per turn of the event loop, none lost on exit, a slow or gone reader handled.
import { spawnSync } from 'node:child_process'
import { openSync, closeSync, readFileSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { MAX_PENDING, TurnDestination, flushHeld } from '../src/log-destination.js'

/** A stand-in for fs.writeSync that records each chunk written and can be told to refuse or write part of one. */
function fakeWrite (plan: Array<'EAGAIN' | 'EPIPE' | number> = []): { write: typeof writeSync, chunks: string[] } {
  const chunks: string[] = []
  const write = ((_fd: number, buffer: Buffer, offset: number, length: number): number => {
    const step = plan.shift()
    if (step === 'EAGAIN' || step === 'EPIPE') throw Object.assign(new Error(`write ${step}`), { code: step })
    const n = step === undefined ? length : Math.min(step, length)
    chunks.push(buffer.subarray(offset, offset + n).toString())
    return n
  }) as typeof writeSync
  return { write, chunks }
}

t.test('the lines of one turn go out together, in order, at the end of that turn', async (t) => {
  const { write, chunks } = fakeWrite()
  const destination = new TurnDestination(99, write)
  destination.write('one\n')
  destination.write('two\n')
  destination.write('three\n')
  t.same(chunks, [], 'nothing is written while the turn runs')
  await nextTurn()
  t.same(chunks, ['one\ntwo\nthree\n'])
  destination.write('four\n')
  await nextTurn()
  t.same(chunks, ['one\ntwo\nthree\n', 'four\n'], 'the next turn gets a write of its own')
  await nextTurn()
  t.equal(chunks.length, 2, 'a turn without lines writes nothing')
})

t.test('into a real file', async (t) => {
  const file = join(t.testdir(), 'log')
  const fd = openSync(file, 'a')
  t.teardown(() => closeSync(fd))
  const destination = new TurnDestination(fd)
  destination.write('{"msg":"a"}\n')
  destination.write('{"msg":"é ✓"}\n')
  t.equal(readFileSync(file, 'utf8'), '')
  await nextTurn()
  t.equal(readFileSync(file, 'utf8'), '{"msg":"a"}\n{"msg":"é ✓"}\n')
})

t.test('more than MAX_PENDING characters in one turn are written at once, not held', async (t) => {
  const { write, chunks } = fakeWrite()
  const destination = new TurnDestination(99, write)
  const line = `${'x'.repeat(1023)}\n`
  for (let i = 0; i < MAX_PENDING / 1024; i++) destination.write(line)
  t.equal(chunks.length, 1, 'written as soon as the limit was reached')
  t.equal(chunks[0]?.length, MAX_PENDING)
  destination.write('after\n')
  await nextTurn()
  t.same(chunks.slice(1), ['after\n'], 'what came after goes out at the end of the turn')
})

t.test('a write that would block is retried, and a short write is completed: nothing lost, nothing reordered', async (t) => {
  const { write, chunks } = fakeWrite(['EAGAIN', 3, 'EAGAIN', 'EAGAIN', 4])
  const destination = new TurnDestination(99, write)
  destination.write('abcdef\n')
  destination.write('ghij\n')
  destination.flush()
  t.same(chunks, ['abc', 'def\n', 'ghij\n'])
})

t.test('a write that fails (nobody reads the log) throws once; the lines it held are not written again', async (t) => {
  const { write, chunks } = fakeWrite(['EPIPE'])
  const destination = new TurnDestination(99, write)
  destination.write('lost\n')
  t.throws(() => { destination.flushSync() }, { code: 'EPIPE' })
  destination.write('next\n')
  let flushed = false
  destination.flush(() => { flushed = true })
  t.ok(flushed, 'flush() calls back once written')
  t.same(chunks, ['next\n'])
  await nextTurn()
  t.same(chunks, ['next\n'], 'the turn that was scheduled finds nothing left to write')
})

t.test('flushHeld, the exit handler, writes what every destination holds', async (t) => {
  const first = fakeWrite()
  const second = fakeWrite()
  new TurnDestination(1, first.write).write('one\n')
  new TurnDestination(2, second.write).write('two\n')
  flushHeld()
  t.same([first.chunks, second.chunks], [['one\n'], ['two\n']])
  flushHeld()
  t.same([first.chunks, second.chunks], [['one\n'], ['two\n']], 'and nothing twice')
})

const MODULE = fileURLToPath(new URL('../src/log-destination.ts', import.meta.url))

/** Runs a script in a new node process with a TurnDestination on stdout as `log`. */
function child (script: string): { stdout: string, stderr: string, status: number | null } {
  const source = `import { TurnDestination } from ${JSON.stringify(MODULE)}\nconst log = new TurnDestination(1)\n${script}`
  // Without NODE_V8_COVERAGE: the module compiled for an -e script maps to other lines, and its
  // coverage would be merged with this process's as if it were the same file.
  const { NODE_V8_COVERAGE: _coverage, ...env } = process.env
  const result = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', source], { encoding: 'utf8', timeout: 30_000, env })
  return { stdout: result.stdout, stderr: result.stderr, status: result.status }
}

t.test('lines held when the process exits are written: process.exit and an uncaught exception', async (t) => {
  const exited = child("log.write('a\\n'); log.write('b\\n'); process.exit(3)")
  t.equal(exited.stdout, 'a\nb\n')
  t.equal(exited.status, 3)
  const crashed = child("log.write('before the crash\\n'); throw new Error('a bug')")
  t.equal(crashed.stdout, 'before the crash\n')
  t.match(crashed.stderr, /a bug/)
  t.equal(crashed.status, 1)
})
