// Where log lines go: a file descriptor (stdout), written once per turn of the event loop.
import { writeSync } from 'node:fs'

/** Lines held past this many characters are written at once, without waiting for the end of the turn. */
export const MAX_PENDING = 64 * 1024

/** How long a write that would block (EAGAIN, a non-blocking pipe that is full) waits before it is tried again. */
const RETRY_MS = 1

const pause = new Int32Array(new SharedArrayBuffer(4))

/** Destinations holding lines not yet written: flushed when the process exits, however it exits. */
const holding = new Set<TurnDestination>()
let exitHook = false

/** Writes the lines every destination holds: the process's 'exit' handler. */
export function flushHeld (): void {
  for (const destination of holding) destination.flushSync()
}

/**
 * A pino destination that writes the lines logged during one turn of the event loop together, with
 * one synchronous write at the end of that turn (setImmediate), instead of one write per line.
 *
 * Why: at LOG_LEVEL=info every request logs a line, and under load one turn answers many
 * requests; one write(2) per line cost about 6% of the CPU of POST /sign (perf). What is kept of
 * writing synchronously:
 * - no line is lost when the process exits, cleanly or through an uncaught exception or
 *   process.exit: an 'exit' handler writes what is held. Only a kill that runs no JavaScript
 *   (SIGKILL, an abort) loses lines, at most those of the turn under way;
 * - a log reader that falls behind slows the service down instead of lines piling up in memory:
 *   the writes block, and no more than MAX_PENDING characters are ever held.
 */
export class TurnDestination {
  private pending = ''
  private scheduled = false
  private readonly fd: number
  private readonly write_: typeof writeSync
  private readonly flushLater = (): void => {
    this.scheduled = false
    this.flushSync()
  }

  /** `write` is for tests: a stand-in for fs.writeSync that can refuse or write part of a chunk. */
  constructor (fd: number, write: typeof writeSync = writeSync) {
    this.fd = fd
    this.write_ = write
    if (!exitHook) {
      exitHook = true
      process.on('exit', flushHeld)
    }
  }

  write (line: string): void {
    if (this.pending === '') holding.add(this)
    this.pending += line
    if (this.pending.length >= MAX_PENDING) {
      this.flushSync()
    } else if (!this.scheduled) {
      this.scheduled = true
      setImmediate(this.flushLater)
    }
  }

  /** pino's logger.flush(). */
  flush (done?: (err?: Error) => void): void {
    this.flushSync()
    done?.()
  }

  /**
   * Writes every held line now, retrying a write that would block.
   * @throws the write's error (EPIPE: nobody reads the log any more); the held lines are dropped.
   */
  flushSync (): void {
    if (this.pending === '') return
    const chunk = Buffer.from(this.pending)
    this.pending = ''
    holding.delete(this)
    let written = 0
    while (written < chunk.length) {
      try {
        written += this.write_(this.fd, chunk, written, chunk.length - written)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err
        Atomics.wait(pause, 0, 0, RETRY_MS)
      }
    }
  }
}
