// `enos-mqtt-signer import`: loads a device file (the file store's JSON or CSV) into PostgreSQL in one transaction.
import { createReadStream } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { Command, Option } from 'commander'
import type pg from 'pg'
import { from as copyFrom } from 'pg-copy-streams'
import { CSV_HEADER_RULE, CSV_LINE_TOO_LONG, DeviceFileError, MAX_CSV_LINE, formatOf, parseDeviceFile, readCsvHeader, readCsvLine, type DeviceFileFormat } from '../store/device-file.js'
import { findInvalidUtf8 } from '../store/find-invalid-utf8.js'
import type { Device } from '../store/store.js'
import { databaseUrlOption, openDatabase, reportFailure } from './database.js'
import type { Io } from './io.js'
import { createProgress, progressMode, type Progress } from './progress.js'

export interface ImportOptions {
  in: string
  format?: DeviceFileFormat
  databaseUrl?: string
  dryRun: boolean
  quiet: boolean
}

/** Problems listed in the error; the rest are counted. */
const MAX_LISTED = 10
/** Rows sent to COPY in one piece. */
const CHUNK_ROWS = 2000

const STAGING = `CREATE TEMP TABLE import_devices (
  line integer NOT NULL,
  product_key text COLLATE "C" NOT NULL,
  device_key text COLLATE "C" NOT NULL,
  device_secret text NOT NULL,
  enabled boolean NOT NULL
) ON COMMIT DROP`

const DUPLICATES = `SELECT product_key, device_key, min(line) AS first, max(line) AS last FROM import_devices
  GROUP BY product_key, device_key HAVING count(*) > 1 ORDER BY min(line) LIMIT ${MAX_LISTED + 1}`

// A row whose secret and enabled flag are already those of the file is left alone (and its updated_at too).
const UPSERT = `WITH upserted AS (
  INSERT INTO devices AS d (product_key, device_key, device_secret, enabled)
  SELECT product_key, device_key, device_secret, enabled FROM import_devices
  ON CONFLICT (product_key, device_key) DO UPDATE SET device_secret = EXCLUDED.device_secret, enabled = EXCLUDED.enabled
    WHERE (d.device_secret, d.enabled) IS DISTINCT FROM (EXCLUDED.device_secret, EXCLUDED.enabled)
  RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted) AS inserted, count(*) FILTER (WHERE NOT inserted) AS updated FROM upserted`

export function importCommand (io: Io): Command {
  return new Command('import')
    .summary('load devices from a JSON or CSV device file into PostgreSQL')
    .description('Loads the devices of a file in the file store\'s format (JSON { "devices": [...] }, or CSV productKey,deviceKey,deviceSecret[,enabled]) into the ' +
      'devices table: a device already there gets the file\'s secret and enabled flag, others are added, none is removed. All or nothing: ' +
      'one bad line (named in the error) leaves the table as it was. CSV is read as a stream, so a file of millions of devices is not held in memory; JSON is read whole.\n\n' +
      'Exit status: 0 imported (or, with --dry-run, valid), 1 a bad file or a database error (nothing changed), 2 usage error, 130/143 interrupted (nothing changed).')
    .requiredOption('--in <file>', 'the device file: .csv or .json (or say which with --format)')
    .addOption(new Option('--format <format>', 'format of --in, instead of its extension').choices(['json', 'csv']))
    .addOption(databaseUrlOption())
    .option('--dry-run', 'check the file against the rules and the table, and report what would change, without changing anything', false)
    .option('--quiet', 'no progress', false)
    .action(async (options: ImportOptions) => {
      process.exitCode = await runImport(options, io)
    })
}

export async function runImport (options: ImportOptions, io: Io): Promise<number> {
  const format = options.format ?? formatOf(options.in)
  const progress = createProgress(progressMode(options.quiet, io.stderr.isTTY), io.stderr)
  const pool = openDatabase(options.databaseUrl)
  const client = await pool.connect().catch((err: unknown) => err as Error)
  if (client instanceof Error) {
    await pool.end()
    return reportFailure(io, 'import', client)
  }
  const status = await importInTransaction(client, format, options, io, progress)
  client.release()
  await pool.end()
  return status
}

/** The whole import as one transaction: COPY into a staging table, checks, one upsert; rolled back on any failure. */
async function importInTransaction (client: pg.PoolClient, format: DeviceFileFormat, options: ImportOptions, io: Io, progress: Progress): Promise<number> {
  try {
    await client.query('BEGIN')
    await client.query(STAGING)
    const read = { rows: 0, problems: [] as string[], more: 0 }
    const rows = format === 'csv' ? csvRows(options.in, read, progress, io.signal) : jsonRows(options.in, read, progress)
    await pipeline(Readable.from(rows), client.query(copyFrom('COPY import_devices FROM STDIN')))
    progress.stop()
    await findDuplicates(client, read)
    if (read.problems.length > 0) {
      const listed = read.problems.map((problem) => `${options.in}: ${problem}`).join('; ')
      throw new DeviceFileError([listed + (read.more > 0 ? `; and ${read.more} more` : '') + '; nothing was imported'])
    }
    const { rows: [counts] } = await client.query<{ inserted: string, updated: string }>(UPSERT)
    const inserted = Number(counts?.inserted)
    const updated = Number(counts?.updated)
    await client.query(options.dryRun ? 'ROLLBACK' : 'COMMIT')
    const summary = `${read.rows} devices: ${inserted} inserted, ${updated} updated, ${read.rows - inserted - updated} unchanged`
    io.stdout.write(options.dryRun ? `dry run, nothing changed: ${summary.replace(/inserted|updated/g, 'would be $&')}\n` : `imported ${summary}\n`)
    return 0
  } catch (err) {
    progress.stop()
    await client.query('ROLLBACK').catch(() => {})
    if (io.signal.aborted) {
      io.stderr.write(`enos-mqtt-signer import: interrupted (${String(io.signal.reason)}); nothing changed\n`)
      return io.signal.reason === 'SIGTERM' ? 143 : 130
    }
    return reportFailure(io, 'import', err)
  }
}

