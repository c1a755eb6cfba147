// Reads devices from CSV, JSON ({ "devices": [...] }) or NDJSON as a stream of records, never the whole input at once.
import { createReadStream } from 'node:fs'
import { open, type FileHandle } from 'node:fs/promises'
import { extname } from 'node:path'
import { pipeline, type Readable } from 'node:stream'
import { JSONParser } from '@streamparser/json'
import { CsvError, parse } from 'csv-parse'
import { splitLines } from '../routes/ndjson-lines.js'
import { UsageError } from './usage-error.js'

export const INPUT_FORMATS = ['csv', 'json', 'ndjson'] as const
export type InputFormat = (typeof INPUT_FORMATS)[number]

/** A device to send: where it stands in the input, the NDJSON line that asks for it, and what the outputs repeat. */
export interface Device {
  /** CSV and NDJSON: the line in the input (a CSV header is line 1). JSON: the index in `devices`. */
  at: number
  line: string
  productKey: string
  deviceKey: string
  reference: string
}

/** A record that cannot be sent at all, failed by the command line itself with a code of the service's table. */
export interface Unreadable {
  at: number
  reference: string
  error: { code: string, message: string }
}

export type InputRecord = Device | Unreadable

export function isDevice (record: InputRecord): record is Device {
  return 'line' in record
}

/** The columns a CSV input may have, in any order; productKey and deviceKey are required. */
export const CSV_FIELDS = ['productKey', 'deviceKey', 'clientId', 'timestamp', 'signMethod', 'reference'] as const
export type CsvField = (typeof CSV_FIELDS)[number]

/** The longest NDJSON input line, in bytes: far more than any device needs, small enough to hold. */
export const MAX_LINE_BYTES = 64 * 1024

/** The most records in one batch sent together. */
export const MAX_BATCH = 1000

const EXTENSIONS: Readonly<Record<string, InputFormat>> = { '.csv': 'csv', '.json': 'json', '.ndjson': 'ndjson', '.jsonl': 'ndjson' }

/** The input's format: `--format`, else the file's extension. Standard input (`-`) needs `--format`. */
export function inputFormatOf (path: string, format: InputFormat | undefined): InputFormat {
  if (format !== undefined) return format
  if (path === '-') throw new UsageError('reading standard input (--in -) needs --format csv, json or ndjson')
  const found = EXTENSIONS[extname(path).toLowerCase()]
  if (found === undefined) throw new UsageError(`cannot tell the format of ${path} from its extension (.csv, .json, .ndjson or .jsonl); add --format csv, json or ndjson`)
  return found
}

/**
 * The field of each column of a CSV header, in column order. Names are trimmed and matched
 * exactly; an unknown, nameless or repeated column is refused, since its values would be lost.
 * @throws UsageError naming every problem and the accepted columns.
 */
export function mapCsvHeader (names: readonly string[]): CsvField[] {
  const known = new Set<string>(CSV_FIELDS)
  const problems: string[] = []
  const seen = new Set<string>()
  const fields = names.map((raw, i) => {
    const name = raw.trim()
    if (name === '') problems.push(`column ${i + 1} has no name`)
    else if (!known.has(name)) problems.push(`unknown column "${name.slice(0, 40)}"`)
    else if (seen.has(name)) problems.push(`column "${name}" appears twice`)
    seen.add(name)
    return name as CsvField
  })
  for (const required of ['productKey', 'deviceKey']) if (!seen.has(required)) problems.push(`no ${required} column`)
  if (problems.length > 0) {
    throw new UsageError(`line 1: bad CSV header: ${problems.join('; ')}. The columns are productKey and deviceKey, and optionally ${CSV_FIELDS.slice(2).join(', ')}, in any order`)
  }
  return fields
}

/** An input to read, and whether it is a regular file (which can be read twice, to count its devices first). */
export interface OpenInput {
  stream: Readable
  isFile: boolean
}

/** Opens a file to read, refusing a directory; a missing or unreadable file is a usage error. `-` is `stdin`. */
export async function openInput (path: string, stdin: Readable): Promise<OpenInput> {
  if (path === '-') return { stream: stdin, isFile: false }
  let handle: FileHandle
  try {
    handle = await open(path, 'r')
  } catch (err) {
    throw new UsageError(`cannot read ${path} (${String((err as NodeJS.ErrnoException).code)})`)
  }
  const stats = await handle.stat()
  if (stats.isDirectory()) {
    await handle.close()
    throw new UsageError(`cannot read ${path}: it is a directory`)
  }
  return { stream: handle.createReadStream(), isFile: stats.isFile() }
}

/** The records of `input` in batches: as many as have arrived (at most MAX_BATCH), never waiting to fill one. */
export function readInput (input: Readable, format: InputFormat): AsyncGenerator<InputRecord[]> {
  const readers = { csv: readCsv, json: readJson, ndjson: readNdjson }
  return batched(readers[format](input), MAX_BATCH)
}

/**
 * Groups the values of `source` in arrays: each array takes the values that are ready now and
 * is handed over as soon as the next value has to be waited for (or at `max`), so a slow
 * source is never held up waiting for a batch to fill.
 */
export async function * batched<T> (source: AsyncIterable<T>, max: number): AsyncGenerator<T[]> {
  const iterator = source[Symbol.asyncIterator]()
  let next = iterator.next()
  try {
    for (;;) {
      const first = await next
      if (first.done === true) return
      const batch = [first.value]
      next = iterator.next()
      // Rejected while nobody waits on it, the next value would be an unhandled rejection; it is awaited later.
      next.catch(() => {})
      const later = new Promise<'later'>((resolve) => setImmediate(resolve, 'later'))
      while (batch.length < max) {
        const result = await Promise.race([next, later])
        if (result === 'later') break
        if (result.done === true) {
          yield batch
          return
        }
        batch.push(result.value)
        next = iterator.next()
        next.catch(() => {})
      }
      yield batch
    }
  } finally {
    await iterator.return?.()
  }
}

