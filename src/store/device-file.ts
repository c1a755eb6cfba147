// Parses a device file (JSON or CSV) into an index of devices, naming every bad entry or line.
import { isUtf8 } from 'node:buffer'
import { setImmediate as yieldToEventLoop } from 'node:timers/promises'
import { KEY_RULE, SECRET_RULE, isValidKey, isValidSecret } from '../core/fields.js'
import { findDuplicateKeys, type DuplicateKey } from './find-duplicate-keys.js'
import { findInvalidUtf8 } from './find-invalid-utf8.js'
import { deviceId, type Device } from './store.js'

export type DeviceFileFormat = 'json' | 'csv'

/** How many problems a DeviceFileError lists before it only counts the rest. */
const MAX_LISTED_PROBLEMS = 10
/** Names (unknown fields, duplicate keys) are cut to this many characters in messages. */
const MAX_NAME = 40
const JSON_FIELDS = new Set(['productKey', 'deviceKey', 'deviceSecret', 'enabled'])
const CSV_HEADERS = ['productKey,deviceKey,deviceSecret', 'productKey,deviceKey,deviceSecret,enabled'] as const
/** CSV exports pad cells; in JSON a secret is quoted, so spaces there are meant. */
const CSV_SECRET_SPACES = 'deviceSecret has leading or trailing spaces, almost always an export mistake (use the JSON format if they really belong to the secret)'
const CSV_BOOLEANS = new Map([['', true], ['true', true], ['1', true], ['yes', true], ['false', false], ['0', false], ['no', false]])

/** A device file that cannot be used. The message names entries or lines, never a secret value. */
export class DeviceFileError extends Error {
  override name = 'DeviceFileError'
  readonly problems: string[]

  constructor (problems: string[]) {
    const listed = problems.slice(0, MAX_LISTED_PROBLEMS)
    const more = problems.length - listed.length
    super(listed.join('; ') + (more > 0 ? `; and ${more} more` : ''))
    this.problems = problems
  }
}

/** Picks the format from the file name: `.csv` is CSV, anything else JSON. */
export function formatOf (path: string): DeviceFileFormat {
  return path.toLowerCase().endsWith('.csv') ? 'csv' : 'json'
}

/** How many devices are indexed between two yields to the event loop while a file loads. */
const YIELD_EVERY = 10_000

/** A duplicate device, described once the place of its first occurrence is known. */
interface Duplicate { at: number, id: string, device: Device }
type Problems = Array<string | Duplicate>
/** A valid device and where it stands: entry index (JSON) or line number (CSV). */
type Found = [at: number, device: Device]
/** Lists the valid devices of a file, pushing a problem for each bad one; can be run twice. */
type ReadEntries = (problems: Problems) => Iterable<Found>
const NO_ENTRIES: ReadEntries = () => []

/**
 * Parses and validates a whole device file. Decoding, JSON.parse, the duplicate-key scan and
 * indexing run in separate turns of the event loop (the scan and indexing in slices), so a reload
 * of a large file does not stall the requests being served.
 * @param content the file's bytes, which must be UTF-8; a string is taken as already decoded.
 * @returns devices indexed by {@link deviceId}.
 * @throws DeviceFileError naming each bad entry (`devices[3]`) or line (`line 4`), duplicates included.
 */
export async function parseDeviceFile (content: Uint8Array | string, format: DeviceFileFormat): Promise<Map<string, Device>> {
  const text = typeof content === 'string' ? content : decodeUtf8(content)
  // Returned, not awaited: this function ends here and lets go of the bytes (as large as the file)
  // while the text is parsed; an async function keeps its arguments until it returns.
  return parseText(text, format)
}

async function parseText (text: string, format: DeviceFileFormat): Promise<Map<string, Device>> {
  // Windows editors may start a UTF-8 file with a BOM; JSON.parse rejects it.
  const body = text.replace(/^\uFEFF/, '')
  // On a large file decoding and JSON.parse each hold the event loop for a while: not in the same turn.
  await yieldToEventLoop()
  const problems: Problems = []
  const readEntries = format === 'csv' ? (found: Problems) => readCsv(body, found) : await readJsonFile(body, problems)
  const index = new Map<string, Device>()
  let count = 0
  for (const [at, device] of readEntries(problems)) {
    const id = deviceId(device.productKey, device.deviceKey)
    if (index.has(id)) problems.push({ at, id, device })
    else index.set(id, device)
    if (++count % YIELD_EVERY === 0) await yieldToEventLoop()
  }
  if (problems.length > 0) throw new DeviceFileError(describeProblems(readEntries, format, problems))
  return index
}

/**
 * Decodes strict UTF-8. Decoding with replacement would accept a file saved in another encoding
 * (Windows-1252 `s\xe9cret`) with its secrets altered, and could make two different secrets equal.
 * `isUtf8` checks 100 MB in about 10 ms; the slow search for the bad byte runs only on failure.
 */
