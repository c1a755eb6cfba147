// The EnOS MQTT CONNECT signing contract (ENOS-SIGNING.md): sign, parse back and verify. Pure: no I/O, no clock.
import { hash, timingSafeEqual } from 'node:crypto'
import { isValidClientId, isValidKey, isValidTimestamp } from './fields.js'
import { SIGN_METHODS, isSignMethod, type SignMethod } from './sign-method.js'

/** Secure mode 2 is EnOS "static activation": the secret is the device's own deviceSecret. */
export const SECURE_MODE = 2

export interface SignInput {
  productKey: string
  deviceKey: string
  deviceSecret: string
  clientId: string
  /** Epoch milliseconds as a decimal string; written verbatim into mqttClientId and the content. */
  timestamp: string
  signMethod: SignMethod
}

export interface SignedCredentials {
  mqttClientId: string
  mqttUsername: string
  mqttPassword: string
  clientId: string
  timestamp: string
  signMethod: SignMethod
  secureMode: typeof SECURE_MODE
}

/**
 * The canonical string EnOS signs: the parameter NAMES sorted as plain strings (UTF-16 code
 * unit order, not locale order), each followed by its VALUE, with no separators. For the four
 * MQTT parameters the order is always clientId, deviceKey, productKey, timestamp.
 */
export function buildSignContent (params: Readonly<Record<string, string>>): string {
  let content = ''
  for (const [name, value] of Object.entries(params).sort(byName)) content += name + value
  return content
}

function byName (a: [string, string], b: [string, string]): number {
  return a[0] < b[0] ? -1 : 1
}

/**
 * {@link buildSignContent} of the four MQTT parameters, written out in their sorted order
 * (clientId, deviceKey, productKey, timestamp): the same string without sorting on every
 * signature. A unit test holds the two equal.
 */
export function buildMqttSignContent (clientId: string, deviceKey: string, productKey: string, timestamp: string): string {
  return 'clientId' + clientId + 'deviceKey' + deviceKey + 'productKey' + productKey + 'timestamp' + timestamp
}

/**
 * UPPERCASE(HEX(HASH(content + deviceSecret))) with the plain digest of `signMethod`, over the
 * UTF-8 bytes. Deliberately not an HMAC: the EnOS broker rejects HMAC-keyed passwords.
 * `crypto.hash` is the one-shot form of createHash(...).update(...).digest(...), about twice as fast.
 */
export function computePassword (content: string, deviceSecret: string, signMethod: SignMethod): string {
  return hash(SIGN_METHODS[signMethod], content + deviceSecret, 'hex').toUpperCase()
}

/** `<clientId>|securemode=2,signmethod=<method>,timestamp=<ts>|`: no spaces, as the SDKs send it. */
export function formatMqttClientId (clientId: string, signMethod: SignMethod, timestamp: string): string {
  return `${clientId}|securemode=${SECURE_MODE},signmethod=${signMethod},timestamp=${timestamp}|`
}

/**
 * Builds the three MQTT CONNECT fields. Inputs must already satisfy the rules in fields.ts (the
 * HTTP schema guarantees it); this function does not validate them again on the hot path.
 */
export function signCredentials (input: SignInput): SignedCredentials {
  const { productKey, deviceKey, deviceSecret, clientId, timestamp, signMethod } = input
  const content = buildMqttSignContent(clientId, deviceKey, productKey, timestamp)
  return {
    mqttClientId: formatMqttClientId(clientId, signMethod, timestamp),
    mqttUsername: `${deviceKey}&${productKey}`,
    mqttPassword: computePassword(content, deviceSecret, signMethod),
    clientId,
    timestamp,
    signMethod,
    secureMode: SECURE_MODE
  }
}

export interface ParsedClientId {
  clientId: string
  secureMode: number
  signMethod: SignMethod
  timestamp: string
}

export type ParseResult<T> = { ok: true, value: T } | { ok: false, reason: string }

const CLIENT_ID_PARAMS = ['securemode', 'signmethod', 'timestamp'] as const

/**
 * Splits an mqttClientId back into its parts. The parameters may come in any order, the
 * method name in any case; each must appear exactly once and nothing else may.
 */
