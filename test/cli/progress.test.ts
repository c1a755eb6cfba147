// Progress: which kind for which stderr, the wording, plain lines on a timer, and the bar on a terminal.
import { Writable } from 'node:stream'
import t from 'tap'
import { LINE_EVERY_MS, createProgress, describeProgress, formatDuration, progressMode } from '../../src/cli/progress.js'

/** A stream that keeps what is written; `isTTY` and the cursor methods make it look like a terminal to cli-progress. */
function sink (isTTY = false): Writable & { text: () => string, isTTY: boolean, columns: number } {
  const chunks: string[] = []
  const stream = new Writable({
    write (chunk: Buffer, _encoding, done) {
      chunks.push(chunk.toString())
      done()
    }
  })
  return Object.assign(stream, {
    isTTY,
    columns: 100,
    text: () => chunks.join(''),
    cursorTo: (_x: number, _y?: number, done?: () => void) => { done?.(); return true },
    moveCursor: (_dx: number, _dy: number, done?: () => void) => { done?.(); return true },
    clearLine: (_dir: number, done?: () => void) => { done?.(); return true },
    clearScreenDown: (done?: () => void) => { done?.(); return true }
  })
}

t.test('progressMode: a bar on a terminal, lines elsewhere, nothing with --quiet', async (t) => {
  t.equal(progressMode(false, true), 'bar')
  t.equal(progressMode(false, false), 'lines')
  t.equal(progressMode(false, undefined), 'lines')
  t.equal(progressMode(true, true), 'none')
})

t.test('formatDuration and describeProgress', async (t) => {
  t.equal(formatDuration(0), '0:00')
  t.equal(formatDuration(65.4), '1:05')
  t.equal(formatDuration(7400), '2:03:20')
  t.equal(formatDuration(-3), '0:00')
  t.equal(describeProgress({ done: 40000, failed: 0, total: 100000, rate: 3000 }), '40000/100000 devices (3000/s, ETA 0:20)')
  t.equal(describeProgress({ done: 40000, failed: 12, total: undefined, rate: 3000 }), '40000 devices, 12 failed (3000/s)')
  t.equal(describeProgress({ done: 5, failed: 0, total: 10, rate: 0 }), '5/10 devices (0/s)', 'no ETA before a rate is known')
  t.equal(describeProgress({ done: 12, failed: 0, total: 10, rate: 4 }), '12/10 devices (4/s, ETA 0:00)', 'a total counted short never gives a negative ETA')
})

t.test('lines: one per tick while something changed, the rate over the last seconds, notices on their own line', async (t) => {
  let now = 0
  let tick: () => void = () => {}
  let stopped = false
  const stream = sink()
  const progress = createProgress('lines', stream, {
    now: () => now,
    every: (fn) => {
      tick = fn
      return () => { stopped = true }
    }
  })
  progress.setTotal(100)
  now = 1000
  progress.update(40, 2)
  tick()
  tick()
  const written = stream.text()
  t.equal(written, 'progress: 40/100 devices, 2 failed (40/s, ETA 0:02)\n', 'once, however many ticks pass without a change')
  progress.notice('sign-batch: retry 1 of 8')
  now = 12_000
  progress.update(90, 2)
  tick()
  progress.stop()
  t.equal(stopped, true)
  t.equal(stream.text().slice(written.length), 'sign-batch: retry 1 of 8\nprogress: 90/100 devices, 2 failed (5/s, ETA 0:02)\n', 'the rate of the last 10 s')
})

t.test('lines: a tick every LINE_EVERY_MS by default, which never keeps the process alive', async (t) => {
  const progress = createProgress('lines', sink())
  progress.update(1, 0)
  progress.stop()
  t.equal(LINE_EVERY_MS, 5000)
})

t.test('bar: drawn on a terminal with done/total, rate and ETA; notices above it; none draws nothing', async (t) => {
  let now = 0
  const stream = sink(true)
  const progress = createProgress('bar', stream, { now: () => now })
  now = 2000
  progress.update(10, 0)
  progress.notice('sign-batch: a notice')
  progress.setTotal(100)
  now = 4000
  progress.update(50, 1)
  progress.stop()
  const text = stream.text()
  t.match(text, /sign-batch: a notice\n/)
  t.match(text, /[█░]+ 50\/100 devices, 1 failed \(\d+\/s, ETA \d:\d\d\)/)

  const unknown = sink(true)
  const counting = createProgress('bar', unknown)
  counting.update(7, 0)
  counting.stop()
  t.match(unknown.text(), /7 devices \(\d+\/s\)/)
  t.notMatch(unknown.text(), /█/, 'no bar without a total')

  const instant = sink(true)
  const sameMoment = createProgress('bar', instant, { now: () => 0 })
  sameMoment.update(3, 0)
  sameMoment.stop()
  t.match(instant.text(), /3 devices \(0\/s\)/, 'no time passed yet: no rate')

  const quiet = sink(true)
  const none = createProgress('none', quiet)
  none.setTotal(1)
  none.update(1, 0)
  none.notice('hidden')
  none.stop()
  t.equal(quiet.text(), '')
})
