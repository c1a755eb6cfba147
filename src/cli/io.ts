// What every sub-command reads, writes and listens to: main.ts passes the process's own, tests their fakes.
import type { Readable, Writable } from 'node:stream'

export interface Io {
  stdin: Readable
  stdout: Writable
  stderr: Writable & { isTTY?: boolean }
  /** Aborted with the signal's name (SIGINT, SIGTERM) when the command should stop and clean up. */
  signal: AbortSignal
}