function text (value: unknown): string {
  return typeof value === 'string' ? value : ''
}

/** The record of one parsed item, sent as the item is: the service validates it. */
function deviceOf (at: number, value: unknown): Device {
  const fields = typeof value === 'object' && value !== null ? value as Record<string, unknown> : {}
  return { at, line: JSON.stringify(value), productKey: text(fields.productKey), deviceKey: text(fields.deviceKey), reference: text(fields.reference) }
}

function unreadable (at: number, code: string, message: string): Unreadable {
  return { at, reference: '', error: { code, message } }
}

/** Newlines inside quoted fields: a record spans that many lines more than one. */
function newlinesIn (record: readonly string[]): number {
  let count = 0
  for (const field of record) for (let i = field.indexOf('\n'); i !== -1; i = field.indexOf('\n', i + 1)) count++
  return count
}

async function * readCsv (input: Readable): AsyncGenerator<InputRecord> {
  // max_record_size: a quote left open would otherwise hold the rest of the input (all of stdin) as one field.
  const parser = parse({ bom: true, info: true, relax_column_count: true, skip_empty_lines: true, record_delimiter: ['\r\n', '\n'], max_record_size: MAX_LINE_BYTES })
  // A read error of the input destroys the parser with it, which ends the loop below with that error.
  pipeline(input, parser, () => {})
  let columns: CsvField[] | undefined
  try {
    for await (const { record, info } of parser as AsyncIterable<{ record: string[], info: { lines: number } }>) {
      if (record.every((field) => field.trim() === '')) continue
      // info.lines is the line a record ends on; quoted newlines make it start earlier.
      const at = info.lines - newlinesIn(record)
      if (columns === undefined) {
        columns = mapCsvHeader(record)
        continue
      }
      if (record.length !== columns.length) {
        yield unreadable(at, 'VALIDATION_FAILED', `line ${at} has ${record.length} fields where the header has ${columns.length}`)
        continue
      }
      const item: Partial<Record<CsvField, string>> = {}
      columns.forEach((field, i) => {
        const value = record[i] as string
        // An empty cell is a field not given: the service then uses its default.
        if (value !== '') item[field] = value
      })
      yield { at, line: JSON.stringify(item), productKey: item.productKey ?? '', deviceKey: item.deviceKey ?? '', reference: item.reference ?? '' }
    }
  } catch (err) {
    if (err instanceof CsvError) throw new UsageError(`the input is not valid CSV: ${err.message}`)
    throw err
  }
  if (columns === undefined) throw new UsageError(`the CSV input is empty: its first line must name the columns (${CSV_FIELDS.join(',')})`)
}

async function * readNdjson (input: Readable): AsyncGenerator<InputRecord> {
  for await (const lines of splitLines(input as AsyncIterable<Buffer>, MAX_LINE_BYTES)) {
    for (const line of lines) {
      if (!('text' in line)) {
        yield unreadable(line.number, 'PAYLOAD_TOO_LARGE', `line ${line.number} is longer than ${MAX_LINE_BYTES} bytes; one line holds one device`)
        continue
      }
      let value: unknown
      try {
        // A file saved by a Windows editor may start with a byte order mark.
        value = JSON.parse(line.number === 1 ? line.text.replace(/^\uFEFF/, '') : line.text)
      } catch {
        yield unreadable(line.number, 'MALFORMED_JSON', `line ${line.number} is not valid JSON`)
        continue
      }
      yield deviceOf(line.number, value)
    }
  }
}

async function * readJson (input: Readable): AsyncGenerator<InputRecord> {
  // keepStack: false lets go of each device once it has been handed over, so memory stays flat.
  const parser = new JSONParser({ paths: ['$.devices.*'], keepStack: false })
  let found: Device[] = []
  let count = 0
  parser.onValue = ({ value, key, parent }) => {
    if (!Array.isArray(parent)) throw new UsageError('"devices" must be an array of devices')
    found.push(deviceOf(key as number, value))
  }
  try {
    for await (const chunk of input as AsyncIterable<Buffer>) {
      parser.write(chunk)
      const ready = found
      found = []
      count += ready.length
      yield * ready
    }
    if (!parser.isEnded) parser.end()
  } catch (err) {
    if (err instanceof UsageError) throw err
    throw new UsageError(`the input is not valid JSON: ${(err as Error).message}`)
  }
  if (count === 0) throw new UsageError('the JSON input lists no devices: it must be an object { "devices": [ ... ] } with at least one device')
}

/**
 * About how many devices a file holds, for the progress bar: its lines that are not blank
 * (less the header for CSV), counted without parsing. `undefined` for JSON, standard input, and
 * a file that cannot be read (the run itself says why).
 */
export async function countItems (path: string, format: InputFormat): Promise<number | undefined> {
  if (path === '-' || format === 'json') return undefined
  let lines = 0
  let filled = false
  try {
    for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) {
      for (let start = 0; start < chunk.length;) {
        const newline = chunk.indexOf(0x0a, start)
        const end = newline === -1 ? chunk.length : newline
        for (let i = start; !filled && i < end; i++) filled = (chunk[i] as number) > 0x20
        if (newline === -1) break
        if (filled) lines++
        filled = false
        start = newline + 1
      }
    }
  } catch {
    return undefined
  }
  if (filled) lines++
  return format === 'csv' ? Math.max(0, lines - 1) : lines
}
