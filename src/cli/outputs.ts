// Writes results as CSV or NDJSON to a file that appears only when complete (a temporary file renamed at the end), or to stdout.
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createWriteStream } from 'node:fs'
import { rename, unlink } from 'node:fs/promises'
import { basename, dirname, extname, join } from 'node:path'
import type { Writable } from 'node:stream'
import { finished } from 'node:stream/promises'
import { stringify } from 'csv-stringify'
import { UsageError } from './usage-error.js'

export const OUTPUT_FORMATS = ['csv', 'ndjson'] as const
export type OutputFormat = (typeof OUTPUT_FORMATS)[number]

/** The columns of the credentials CSV, in this order. */
export const CREDENTIAL_COLUMNS = ['productKey', 'deviceKey', 'reference', 'clientId', 'timestamp', 'signMethod', 'mqttClientId', 'mqttUsername', 'mqttPassword'] as const

/** The columns of the --errors CSV. */
export const ERROR_COLUMNS = ['line', 'reference', 'code', 'message'] as const

const EXTENSIONS: Readonly<Record<string, OutputFormat>> = { '.csv': 'csv', '.ndjson': 'ndjson', '.jsonl': 'ndjson' }

/** The output's format: `--out-format`, else the file's extension. Standard output (`-`) needs `--out-format`. */
export function outputFormatOf (path: string, format: OutputFormat | undefined): OutputFormat {
  if (format !== undefined) return format
  if (path === '-') throw new UsageError('writing to standard output (--out -) needs --out-format csv or ndjson')
  const found = EXTENSIONS[extname(path).toLowerCase()]
  if (found === undefined) throw new UsageError(`cannot tell the output format of ${path} from its extension (.csv, .ndjson or .jsonl); add --out-format csv or ndjson`)
  return found
}

/** Where text goes: a stream to write, `commit` to make it final, `abort` to leave nothing behind. */
interface Destination {
  name: string
  stream: Writable
  commit: () => Promise<void>
  abort: () => Promise<void>
}

/** Rows (objects keyed by column) on their way to a destination. Write errors surface on the next call. */
export interface RowWriter {
  write: (row: Record<string, unknown>) => void
  /** The destination holds more than it likes: wait for `drained` before writing more. */
  readonly isFull: boolean
  drained: () => Promise<void>
  /** Writes what is left and puts the file in place. */
  commit: () => Promise<void>
  /** Removes the temporary file; a file that was already at the output path is left as it was. */
  abort: () => Promise<void>
}

/** The output could not be written (a full disk, a closed pipe): the run cannot complete. */
export class OutputError extends Error {
  override name = 'OutputError'
}

/**
 * A temporary file beside `path`, hidden and named so that nobody takes it for the output,
 * readable by its owner only (it holds passwords). Resolves once it is open, so that an
 * output that cannot be written fails before any device is sent.
 */
async function fileDestination (path: string): Promise<Destination> {
  const temp = join(dirname(path), `.${basename(path)}.${randomBytes(4).toString('hex')}.tmp`)
  const stream = createWriteStream(temp, { flags: 'wx', mode: 0o600 })
  try {
    await once(stream, 'open')
  } catch (err) {
    throw new UsageError(`cannot write ${path} (${String((err as NodeJS.ErrnoException).code)})`)
  }
  return {
    name: path,
    stream,
    commit: async () => {
      stream.end()
      await finished(stream)
      await rename(temp, path)
    },
    abort: async () => {
      stream.destroy()
      await unlink(temp).catch(() => {})
    }
  }
}

function stdoutDestination (stdout: Writable): Destination {
  return {
    name: 'standard output',
    stream: stdout,
    // The callback of a last, empty write comes once everything before it has been written.
    commit: async () => new Promise((resolve) => stdout.write('', () => resolve())),
    abort: async () => {}
  }
}

/** Resolves once `stream` has drained, or has failed or closed (which emit 'error' and 'close', never 'drain'). */
async function untilDrained (stream: Writable): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      for (const event of EVENTS) stream.off(event, done)
      resolve()
    }
    const EVENTS = ['drain', 'error', 'close'] as const
    for (const event of EVENTS) stream.on(event, done)
  })
}

/** Opens `path` (`-` is `stdout`) for rows as CSV with these columns, or as NDJSON. */
export async function openRows (path: string, stdout: Writable, format: OutputFormat, columns: readonly string[]): Promise<RowWriter> {
  const destination = path === '-' ? stdoutDestination(stdout) : await fileDestination(path)
  const { stream } = destination
  let failure: OutputError | undefined
  const fail = (err: NodeJS.ErrnoException): void => { failure ??= new OutputError(`cannot write ${destination.name} (${String(err.code ?? err.message)})`) }
  stream.on('error', fail)
  const check = (): void => { if (failure !== undefined) throw failure }
  const stringifier = format === 'csv' ? stringify({ header: true, columns: [...columns] }) : undefined
  stringifier?.on('data', (chunk: Buffer) => { stream.write(chunk) })
  return {
    write: (row) => {
      check()
      if (stringifier === undefined) stream.write(JSON.stringify(row) + '\n')
      else stringifier.write(row)
    },
    get isFull () { return stream.writableNeedDrain },
    drained: async () => {
      check()
      if (stream.writableNeedDrain) await untilDrained(stream)
      check()
    },
    commit: async () => {
      if (stringifier !== undefined) {
        stringifier.end()
        await finished(stringifier)
      }
      check()
      await destination.commit().catch(fail)
      check()
    },
    abort: async () => {
      stringifier?.destroy()
      await destination.abort()
    }
  }
}
