// Parses a device file (JSON or CSV) into an index of devices, naming every bad entry or line.
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

/**
 * Parses and validates a whole device file.
 * @returns devices indexed by {@link deviceId}.
 * @throws DeviceFileError naming each bad entry (`devices[3]`) or line (`line 4`), duplicates included.
 */
export function parseDeviceFile (text: string, format: DeviceFileFormat): Map<string, Device> {
  const index = new Map<string, Device>()
  const where = new Map<string, string>()
  const problems: string[] = []
  const add = (place: string, device: Device): void => {
    const id = deviceId(device.productKey, device.deviceKey)
    const first = where.get(id)
    if (first !== undefined) {
      problems.push(`${place}: duplicate device productKey=${device.productKey} deviceKey=${device.deviceKey} (first at ${first})`)
      return
    }
    where.set(id, place)
    index.set(id, device)
  }
  // Windows editors may start a UTF-8 file with a BOM; readFile keeps it and JSON.parse rejects it.
  const body = text.replace(/^\uFEFF/, '')
  if (format === 'csv') readCsv(body, add, problems)
  else readJson(body, add, problems)
  if (problems.length > 0) throw new DeviceFileError(problems)
  return index
}

type AddDevice = (place: string, device: Device) => void

function readJson (text: string, add: AddDevice, problems: string[]): void {
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
  devices.forEach((entry: unknown, i) => {
    const place = `devices[${i}]`
    if (!isRecord(entry)) {
      problems.push(`${place}: must be an object`)
      return
    }
    const before = problems.length
    for (const field of Object.keys(entry)) {
      if (!JSON_FIELDS.has(field)) problems.push(`${place}: unknown field "${field.slice(0, 40)}"`)
    }
    const { productKey, deviceKey, deviceSecret, enabled = true } = entry
    checkKey(place, 'productKey', productKey, problems)
    checkKey(place, 'deviceKey', deviceKey, problems)
    if (typeof deviceSecret !== 'string' || !isValidSecret(deviceSecret)) problems.push(`${place}: deviceSecret must be ${SECRET_RULE}`)
    if (typeof enabled !== 'boolean') problems.push(`${place}: enabled must be true or false`)
    // The checks above pushed a problem unless every field has its type, so the cast is sound.
    if (problems.length === before) add(place, { productKey, deviceKey, deviceSecret, enabled } as Device)
  })
}

function readCsv (text: string, add: AddDevice, problems: string[]): void {
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
    const place = `line ${i + 1}`
    const fields = splitCsvLine(line)
    if (fields === undefined || fields.length !== header.length) {
      problems.push(`${place}: expected ${header.length} comma-separated fields`)
      continue
    }
    const [productKey = '', deviceKey = '', deviceSecret = '', enabledText = ''] = fields
    const enabled = CSV_BOOLEANS.get(enabledText.trim().toLowerCase())
    const before = problems.length
    checkKey(place, 'productKey', productKey, problems)
    checkKey(place, 'deviceKey', deviceKey, problems)
    if (!isValidSecret(deviceSecret)) problems.push(`${place}: deviceSecret must be ${SECRET_RULE}`)
    if (hasEnabled && enabled === undefined) problems.push(`${place}: enabled must be true, false, yes, no, 1, 0 or empty`)
    if (problems.length === before) add(place, { productKey, deviceKey, deviceSecret, enabled: enabled !== false })
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

function checkKey (place: string, name: string, value: unknown, problems: string[]): void {
  if (typeof value !== 'string' || !isValidKey(value)) problems.push(`${place}: ${name} must be ${KEY_RULE}`)
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