interface ReadState { rows: number, problems: string[], more: number }

function addProblems (read: ReadState, found: readonly string[]): void {
  for (const problem of found) {
    if (read.problems.length < MAX_LISTED) read.problems.push(problem)
    else read.more++
  }
}

/** COPY's text format: tab-separated, with backslash as its escape (keys and secrets hold no tab, newline or control character). */
function copyRow (line: number, device: Device): string {
  const escape = (value: string): string => value.replaceAll('\\', '\\\\')
  return `${line}\t${escape(device.productKey)}\t${escape(device.deviceKey)}\t${escape(device.deviceSecret)}\t${device.enabled ? 't' : 'f'}\n`
}

/** A line that stops the reading of the file: its bytes are not UTF-8, or it is too long to be a device. */
class LineError extends Error {}

function notUtf8 (line: number, column: number): LineError {
  return new LineError(`line ${line}: the file is not valid UTF-8 (first bad byte at column ${column}); save it as UTF-8`)
}

/**
 * The lines of a file as the file store splits them (on LF, a CR before it dropped), decoded as
 * strict UTF-8 a chunk at a time; the last item is what follows the last newline ('' when the file ends with one).
 * A line is held only up to MAX_CSV_LINE characters (plus one chunk): a 30 MB quote left open is not.
 * @throws LineError naming the line of the first byte that is not UTF-8, or of a line too long.
 */
async function * fileLines (path: string): AsyncGenerator<string> {
  const decoder = new TextDecoder('utf-8', { fatal: true })
  let rest = ''
  let linesBefore = 0
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) {
    let text: string
    try {
      text = decoder.decode(chunk, { stream: true })
    } catch {
      // The file store's search for the bad byte, in this chunk. The decoder failed on a byte of this chunk,
      // so the search finds that one or an earlier one (the end of a character begun in the previous chunk).
      const bad = findInvalidUtf8(chunk) as { line: number, column: number }
      throw notUtf8(linesBefore + bad.line, bad.column)
    }
    const parts = (rest + text).split('\n')
    rest = parts.pop() as string
    linesBefore += parts.length
    if (rest.length > MAX_CSV_LINE) throw new LineError(`line ${linesBefore + 1}: ${CSV_LINE_TOO_LONG}`)
    for (const part of parts) yield part.endsWith('\r') ? part.slice(0, -1) : part
  }
  yield rest + decoder.decode()
}

/** Validates the CSV line by line with the file store's rules, yielding COPY rows in chunks. */
async function * csvRows (path: string, read: ReadState, progress: Progress, signal: AbortSignal): AsyncGenerator<string> {
  let lineNumber = 0
  let columns: number | undefined
  let chunk = ''
  let inChunk = 0
  let last = ''
  try {
    for await (const line of fileLines(path)) {
      if (signal.aborted) throw new Error('interrupted')
      lineNumber++
      last = line
      if (lineNumber === 1) {
        columns = readCsvHeader(line)
        if (columns === undefined) {
          addProblems(read, [`line 1: ${CSV_HEADER_RULE}`])
          return
        }
        continue
      }
      const found: string[] = []
      const device = readCsvLine(line, columns as number, lineNumber, found)
      addProblems(read, found)
      if (device === undefined) continue
      read.rows++
      chunk += copyRow(lineNumber, device)
      if (++inChunk === CHUNK_ROWS) {
        progress.update(read.rows, 0)
        yield chunk
        chunk = ''
        inChunk = 0
      }
    }
  } catch (err) {
    if (!(err instanceof LineError)) throw err
    addProblems(read, [err.message])
    return
  }
  // The last item is what follows the last newline: a file read while being written ends in a line cut short.
  if (last !== '') addProblems(read, [`line ${lineNumber}: the file does not end with a newline, so its last line may have been cut short while being written; end the file with a newline`])
  progress.update(read.rows, 0)
  if (chunk !== '') yield chunk
}

/** A JSON device file is parsed whole, by the file store's parser (so its rules and messages are the same). */
async function * jsonRows (path: string, read: ReadState, progress: Progress): AsyncGenerator<string> {
  let devices: Map<string, Device>
  try {
    devices = await parseDeviceFile(await readFile(path), 'json')
  } catch (err) {
    if (!(err instanceof DeviceFileError)) throw err
    addProblems(read, err.problems)
    return
  }
  let chunk = ''
  for (const device of devices.values()) {
    chunk += copyRow(++read.rows, device)
    if (read.rows % CHUNK_ROWS === 0) {
      progress.update(read.rows, 0)
      yield chunk
      chunk = ''
    }
  }
  progress.update(read.rows, 0)
  if (chunk !== '') yield chunk
}

/** A device twice in one CSV file is refused, as the file store refuses it (JSON duplicates were found by its parser). */
async function findDuplicates (client: pg.PoolClient, read: ReadState): Promise<void> {
  if (read.problems.length > 0) return
  const { rows } = await client.query<{ product_key: string, device_key: string, first: number, last: number }>(DUPLICATES)
  addProblems(read, rows.map((row) => `line ${row.last}: duplicate device productKey=${row.product_key} deviceKey=${row.device_key} (first at line ${row.first})`))
}