export function parseMqttClientId (mqttClientId: string): ParseResult<ParsedClientId> {
  const bar = mqttClientId.indexOf('|')
  if (bar < 1 || !mqttClientId.endsWith('|')) {
    return fail('mqttClientId must look like <clientId>|securemode=2,signmethod=<method>,timestamp=<ms>|')
  }
  const clientId = mqttClientId.slice(0, bar)
  if (!isValidClientId(clientId)) return fail('the clientId part of mqttClientId is not valid')
  const found = new Map<string, string>()
  for (const pair of mqttClientId.slice(bar + 1, -1).split(',')) {
    const eq = pair.indexOf('=')
    const name = pair.slice(0, eq)
    if (eq < 0 || !(CLIENT_ID_PARAMS as readonly string[]).includes(name) || found.has(name)) {
      return fail(`mqttClientId has an unexpected or repeated parameter "${pair.slice(0, 32)}"`)
    }
    found.set(name, pair.slice(eq + 1))
  }
  const secureMode = found.get('securemode') ?? ''
  // Case-insensitive like the broker, but not trimmed: a CONNECT never has spaces in it.
  const methodName = (found.get('signmethod') ?? '').toLowerCase()
  const signMethod = isSignMethod(methodName) ? methodName : undefined
  const timestamp = found.get('timestamp') ?? ''
  if (!/^[0-9]$/.test(secureMode)) return fail('mqttClientId needs securemode=<digit>')
  if (signMethod === undefined) return fail('mqttClientId needs a supported signmethod')
  if (!isValidTimestamp(timestamp)) return fail('mqttClientId needs timestamp=<epoch ms>')
  return { ok: true, value: { clientId, secureMode: Number(secureMode), signMethod, timestamp } }
}

export interface ParsedUsername {
  deviceKey: string
  productKey: string
}

/** Splits `<deviceKey>&<productKey>`; neither key may contain `&`. */
export function parseMqttUsername (mqttUsername: string): ParseResult<ParsedUsername> {
  const parts = mqttUsername.split('&')
  const [deviceKey = '', productKey = ''] = parts
  if (parts.length !== 2 || !isValidKey(deviceKey) || !isValidKey(productKey)) {
    return fail('mqttUsername must be <deviceKey>&<productKey>')
  }
  return { ok: true, value: { deviceKey, productKey } }
}

export interface PresentedCredentials {
  mqttClientId: string
  mqttUsername: string
  mqttPassword: string
}

export type ParsedCredentials = ParsedClientId & ParsedUsername

/** Parses the username and clientId of a presented triple, e.g. to find which device's secret to load. */
export function parseCredentials (presented: PresentedCredentials): ParseResult<ParsedCredentials> {
  const user = parseMqttUsername(presented.mqttUsername)
  if (!user.ok) return user
  const client = parseMqttClientId(presented.mqttClientId)
  if (!client.ok) return client
  return { ok: true, value: { ...client.value, ...user.value } }
}

const HEX_PATTERN = /^[0-9A-Fa-f]+$/

/**
 * Checks a presented CONNECT triple against the device's secret, as a broker would. The hex is
 * compared without regard to case (the Java and Python SDKs send lower-case) and in constant
 * time once the lengths match. Secure modes other than 2 are refused: they use another secret.
 */
export function verifyCredentials (presented: PresentedCredentials, deviceSecret: string): ParseResult<ParsedCredentials> {
  const parsed = parseCredentials(presented)
  if (!parsed.ok) return parsed
  const { clientId, deviceKey, productKey, timestamp, signMethod, secureMode } = parsed.value
  if (secureMode !== SECURE_MODE) return fail(`only securemode=${SECURE_MODE} (static activation) is supported`)
  const content = buildMqttSignContent(clientId, deviceKey, productKey, timestamp)
  const expected = Buffer.from(computePassword(content, deviceSecret, signMethod))
  const actual = Buffer.from(presented.mqttPassword.toUpperCase())
  // Insist on ASCII hex first: toUpperCase() also turns U+FB00 (the "ff" ligature) into "FF".
  if (!HEX_PATTERN.test(presented.mqttPassword) || actual.length !== expected.length || !timingSafeEqual(actual, expected)) {
    return fail('mqttPassword does not match')
  }
  return parsed
}

function fail (reason: string): { ok: false, reason: string } {
  return { ok: false, reason }
}
