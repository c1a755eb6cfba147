// Shared test fixtures: an app on the example store, a log sink that parses real pino output, fake stores.
import { createHash, randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { Writable } from 'node:stream'
import type { Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildApp, type AppDeps } from '../src/app.js'
import { EXAMPLE_STORE_FILE, loadConfig, type Config } from '../src/config.js'
import { AppError, STORE_UNAVAILABLE_MESSAGE } from '../src/errors.js'
import type { DeviceStore } from '../src/store/store.js'

/** The worked example of ENOS-SIGNING.md, which examples/devices.json holds. */
export const EXAMPLE = {
  productKey: '123',
  deviceKey: 'test',
  deviceSecret: 'deviceSecret',
  clientId: '123',
  timestamp: '1524448722000'
} as const

export const EXAMPLE_PASSWORDS = {
  hmacsha1: '093A032F713517CAE55622C75C1D5219ED618729',
  sha256: 'FBAEF7F86269C0E3482A3FFB19F45437FFE40197C42B8BDD21C5A0D0DB4558DD',
  md5: 'F2A3E21461955B5C7DD552B6B12464DD'
} as const

/** The secrets of examples/devices.json, which must never appear in a log line. */
export const EXAMPLE_SECRETS = ['deviceSecret', '5eCr3tF0rB0iLer0001aBcDeFgHiJkL', '5eCr3tF0rB0iLer0002aBcDeFgHiJkL', '5eCr3tF0rB0iLer0003aBcDeFgHiJkL']

/** A fixed clock for tests: 2018-04-23T01:58:42Z, the worked example's timestamp. */
export const FIXED_NOW = 1524448722000

/**
 * The rate-limit windows of test apps hold still at the moment this file was loaded: windows are
 * minutes of the clock, and a test that crossed the end of one would see its counts start again.
 * One instant for every app of a test file, so that replicas sharing Redis count the same minute.
 */
const LIMIT_NOW = Date.now()

export interface Teardown { teardown: (fn: () => unknown) => void }

export function testConfig (env: Record<string, string> = {}): Readonly<Config> {
  // Open and without rate limits unless a test asks for them: most tests are about something else.
  // Nor is the event loop watched (OVERLOAD_BUSY_MS): app.inject() runs request after request
  // without a turn of the loop between them, which would read as one long busy turn. Nor the wait
  // of new connections (OVERLOAD_QUEUE_MS): a test's burst of connections on a loaded machine is a
  // real queue, and would be shed; the tests of admission control turn both on.
  return loadConfig({
    LOG_LEVEL: 'silent', STORE_FILE: EXAMPLE_STORE_FILE, STORE_WATCH: 'false', AUTH_MODE: 'none', RATE_LIMIT_PER_CALLER: '0', RATE_LIMIT_PER_DEVICE: '0', OVERLOAD_BUSY_MS: '0', OVERLOAD_QUEUE_MS: '0', ...env
  })
}

/** An app on the example store (or deps.store), ready, closed when the test ends. */
export async function buildTestApp (t: Teardown, env: Record<string, string> = {}, deps: AppDeps = {}): Promise<FastifyInstance> {
  const app = await buildApp(testConfig(env), { clock: () => FIXED_NOW, limitClock: () => LIMIT_NOW, ...deps })
  t.teardown(() => app.close())
  await app.ready()
  return app
}

/** A pino destination that keeps every line, parsed, so tests can read what was really logged. */
export function createLogSink (): { stream: Writable, raw: () => string, lines: () => Array<Record<string, unknown>> } {
  const chunks: string[] = []
  const stream = new Writable({
    write (chunk: Buffer, _encoding, done) {
      chunks.push(chunk.toString())
      done()
    }
  })
  const raw = (): string => chunks.join('')
  const lines = (): Array<Record<string, unknown>> =>
    raw().split('\n').filter((line) => line !== '').map((line) => JSON.parse(line) as Record<string, unknown>)
  return { stream, raw, lines }
}

/** A store whose backend is down: every call fails as a real adapter would report it. */
export function unavailableStore (): DeviceStore {
  const down = (): never => {
    throw new AppError('STORE_UNAVAILABLE', STORE_UNAVAILABLE_MESSAGE)
  }
  return { kind: 'fake', findDevice: async () => down(), findDevices: async () => down(), checkHealth: async () => down(), close: async () => {} }
}

/** A store with a bug: it throws a plain Error carrying internals that must not reach the client. */
export function brokenStore (): DeviceStore {
  const boom = (): never => { throw new Error('connection string postgres://admin:hunter2@db leaked?') }
  return { kind: 'fake', findDevice: async () => boom(), findDevices: async () => boom(), checkHealth: async () => boom(), close: async () => {} }
}

/** Resolves once the server side of a connection has read something from it (so the server has seen the request begin). */
export async function untilServerRead (serverSide: { bytesRead: number }): Promise<void> {
  while (serverSide.bytesRead === 0) await new Promise<void>((resolve) => setImmediate(resolve))
}

const CONTRACT_DIGESTS: Readonly<Record<string, string>> = { hmacsha1: 'sha1', sha1: 'sha1', sha256: 'sha256', hmacsha256: 'sha256', md5: 'md5', hmacmd5: 'md5' }

/**
 * The password ENOS-SIGNING.md defines, computed here with node:crypto alone (never with
 * src/core), so a test judges the service by an independent implementation of the contract.
 */
export function contractPassword (p: { clientId: string, deviceKey: string, productKey: string, timestamp: string, deviceSecret: string, signMethod: string }): string {
  const content = `clientId${p.clientId}deviceKey${p.deviceKey}productKey${p.productKey}timestamp${p.timestamp}`
  return createHash(CONTRACT_DIGESTS[p.signMethod.toLowerCase()] as string).update(content + p.deviceSecret, 'utf8').digest('hex').toUpperCase()
}

export interface TestToken { token: string, entry: { name: string, sha256: string, scopes: string[], products: string[] | '*', expires?: string, fleet?: boolean } }

/** A new random token and the token-file entry for it (the SHA-256 of the token, as the file holds it). */
export function makeToken (name: string, scopes: string[], products: string[] | '*', expires?: string): TestToken {
  const token = randomBytes(32).toString('base64url')
  const sha256 = createHash('sha256').update(token).digest('hex')
  return { token, entry: { name, sha256, scopes, products, ...(expires !== undefined && { expires }) } }
}

/** A new empty directory of its own, removed when the test ends (t.testdir is one per test, and a second call empties it). */
export function tempDir (t: Test, prefix = 'test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** Writes a token file of these tokens in a directory of its own and returns its path. */
export function writeTokenFile (t: Test, tokens: readonly TestToken[]): string {
  const path = join(tempDir(t, 'tokens-'), 'tokens.json')
  writeFileSync(path, JSON.stringify({ tokens: tokens.map(({ entry }) => entry) }))
  return path
}