function decodeUtf8 (bytes: Uint8Array): string {
  if (isUtf8(bytes)) return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8')
  const bad = findInvalidUtf8(bytes)
  /* c8 ignore next -- unreachable: findInvalidUtf8 follows the table isUtf8 follows (a property test checks that they agree) */
  if (bad === undefined) throw new DeviceFileError(['the file is not valid UTF-8; save it as UTF-8'])
  throw new DeviceFileError([`line ${bad.line}: the file is not valid UTF-8 (first bad byte at column ${bad.column}); save it as UTF-8`])
}

function placeOf (format: DeviceFileFormat, at: number): string {
  return format === 'csv' ? `line ${at}` : `devices[${at}]`
}

/**
 * Turns duplicates into messages naming both places. The first places are found by a second
 * pass, only when a file has duplicates, so loading a good file keeps no place per device.
 */
function describeProblems (readEntries: ReadEntries, format: DeviceFileFormat, problems: Problems): string[] {
  const first = new Map<string, number>()
  for (const problem of problems) if (typeof problem !== 'string') first.set(problem.id, -1)
  if (first.size > 0) {
    for (const [at, device] of readEntries([])) {
      const id = deviceId(device.productKey, device.deviceKey)
      if (first.get(id) === -1) first.set(id, at)
    }
  }
  return problems.map((problem) => typeof problem === 'string'
    ? problem
    : `${placeOf(format, problem.at)}: duplicate device productKey=${problem.device.productKey} deviceKey=${problem.device.deviceKey} (first at ${placeOf(format, first.get(problem.id) as number)})`)
}

/** Parses a JSON file and checks it for duplicate keys, which JSON.parse lets pass (the last one wins). */
async function readJsonFile (text: string, problems: Problems): Promise<ReadEntries> {
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch (err) {
    problems.push(describeJsonError(text, err))
    return NO_ENTRIES
  }
  for (const duplicate of await findDuplicateKeys(text)) problems.push(describeDuplicateKey(duplicate))
  const devices: unknown = isRecord(doc) ? doc.devices : undefined
  if (!Array.isArray(devices)) {
    problems.push('the file must be a JSON object with a "devices" array')
    return NO_ENTRIES
  }
  return (found) => readJson(devices, found)
}

/** `"enabled": false, "enabled": true` would leave a device enabled; `"devices": []` twice would empty the store. */
function describeDuplicateKey ({ path, key, line, column }: DuplicateKey): string {
  const where = `(line ${line}, column ${column})`
  const name = `"${key.slice(0, MAX_NAME)}"`
  if (path.length === 0) return `the key ${name} appears twice at the top level ${where}`
  return `${formatPath(path)}: the key ${name} appears twice ${where}`
}

/** `devices[3].meta`, with a name that is not an identifier in brackets: `devices[3]["a b"]`. */
function formatPath (path: Array<string | number>): string {
  return path.map((step, i) => {
    if (typeof step === 'number') return `[${step}]`
    const name = step.slice(0, MAX_NAME)
    if (!/^[A-Za-z_$][\w$]*$/.test(name)) return `[${JSON.stringify(name)}]`
    return i === 0 ? name : `.${name}`
  }).join('')
}

function * readJson (devices: unknown[], problems: Problems): Generator<Found> {
  for (let i = 0; i < devices.length; i++) {
    const entry: unknown = devices[i]
    if (!isRecord(entry)) {
      problems.push(`devices[${i}]: must be an object`)
      continue
    }
    const found: string[] = []
    for (const field of Object.keys(entry)) {
      if (!JSON_FIELDS.has(field)) found.push(`unknown field "${field.slice(0, MAX_NAME)}"`)
    }
    const { productKey, deviceKey, deviceSecret, enabled = true } = entry
    checkKey('productKey', productKey, found)
    checkKey('deviceKey', deviceKey, found)
    if (typeof deviceSecret !== 'string' || !isValidSecret(deviceSecret)) found.push(`deviceSecret must be ${SECRET_RULE}`)
    if (typeof enabled !== 'boolean') found.push('enabled must be true or false')
    // The checks above found a problem unless every field has its type, so the cast is sound.
    if (found.length === 0) yield [i, { productKey, deviceKey, deviceSecret, enabled } as Device]
    for (const problem of found) problems.push(`devices[${i}]: ${problem}`)
  }
}

