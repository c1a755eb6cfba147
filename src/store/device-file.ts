// Parses a device file (JSON or CSV) into an index of devices, naming every bad entry or line.
import { setImmediate as yieldToEventLoop } from 'node:timers/promises'
import { KEY_RULE, SECRET_RULE, isValidKey, isValidSecret } from '../core/fields.js'
import { deviceId, type Device } from './store.js'

export type DeviceFileFormat = 'json' | 'csv'

/** How many problems a DeviceFileError lists before it only counts the rest. */
const MAX_LISTED_PROBLEMS = 10
const JSON_FIELDS = new Set(['productKey', 'deviceKey', 'deviceSecret', 'enabled'])
const CSV_HEADERS = ['productKey,deviceKey,deviceSecret', 'productKey,deviceKey,deviceSecret,enabled'] as const
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

/**
 * Parses and validates a whole device file. Indexing yields to the event loop every
 * YIELD_EVERY devices, so a reload of a large file does not stall the requests being served.
 * @returns devices indexed by {@link deviceId}.
 * @throws DeviceFileError naming each bad entry (`devices[3]`) or line (`line 4`), duplicates included.
 */
export async function parseDeviceFile (text: string, format: DeviceFileFormat): Promise<Map<string, Device>> {
  // Windows editors may start a UTF-8 file with a BOM; readFile keeps it and JSON.parse rejects it.
  const body = text.replace(/^\uFEFF/, '')
  const index = new Map<string, Device>()
  const problems: Problems = []
  let count = 0
  for (const [at, device] of readEntries(body, format, problems)) {
    const id = deviceId(device.productKey, device.deviceKey)
    if (index.has(id)) problems.push({ at, id, device })
    else index.set(id, device)
    if (++count % YIELD_EVERY === 0) await yieldToEventLoop()
  }
  if (problems.length > 0) throw new DeviceFileError(describeProblems(body, format, problems))
  return index
}

function readEntries (text: string, format: DeviceFileFormat, problems: Problems): Generator<Found> {
  return format === 'csv' ? readCsv(text, problems) : readJson(text, problems)
}

function placeOf (format: DeviceFileFormat, at: number): string {
  return format === 'csv' ? `line ${at}` : `devices[${at}]`
}

/**
 * Turns duplicates into messages naming both places. The first places are found by a second
 * pass, only when a file has duplicates, so loading a good file keeps no place per device.
 */
function describeProblems (text: string, format: DeviceFileFormat, problems: Problems): string[] {
  const first = new Map<string, number>()
  for (const problem of problems) if (typeof problem !== 'string') first.set(problem.id, -1)
  if (first.size > 0) {
    for (const [at, device] of readEntries(text, format, [])) {
      const id = deviceId(device.productKey, device.deviceKey)
      if (first.get(id) === -1) first.set(id, at)
    }
  }
  return problems.map((problem) => typeof problem === 'string'
    ? problem
    : `${placeOf(format, problem.at)}: duplicate device productKey=${problem.device.productKey} deviceKey=${problem.device.deviceKey} (first at ${placeOf(format, first.get(problem.id) as number)})`)
}

function * readJson (text: string, problems: Problems): Generator<Found> {
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch (err) {
    problems.push(describeJsonError(text, err))
    return
  }
  const devices: unknown = isRecord(doc) ? doc.devices : undefined
  if (!Array.isArray(devices)) {
    problems.push('the file must be a JSON object with a "devices" array')
    return
  }
  for (let i = 0; i < devices.length; i++) {
    const entry: unknown = devices[i]
    if (!isRecord(entry)) {
      problems.push(`devices[${i}]: must be an object`)
      continue
    }
    const found: string[] = []
    for (const field of Object.keys(entry)) {
      if (!JSON_FIELDS.has(field)) found.push(`unknown field "${field.slice(0, 40)}"`)
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
  const header = splitCsvLine(lines[0] as string)?.map((name) => name.trim()) ?? []
  const columns = header.join(',')
  if (columns !== CSV_HEADERS[0] && columns !== CSV_HEADERS[1]) {
    problems.push(`line 1: the header must be ${CSV_HEADERS.join(' or ')}`)
    return
  }
  const hasEnabled = columns === CSV_HEADERS[1]
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i] as string
    if (line.trim() === '') continue
    const fields = splitCsvLine(line)
    if (fields === undefined || fields.length !== header.length) {
      problems.push(`line ${i + 1}: expected ${header.length} comma-separated fields`)
      continue
    }
    const [productKey = '', deviceKey = '', deviceSecret = '', enabledText = ''] = fields
    const enabled = CSV_BOOLEANS.get(enabledText.trim().toLowerCase())
    const found: string[] = []
    checkKey('productKey', productKey, found)
    checkKey('deviceKey', deviceKey, found)
    if (!isValidSecret(deviceSecret)) found.push(`deviceSecret must be ${SECRET_RULE}`)
    if (hasEnabled && enabled === undefined) found.push('enabled must be true, false, yes, no, 1, 0 or empty')
    if (found.length === 0) yield [i + 1, { productKey, deviceKey, deviceSecret, enabled: enabled !== false }]
    for (const problem of found) problems.push(`line ${i + 1}: ${problem}`)
  }
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
