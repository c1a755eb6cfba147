// A real MQTT broker for e2e tests: aedes over TLS on 127.0.0.1 that checks CONNECT the way EnOS does.
// The check is written here from ENOS-SIGNING.md with node:crypto alone, never with src/core, so a
// mistake in the signer cannot be mirrored by the broker that judges it.
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { createServer } from 'node:tls'
import { Aedes, type AuthenticateError, type AuthErrorCode } from 'aedes'

export interface BrokerDevice {
  productKey: string
  deviceKey: string
  deviceSecret: string
}

/** One CONNECT that reached the authenticate hook, as the broker saw it. */
export interface ConnectAttempt {
  mqttClientId: string
  mqttUsername: string | undefined
  /** The protocol level of the CONNECT: 4 is MQTT 3.1.1, the only one EnOS speaks. */
  protocolVersion: number
  accepted: boolean
  /** Why the broker refused, so a test can tell a wrong password from a malformed field. */
  reason: string | undefined
}

export interface EnosBroker {
  port: number
  /** The self-signed certificate (PEM) the broker serves; clients pass it as `ca`. */
  ca: string
  attempts: ConnectAttempt[]
}

interface Teardown { teardown: (fn: () => unknown) => void }

/** The contract's signmethod values and their plain digests (ENOS-SIGNING.md, "Sign methods"). */
const DIGESTS: ReadonlyMap<string, string> = new Map([
  ['hmacsha1', 'sha1'],
  ['sha1', 'sha1'],
  ['sha256', 'sha256'],
  ['hmacsha256', 'sha256'],
  ['md5', 'md5'],
  ['hmacmd5', 'md5']
])

const PARAM_NAMES = new Set(['securemode', 'signmethod', 'timestamp'])

const BAD_USERNAME_OR_PASSWORD = 4 as AuthErrorCode

/** A throwaway key and self-signed certificate for localhost and 127.0.0.1, written into `dir`. */
export function createTlsCert (dir: string): { key: string, cert: string } {
  const keyFile = join(dir, 'broker-key.pem')
  const certFile = join(dir, 'broker-cert.pem')
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1',
    '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '-keyout', keyFile, '-out', certFile
  ], { stdio: 'pipe' })
  return { key: readFileSync(keyFile, 'utf8'), cert: readFileSync(certFile, 'utf8') }
}

/**
 * Checks a CONNECT as the EnOS broker does for securemode=2.
 * @returns undefined when the credentials are good, otherwise the reason for refusing them.
 */
export function checkEnosConnect (devices: readonly BrokerDevice[], mqttClientId: string,
  mqttUsername: string | undefined, mqttPassword: Buffer | undefined): string | undefined {
  const idMatch = /^([^|]+)\|([^|]*)\|$/.exec(mqttClientId)
  if (idMatch === null) return 'mqttClientId is not <clientId>|<params>|'
  const [, clientId = '', suffix = ''] = idMatch
  const params = new Map<string, string>()
  for (const pair of suffix.split(',')) {
    const [name = '', value, extra] = pair.split('=')
    if (!PARAM_NAMES.has(name) || value === undefined || extra !== undefined || params.has(name)) {
      return `bad parameter "${pair}" in mqttClientId`
    }
    params.set(name, value)
  }
  if (params.size !== PARAM_NAMES.size) return 'mqttClientId needs securemode, signmethod and timestamp'
  if (params.get('securemode') !== '2') return 'securemode is not 2'
  const digest = DIGESTS.get((params.get('signmethod') ?? '').toLowerCase())
  if (digest === undefined) return 'unknown signmethod'
  const timestamp = params.get('timestamp') ?? ''
  if (!/^[0-9]+$/.test(timestamp)) return 'timestamp is not epoch milliseconds'

  const userParts = (mqttUsername ?? '').split('&')
  const [deviceKey = '', productKey = ''] = userParts
  if (userParts.length !== 2) return 'mqttUsername is not <deviceKey>&<productKey>'
  const device = devices.find((d) => d.productKey === productKey && d.deviceKey === deviceKey)
  if (device === undefined) return 'unknown device'

  // Parameter names sorted, each followed by its value, then the secret; a plain digest, not an HMAC.
  const content = Object.entries({ timestamp, productKey, deviceKey, clientId })
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, value]) => name + value)
    .join('')
  const expected = createHash(digest).update(content + device.deviceSecret, 'utf8').digest('hex')
  if (mqttPassword === undefined || mqttPassword.toString('utf8').toLowerCase() !== expected) {
    return 'mqttPassword does not match'
  }
  return undefined
}

/** Starts the broker on an ephemeral port; it and its TLS server close when the test ends. */
export async function startEnosBroker (t: Teardown, options: { dir: string, devices: readonly BrokerDevice[] }): Promise<EnosBroker> {
  const { key, cert } = createTlsCert(options.dir)
  const attempts: ConnectAttempt[] = []
  const aedes = await Aedes.createBroker({
    // mqttClientId with its |securemode=…| suffix is far longer than the 23 characters aedes allows by default.
    maxClientsIdLength: 256,
    authenticate (client, username, password, done) {
      const reason = checkEnosConnect(options.devices, client.id, username, password)
      attempts.push({ mqttClientId: client.id, mqttUsername: username, protocolVersion: client.version, accepted: reason === undefined, reason })
      if (reason === undefined) {
        done(null, true)
        return
      }
      const error: AuthenticateError = Object.assign(new Error(reason), { returnCode: BAD_USERNAME_OR_PASSWORD })
      done(error, false)
    }
  })
  const server = createServer({ key, cert }, (socket) => {
    // Without it Nagle holds back aedes's second small write (a forwarded PUBLISH after its PUBACK) ~40 ms.
    socket.setNoDelay(true)
    aedes.handle(socket)
  })
  t.teardown(async () => {
    await new Promise<void>((resolve) => { aedes.close(() => { resolve() }) })
    await new Promise<void>((resolve, reject) => { server.close((err) => { if (err) reject(err); else resolve() }) })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { port: (server.address() as AddressInfo).port, ca: cert, attempts }
}