function * readCsv (text: string, problems: Problems): Generator<Found> {
  const lines = text.split(/\r?\n/)
  // split() always returns at least one element, so lines[0] exists.
  const columns = readCsvHeader(lines[0] as string)
  if (columns === undefined) {
    problems.push(`line 1: ${CSV_HEADER_RULE}`)
    return
  }
  // A file read while it is being written ends in a line cut short, whose secret may still look valid.
  if (!text.endsWith('\n')) problems.push(`line ${lines.length}: the file does not end with a newline, so its last line may have been cut short while being written; end the file with a newline`)
  for (let i = 1; i < lines.length; i++) {
    const device = readCsvLine(lines[i] as string, columns, i + 1, problems)
    if (device !== undefined) yield [i + 1, device]
  }
}

/**
 * Reads the header line of a device CSV file.
 * @returns the number of columns (3, or 4 with enabled), or undefined when it is not a valid header.
 */
export function readCsvHeader (line: string): number | undefined {
  if (line.length > MAX_CSV_LINE) return undefined
  const columns = (splitCsvLine(line)?.map((name) => name.trim()) ?? []).join(',')
  if (columns === CSV_HEADERS[0]) return 3
  if (columns === CSV_HEADERS[1]) return 4
  return undefined
}

/** What a bad CSV header is told. */
export const CSV_HEADER_RULE = `the header must be ${CSV_HEADERS.join(' or ')}`

/**
 * The longest CSV line of a device file, in characters: two keys of 64, a secret of 256 (512 with
 * its quotes doubled), the enabled flag, quotes and commas need well under 1 KiB. A longer line
 * (a quote left open, or not a device file) is refused before it is split, and the import stops
 * reading a file at such a line rather than holding it.
 */
export const MAX_CSV_LINE = 8192

/** What a line longer than MAX_CSV_LINE is told, after `line N: `. */
export const CSV_LINE_TOO_LONG = `is longer than ${MAX_CSV_LINE} characters, which no device line is (a quote left open?)`

/**
 * Reads one data line of a device CSV file by the rules of the file store (a blank line is skipped).
 * @returns the device, or undefined after pushing `line N: ...` problems (or for a blank line).
 */
export function readCsvLine (line: string, columns: number, lineNumber: number, problems: Array<string | Duplicate>): Device | undefined {
  if (line.length > MAX_CSV_LINE) {
    problems.push(`line ${lineNumber}: ${CSV_LINE_TOO_LONG}`)
    return undefined
  }
  if (line.trim() === '') return undefined
  const fields = splitCsvLine(line)
  if (fields === undefined || fields.length !== columns) {
    problems.push(`line ${lineNumber}: expected ${columns} comma-separated fields`)
    return undefined
  }
  const [productKey = '', deviceKey = '', deviceSecret = '', enabledText = ''] = fields
  const enabled = CSV_BOOLEANS.get(enabledText.trim().toLowerCase())
  const found: string[] = []
  checkKey('productKey', productKey, found)
  checkKey('deviceKey', deviceKey, found)
  if (!isValidSecret(deviceSecret)) found.push(`deviceSecret must be ${SECRET_RULE}`)
  else if (deviceSecret.trim() !== deviceSecret) found.push(CSV_SECRET_SPACES)
  if (columns === 4 && enabled === undefined) found.push('enabled must be true, false, yes, no, 1, 0 or empty')
  for (const problem of found) problems.push(`line ${lineNumber}: ${problem}`)
  return found.length === 0 ? { productKey, deviceKey, deviceSecret, enabled: enabled !== false } : undefined
}

/**
 * Splits one CSV line (RFC 4180 quoting: `"a,b"` and `""` inside quotes; no multi-line fields).
 * @returns undefined when a quote is left open or text follows a closing quote.
 */
export function splitCsvLine (line: string): string[] | undefined {
  const fields: string[] = []
  let i = 0
  for (;;) {
    let field = ''
    if (line[i] === '"') {
      for (i++; ; i++) {
        if (i >= line.length) return undefined
        if (line[i] === '"') {
          if (line[i + 1] !== '"') break
          i++
        }
        field += line[i]
      }
      i++
      if (i < line.length && line[i] !== ',') return undefined
    } else {
      const comma = line.indexOf(',', i)
      const end = comma < 0 ? line.length : comma
      field = line.slice(i, end)
      i = end
    }
    fields.push(field)
    if (i >= line.length) return fields
    i++
  }
}

function checkKey (name: string, value: unknown, found: string[]): void {
  if (typeof value !== 'string' || !isValidKey(value)) found.push(`${name} must be ${KEY_RULE}`)
}

function isRecord (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/**
 * V8's JSON errors can quote the text around the fault, and the text holds secrets: keep only
 * the position, turned into a line and column.
 */
function describeJsonError (text: string, err: unknown): string {
  const position = /at position (\d+)/.exec(String((err as Error).message))?.[1]
  if (position === undefined) return 'the file is not valid JSON'
  const before = text.slice(0, Number(position))
  const line = before.split('\n').length
  const column = Number(position) - before.lastIndexOf('\n')
  return `the file is not valid JSON (line ${line}, column ${column})`
}
