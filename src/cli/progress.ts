// Progress on stderr: a bar on a terminal, a plain line every few seconds otherwise, nothing with --quiet.
import type { Writable } from 'node:stream'
import cliProgress from 'cli-progress'

export type ProgressMode = 'bar' | 'lines' | 'none'

export interface Progress {
  /** How many devices the input holds, once counted. */
  setTotal: (total: number) => void
  /** Devices answered so far, and how many of them failed. */
  update: (done: number, failed: number) => void
  /** A line for the person watching (a retry): above the bar, or on its own line. */
  notice: (message: string) => void
  stop: () => void
}

export interface ProgressOptions {
  /** Calls `tick` every few seconds (each plain line is written by a tick) until the function it returns is called. */
  every?: (tick: () => void) => () => void
  now?: () => number
}

/** How often a plain progress line is written, at most. */
export const LINE_EVERY_MS = 5000

function everyFewSeconds (tick: () => void): () => void {
  const timer = setInterval(tick, LINE_EVERY_MS)
  // Progress never keeps the process alive.
  timer.unref()
  return () => clearInterval(timer)
}

/** A bar when stderr is a terminal, plain lines when it is a file or a pipe, and nothing with --quiet. */
export function progressMode (quiet: boolean, isTTY: boolean | undefined): ProgressMode {
  if (quiet) return 'none'
  return isTTY === true ? 'bar' : 'lines'
}

/** Devices per second over the last RATE_WINDOW_MS: it shows a stall (a retry) as it happens. */
const RATE_WINDOW_MS = 10_000

class RateMeter {
  #samples: Array<[time: number, done: number]> = []
  readonly #now: () => number

  constructor (now: () => number) {
    this.#now = now
    this.#samples.push([now(), 0])
  }

  /** Takes a sample of `done` and returns the rate: whole devices per second. */
  sample (done: number): number {
    const now = this.#now()
    this.#samples.push([now, done])
    while (this.#samples.length > 2 && (this.#samples[1] as [number, number])[0] <= now - RATE_WINDOW_MS) this.#samples.shift()
    const [since, before] = this.#samples[0] as [number, number]
    return now > since ? Math.round((done - before) * 1000 / (now - since)) : 0
  }
}

/** `1:05` or `2:03:20`. */
export function formatDuration (seconds: number): string {
  const s = Math.max(0, Math.round(seconds))
  const hours = Math.floor(s / 3600)
  const minutes = Math.floor((s % 3600) / 60)
  const rest = String(s % 60).padStart(2, '0')
  return hours > 0 ? `${hours}:${String(minutes).padStart(2, '0')}:${rest}` : `${minutes}:${rest}`
}

interface State { done: number, failed: number, total: number | undefined, rate: number }

/** `40000/100000 devices, 12 failed (3000/s, ETA 0:20)`, or without total and ETA while the total is unknown. */
export function describeProgress ({ done, failed, total, rate }: State): string {
  const count = total === undefined ? `${done} devices` : `${done}/${total} devices`
  const eta = total !== undefined && rate > 0 ? `, ETA ${formatDuration(Math.max(0, total - done) / rate)}` : ''
  return `${count}${failed > 0 ? `, ${failed} failed` : ''} (${rate}/s${eta})`
}

export function createProgress (mode: ProgressMode, stream: Writable, options: ProgressOptions = {}): Progress {
  const now = options.now ?? Date.now
  const state: State = { done: 0, failed: 0, total: undefined, rate: 0 }
  const meter = new RateMeter(now)
  if (mode === 'none') {
    return { setTotal: () => {}, update: () => {}, notice: () => {}, stop: () => {} }
  }
  if (mode === 'lines') {
    let written = -1
    const stop = (options.every ?? everyFewSeconds)(() => {
      state.rate = meter.sample(state.done)
      if (state.done === written) return
      written = state.done
      stream.write(`progress: ${describeProgress(state)}\n`)
    })
    return {
      setTotal: (total) => { state.total = total },
      update: (done, failed) => {
        state.done = done
        state.failed = failed
      },
      notice: (message) => { stream.write(message + '\n') },
      stop
    }
  }
  const bars = new cliProgress.MultiBar({
    stream: stream as NodeJS.WritableStream,
    hideCursor: true,
    barCompleteChar: '\u2588',
    barIncompleteChar: '\u2591',
    barsize: 30,
    gracefulExit: false,
    // Redraws at most this often, however often it is updated.
    fps: 5,
    format: (options, params) => {
      state.rate = meter.sample(params.value)
      const bar = state.total === undefined ? '' : cliProgress.Format.BarFormat(params.progress, options) + ' '
      return bar + describeProgress(state)
    }
  })
  const bar = bars.create(0, 0)
  return {
    setTotal: (total) => {
      state.total = total
      bar.setTotal(total)
    },
    update: (done, failed) => {
      state.done = done
      state.failed = failed
      bar.update(done)
    },
    notice: (message) => { bars.log(message + '\n') },
    stop: () => {
      // A last redraw also writes the notices not shown yet.
      bars.update()
      bars.stop()
    }
  }
}
