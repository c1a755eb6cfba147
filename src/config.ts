// Configuration: one zod schema over the environment, validated once at startup.
import { isIP } from 'node:net'
import { fileURLToPath } from 'node:url'
import { z } from 'zod'
import { MTLS_IDENTITIES, type MtlsIdentity } from './auth/certificate.js'
import { DEFAULT_SIGN_METHOD, SIGN_METHOD_NAMES, normalizeSignMethod, type SignMethod } from './core/sign-method.js'
import { isServiceLink, unknownSettings } from './unknown-settings.js'

const AUTH_MODES = ['token', 'mtls', 'none'] as const
const STORES = ['file', 'postgres'] as const
export type StoreKind = (typeof STORES)[number]
export type AuthMode = (typeof AUTH_MODES)[number]

/** The bundled example store, used when STORE_FILE is not set (resolved from src/ or dist/ alike). */
export const EXAMPLE_STORE_FILE = fileURLToPath(new URL('../examples/devices.json', import.meta.url))

const VERIFY_NOT_OURS_ANSWERS = ['ignore', 'deny'] as const

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const

/** A whole number written as plain digits (no `0x1F90`, `1e3` or blanks, which Number() would accept). */
const wholeNumber = (message: string, min: number, max: number) =>
  z.string().trim().regex(/^[0-9]{1,9}$/, message).transform(Number).pipe(z.number().min(min, message).max(max, message))
const whole = (message: string, min: number, max: number, fallback: number) => wholeNumber(message, min, max).default(fallback)
const port = (fallback: number, min = 0) => whole(`must be a port number from ${min} to 65535`, min, 65535, fallback)
const millis = (fallback: number, min = 1) => whole(`must be a whole number of milliseconds from ${min} to 3600000`, min, 3_600_000, fallback)
const optionalText = z.string().trim().min(1).optional()

/** A DNS name (RFC 1123 labels) or an IP address: `localhost:8080` or `http://x` are mistakes, not names. */
const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/

/** Characters that have no place in a URL handed to devices as it is (the URL parser would quietly escape them). */
const URL_UNSAFE = /[^\x21-\x7e]|["'<>`{}|\\^]/

function parseUrl (value: string): URL | undefined {
  try {
    return new URL(value)
  } catch {
    return undefined
  }
}

/**
 * The secure WebSocket URL returned to devices: `wss://` with a host and no credentials, given
 * back in the URL parser's normal form. Spaces, quotes or angle brackets are refused rather than
 * escaped, since they are always a typo in a deployment's configuration.
 */
const websocketUrl = z.string().trim().transform((value, ctx) => {
  // The URL parser reads `wss:///mqtt` as host `mqtt`: insist the host is written where it belongs.
  const url = URL_UNSAFE.test(value) || !/^wss:\/\/[^/?#]/i.test(value) ? undefined : parseUrl(value)
  if (url === undefined || url.username !== '' || url.password !== '') {
    ctx.addIssue({ code: 'custom', message: 'must be a secure WebSocket URL (wss://host[:port]/path) without spaces, quotes, angle brackets or credentials' })
    return z.NEVER
  }
  return url.href
})

/** Every variable the service reads. `.describe()` feeds the README's configuration table. */
export const envSchema = z.object({
  PORT: port(8080).describe('TCP port the HTTP API listens on.'),
  HOST: z.string().trim().refine((value) => isIP(value) !== 0 || HOST_NAME.test(value), 'must be an IP address or a host name (no port, no scheme)')
    .default('127.0.0.1')
    .describe('Address to bind. The Docker image sets 0.0.0.0.'),
  STORE: z.enum(STORES, { error: `must be ${STORES.join(' or ')}` }).default('file')
    .describe('Where devices are kept: file (STORE_FILE, in memory) or postgres (DATABASE_URL, with a cache in front).'),
  DATABASE_URL: z.string().trim().regex(/^postgres(ql)?:\/\/\S*$/, 'must be a postgres:// or postgresql:// URL').optional()
    .describe('PostgreSQL of STORE=postgres, e.g. postgres://signer:pw@db:5432/devices?sslmode=require. Unset: the standard PG* variables (PGHOST, PGUSER, PGPASSWORD, ...).'),
  DATABASE_POOL_MAX: whole('must be a whole number from 1 to 1000', 1, 1000, 10)
    .describe('Most connections to PostgreSQL per replica; replicas × this must stay below the server\'s max_connections.'),
  STORE_MIGRATE: z.stringbool({ error: 'must be true or false' }).default(false)
    .describe('Apply the database schema at startup (as enos-mqtt-signer migrate does); otherwise startup stops on an old or missing schema.'),
  STORE_TIMEOUT_MS: millis(2000, 10)
    .describe('Longest wait for PostgreSQL (a connection, a query); past it the request gets 503 STORE_UNAVAILABLE with Retry-After.'),
  CACHE_MAX_ENTRIES: whole('must be a whole number from 0 to 10000000', 0, 10_000_000, 100_000)
    .describe('Devices kept in the cache in front of PostgreSQL (least recently used go first). 0: no cache, every lookup is a query.'),
  CACHE_TTL_MS: millis(60_000)
    .describe('How long a cached device is used before it is read again: a rotated secret or a disabled device takes effect within this time.'),
  CACHE_NEGATIVE_TTL_MS: millis(5000, 0)
    .describe('How long an unknown device is remembered as unknown, so a device in a boot loop cannot hammer the database.'),
  CACHE_NEGATIVE_MAX_ENTRIES: whole('must be a whole number from 0 to 10000000', 0, 10_000_000, 10_000)
    .describe('Unknown devices remembered as unknown, in a cache of their own: made-up deviceKeys never evict a cached device. 0: none are remembered.'),
  RATE_LIMIT_UNKNOWN_PER_CALLER: whole('must be a whole number from 0 to 1000000', 0, 1_000_000, 1000)
    .describe('STORE=postgres: unknown devices a caller may look up in the database a minute; past it, a device not in the cache gets 429 RATE_LIMITED without a query. 0: no limit.'),
  CACHE_STALE_MS: millis(3_600_000, 0)
    .describe('While PostgreSQL is down or slow, cached devices keep signing for up to this long past CACHE_TTL_MS.'),
  STORE_FILE: optionalText
    .describe('Device store: a .json or .csv file of productKey, deviceKey, deviceSecret[, enabled]. Default: the bundled examples/devices.json.'),
  STORE_WATCH: z.stringbool({ error: 'must be true or false' }).default(true)
    .describe('Reload STORE_FILE when it changes on disk (it is also reloaded on SIGHUP).'),
  STORE_SETTLE_MS: millis(1000, 0)
    .describe('A changed STORE_FILE is reloaded by itself only once it has stayed unchanged this long (writers write in pieces).'),
  STORE_POLL_MS: millis(2000, 100)
    .describe('How often the version of STORE_FILE is checked besides watching it; this catches changes where a watch cannot be kept.'),
  STORE_MAX_SHRINK_PERCENT: whole('must be a whole number from 0 to 100', 0, 100, 0)
    .describe('A reload by itself that would remove more than this percentage of the devices is held (shown in /readyz) until SIGHUP.'),
  SIGN_METHOD: z.string().default(DEFAULT_SIGN_METHOD)
    .transform((value, ctx) => {
      const method = normalizeSignMethod(value)
      if (method === undefined) {
        ctx.addIssue({ code: 'custom', message: `must be one of ${SIGN_METHOD_NAMES.join(', ')}` })
        return z.NEVER
      }
      return method
    })
    .describe(`Sign method used when a request names none: ${SIGN_METHOD_NAMES.join(', ')}.`),
  MQTT_HOST: z.string().trim().regex(/^[A-Za-z0-9.-]{1,253}$|^\[[0-9A-Fa-f:.]+\]$/, 'must be a host name or IP address').optional()
    .describe('Broker host returned with the credentials, e.g. mqtt-cn4.envisioniot.com. Unset: no broker object in responses.'),
  MQTT_PORT: port(8883, 1).describe('Broker port returned with the credentials.'),
  MQTT_TLS: z.stringbool({ error: 'must be true or false' }).default(true)
    .describe('Whether MQTT_PORT speaks TLS (mqtts://). Set false for a plain-TCP port such as 11883.'),
  MQTT_WEBSOCKET_URL: websocketUrl.optional()
    .describe('MQTT-over-secure-WebSocket URL returned with the credentials, e.g. wss://mqtt-cn4.envisioniot.com/mqtt.'),
  LOG_LEVEL: z.enum(LOG_LEVELS).default('info').describe(`Log level: ${LOG_LEVELS.join(', ')}.`),
  AUTH_MODE: z.enum(AUTH_MODES, { error: `must be ${AUTH_MODES.join(', ')}` }).optional()
    .describe('Access control: token (Authorization: Bearer, tokens from AUTH_TOKENS_FILE), mtls (device client certificates; tokens work too) or none (open). Default: mtls with TLS_CLIENT_CA_FILE, else token, or none on the bundled example store (by its content) when AUTH_TOKENS_FILE is unset too.'),
  AUTH_TOKENS_FILE: optionalText
    .describe('JSON file of API tokens, stored as SHA-256 hashes: { "tokens": [ { name, sha256, scopes, products, expires?, fleet? } ] }. Reloaded on change and SIGHUP. Make entries with `enos-mqtt-signer token create`.'),
  RATE_LIMIT_PER_CALLER: wholeNumber('must be a whole number from 0 to 1000000', 0, 1_000_000).optional()
    .describe('Requests a minute per caller (token name, device certificate, or client address when open, IPv6 by /64) to POST /sign and POST /sign/batch; a batch or stream is one request here, its devices count against RATE_LIMIT_BATCH_ITEMS_PER_CALLER. Fleet tokens are not counted here. Default: 6000, but off with AUTH_MODE=none (a NAT or a load balancer makes many devices one address). 0: no limit.'),
  RATE_LIMIT_PER_DEVICE: whole('must be a whole number from 0 to 1000000', 0, 1_000_000, 30)
    .describe('Signatures a minute per device, shared by POST /sign and every batch item and stream line, so a reboot loop cannot starve the rest. Counted only for devices in the store. 0: no limit.'),
  RATE_LIMIT_BATCH_ITEMS_PER_CALLER: whole('must be a whole number from 0 to 100000000', 0, 100_000_000, 2_000_000)
    .describe('Batch items and stream lines a minute per caller on POST /sign/batch (each over it fails alone with RATE_LIMITED). The default lets one tool sign a million devices in one stream at full speed. 0: no limit.'),
  RATE_LIMIT_VERIFY_PER_DEVICE: whole('must be a whole number from 0 to 1000000', 0, 1_000_000, 60)
    .describe('POST /verify attempts a minute per username (device), counted only for devices in the store; past it the answer is deny. 0: no limit.'),
  RATE_LIMIT_VERIFY_PER_CALLER: whole('must be a whole number from 0 to 1000000', 0, 1_000_000, 0)
    .describe('POST /verify requests a minute per caller (the broker). Off by default: a whole fleet connects through one broker token, so strangers could spend it. 0: no limit.'),
  RATE_LIMIT_REDIS_URL: z.string().trim().regex(/^rediss?:\/\/[^\s]+$/, 'must be a redis:// or rediss:// URL').optional()
    .describe('Redis that the replicas share the rate-limit counters through. Unset, or while it is unreachable or not answering (within 250 ms): each process counts alone.'),
  TLS_CERT_FILE: optionalText.describe('Serve HTTPS with this PEM certificate (chain); reloaded when it changes. Needs TLS_KEY_FILE.'),
  TLS_KEY_FILE: optionalText.describe('The PEM private key of TLS_CERT_FILE; reloaded when it changes.'),
  TLS_CLIENT_CA_FILE: optionalText
    .describe('PEM CA certificate(s) that client certificates must chain to; asks clients for a certificate (needed by AUTH_MODE=mtls).'),
  TLS_CRL_FILE: optionalText
    .describe('PEM certificate revocation list(s) (CRLs) of the client CA(s); a revoked client certificate gets 401. Reloaded when it changes. Needs TLS_CLIENT_CA_FILE.'),
  MTLS_IDENTITY: z.enum(MTLS_IDENTITIES, { error: `must be ${MTLS_IDENTITIES.join(' or ')}` }).default('productKey/deviceKey')
    .describe('How a client certificate names its device: its CN or a DNS/URI SAN equal to productKey/deviceKey, or (deviceKey, only while no deviceKey is in two products) to the deviceKey.'),
  MAX_CONNECTIONS: wholeNumber('must be a whole number from 1 to 1000000', 1, 1_000_000).optional()
    .describe('Most connections open at once; more are closed as they arrive. Default: the open-file limit minus 128.'),
  LISTEN_BACKLOG: whole('must be a whole number from 1 to 65535', 1, 65535, 4096)
    .describe('Connections the kernel queues for the service before it accepts them (listen backlog); capped by net.core.somaxconn (a warning at startup says so). A full queue drops new connections, which then wait 1, 3, 7 s for their retries.'),
  LISTEN_SOCKETS: whole('must be a whole number from 1 to 64', 1, 64, 16)
    .describe('Listening sockets on PORT (SO_REUSEPORT, Linux only; elsewhere 1). Node accepts one connection per socket per event-loop turn: with one, a storm of new connections waits in the kernel, unseen, until its queue overflows; with several, the wait is in the service, which sheds it (OVERLOAD_QUEUE_MS). MAX_CONNECTIONS is shared out among them.'),
  OVERLOAD_BUSY_MS: whole('must be a whole number of milliseconds from 0 to 60000', 0, 60_000, 50)
    .describe('Admission control: once the event loop has been busy this long in one turn, new requests get 503 OVERLOADED (from half of it, callers above their fair share do). 0: off.'),
  OVERLOAD_QUEUE_MS: whole('must be a whole number of milliseconds from 0 to 60000', 0, 60_000, 100)
    .describe('Admission control: once new connections wait this long from their accept to their first request (the median over 100 ms, at most 4 connections per client address), new requests get 503 OVERLOADED (from half of it, callers above their fair share do). 0: off.'),
  OVERLOAD_MAX_IN_FLIGHT: whole('must be a whole number from 0 to 1000000', 0, 1_000_000, 1000)
    .describe('Admission control: most requests being answered at once (a slow store holds them); more get 503 OVERLOADED (from three quarters of it, callers above their fair share do). 0: no bound.'),
  OVERLOAD_RETRY_AFTER_MIN_S: whole('must be a whole number of seconds from 1 to 3600', 1, 3600, 1)
    .describe('Shortest Retry-After of a 503 OVERLOADED answer; each answer draws its own from MIN to MAX, so retries spread out.'),
  OVERLOAD_RETRY_AFTER_MAX_S: whole('must be a whole number of seconds from 1 to 3600', 1, 3600, 30)
    .describe('Longest Retry-After of a 503 OVERLOADED answer (at least OVERLOAD_RETRY_AFTER_MIN_S). A 503 costs about half a 200, so the longer devices wait, the more of the service goes to signing.'),
  MAX_CREDENTIAL_AGE_MS: whole('must be a whole number of milliseconds from 0 to 604800000 (7 days)', 0, 604_800_000, 0)
    .describe('POST /verify denies credentials whose timestamp is older than this, or further in the future. 0: no age check (EnOS itself checks none).'),
  VERIFY_NOT_OURS: z.enum(VERIFY_NOT_OURS_ANSWERS, { error: `must be ${VERIFY_NOT_OURS_ANSWERS.join(' or ')}` }).default('ignore')
    .describe('What POST /verify answers for a username that is not deviceKey&productKey: ignore (the broker asks its next authenticator) or deny.'),
  VERIFY_UNKNOWN_CACHE_MS: millis(5000, 0)
    .describe('How long POST /verify remembers that a device is not in the store (at most 10000 devices), so a misconfigured device cannot hammer the store. 0: off.'),
  BATCH_MAX_ITEMS: whole('must be a whole number from 1 to 100000', 1, 100_000, 1000)
    .describe('Most devices in one JSON batch of POST /sign/batch (more get 413); its body limit is 1 KiB per device. An NDJSON stream has BATCH_STREAM_MAX_ITEMS.'),
  BATCH_STREAM_MAX_ITEMS: whole('must be a whole number from 1 to 100000000', 1, 100_000_000, 5_000_000)
    .describe('Most lines one NDJSON stream of POST /sign/batch answers; past it the stream ends with a STREAM_LIMIT_REACHED line and the client sends the rest in a new stream.'),
  BATCH_STREAM_MAX_MS: whole('must be a whole number of milliseconds from 1000 to 86400000 (24 h)', 1000, 86_400_000, 3_600_000)
    .describe('Longest time one NDJSON stream of POST /sign/batch stays open, sending or not; past it the stream ends with a STREAM_LIMIT_REACHED line and the client sends the rest in a new stream.'),
  BATCH_STREAMS_PER_CALLER: whole('must be a whole number from 0 to 100000', 0, 100_000, 4)
    .describe('Most NDJSON streams of POST /sign/batch one caller (token, device certificate, or client address when open) has open at once; a stream past it gets 429 RATE_LIMITED. 0: no limit.'),
  BODY_LIMIT: whole('must be a whole number of bytes from 1024 to 16777216', 1024, 16 * 1024 * 1024, 16 * 1024)
    .describe('Largest request body accepted, in bytes; larger ones get 413.'),
  REQUEST_TIMEOUT_MS: millis(10_000).describe('Time a client has to send a whole request.'),
  KEEP_ALIVE_TIMEOUT_MS: millis(72_000).describe('How long an idle keep-alive connection stays open.'),
  METRICS_ENABLED: z.stringbool({ error: 'must be true or false' }).default(true)
    .describe('Serve Prometheus metrics at GET /metrics (open, like /healthz: no secret, device or caller in any label).'),
  SHUTDOWN_TIMEOUT_MS: millis(10_000)
    .describe('On SIGTERM/SIGINT, how long in-flight requests get to finish before their connections are cut and the process exits.')
})

export interface Config {
  port: number
  host: string
  store: StoreKind
  /** STORE=postgres: where the database is (undefined: pg's PG* variables) and how it is used. */
  database: { url: string | undefined, poolMax: number, migrate: boolean, timeoutMs: number }
  /** The cache in front of a remote store; maxEntries 0 turns it off. */
  cache: { maxEntries: number, ttlMs: number, negativeTtlMs: number, negativeMaxEntries: number, staleMs: number }
  /** RATE_LIMIT_UNKNOWN_PER_CALLER: unknown devices a caller may look up in PostgreSQL a minute (0: no limit). */
  unknownLookupsPerCaller: number
  storeFile: string
  /** STORE_FILE is unset: the bundled example's path is served (not proof of its content: see auth.exampleOpen). */
  isExampleStore: boolean
  storeWatch: boolean
  storeSettleMs: number
  storePollMs: number
  storeMaxShrinkPercent: number
  signMethod: SignMethod
  mqtt: { host: string, port: number, tls: boolean, websocketUrl: string | undefined } | undefined
  logLevel: (typeof LOG_LEVELS)[number]
  /**
   * The mode in force; `exampleOpen`: none because AUTH_MODE, AUTH_TOKENS_FILE and TLS_CLIENT_CA_FILE
   * are unset and the example path is served, which the store must then prove by its content.
   */
  auth: { mode: AuthMode, exampleOpen: boolean, tokensFile: string | undefined, mtlsIdentity: MtlsIdentity }
  rateLimit: { perCaller: number, perDevice: number, batchItemsPerCaller: number, verifyPerDevice: number, verifyPerCaller: number, redisUrl: string | undefined }
  tls: { certFile: string, keyFile: string, clientCaFile: string | undefined, crlFile: string | undefined } | undefined
  maxConnections: number | undefined
  /** LISTEN_BACKLOG: the backlog asked of listen(); the kernel caps it at net.core.somaxconn. */
  listenBacklog: number
  /** LISTEN_SOCKETS: sockets listening on PORT with SO_REUSEPORT (src/listeners.ts). */
  listenSockets: number
  /** Admission control: OVERLOAD_BUSY_MS and OVERLOAD_QUEUE_MS (0: off), OVERLOAD_MAX_IN_FLIGHT (0: no bound), the Retry-After range in seconds. */
  overload: { busyMs: number, queueMs: number, maxInFlight: number, retryAfterMinS: number, retryAfterMaxS: number }
  /** POST /verify: MAX_CREDENTIAL_AGE_MS (0: off), VERIFY_NOT_OURS, VERIFY_UNKNOWN_CACHE_MS (0: off). */
  verify: { maxAgeMs: number, notOurs: (typeof VERIFY_NOT_OURS_ANSWERS)[number], unknownCacheMs: number }
  batchMaxItems: number
  /** One NDJSON stream: BATCH_STREAM_MAX_ITEMS lines answered, BATCH_STREAM_MAX_MS open; BATCH_STREAMS_PER_CALLER open at once per caller (0: no limit). */
  batchStream: { maxItems: number, maxMs: number, perCaller: number }
  bodyLimit: number
  requestTimeoutMs: number
  keepAliveTimeoutMs: number
  shutdownTimeoutMs: number
  metricsEnabled: boolean
}

/**
 * RATE_LIMIT_PER_CALLER when unset, for tokens and certificates. Open, a caller is an address, and
 * behind a NAT or a load balancer one address is a whole site or fleet: counted only per device then.
 */
const DEFAULT_PER_CALLER = 6000

const MQTT_DETAILS = ['MQTT_PORT', 'MQTT_TLS', 'MQTT_WEBSOCKET_URL'] as const

/**
 * The access mode with AUTH_MODE unset. A client CA or a token file means the operator wants
 * access control: mtls (which accepts tokens too), or token. Otherwise token, or none while the
 * bundled example store is served: the store plugin checks that its content really is the example.
 */
function defaultAuthMode (env: Readonly<Record<string, string | undefined>>): AuthMode {
  if (env.TLS_CLIENT_CA_FILE !== undefined) return 'mtls'
  if (env.AUTH_TOKENS_FILE !== undefined) return 'token'
  return isExample(env) ? 'none' : 'token'
}

/**
 * The rules between the access variables, as lines of the one configuration message. A real
 * store with AUTH_MODE unset means token mode, so it needs a token file: the message names the
 * two ways out. A setting that the mode in force would ignore is refused.
 */
function accessProblems (env: Readonly<Record<string, string | undefined>>): string[] {
  const lines: string[] = []
  const mode = env.AUTH_MODE ?? defaultAuthMode(env)
  if (mode === 'token' && env.AUTH_TOKENS_FILE === undefined) {
    lines.push(`  AUTH_TOKENS_FILE: is required with AUTH_MODE=token${env.AUTH_MODE === undefined ? ' (the default with a real store)' : ''}: ` +
      'create a token file (enos-mqtt-signer token create), or set AUTH_MODE=none to run the API open on purpose')
  }
  if (mode === 'none' && env.AUTH_TOKENS_FILE !== undefined) lines.push('  AUTH_TOKENS_FILE: has no effect with AUTH_MODE=none (no token is asked for): unset AUTH_MODE to use it')
  if (mode === 'mtls') {
    const why = env.AUTH_MODE === undefined ? ' (the default with TLS_CLIENT_CA_FILE)' : ''
    for (const name of ['TLS_CERT_FILE', 'TLS_KEY_FILE', 'TLS_CLIENT_CA_FILE']) if (env[name] === undefined) lines.push(`  ${name}: is required with AUTH_MODE=mtls${why}`)
  } else {
    if (env.MTLS_IDENTITY !== undefined) lines.push('  MTLS_IDENTITY: has no effect without AUTH_MODE=mtls')
    // Client certificates are checked only in mtls mode: in any other, one would be asked for and ignored.
    if (env.TLS_CLIENT_CA_FILE !== undefined) lines.push(`  TLS_CLIENT_CA_FILE: has no effect with AUTH_MODE=${mode} (client certificates are checked with AUTH_MODE=mtls)`)
  }
  if ((env.TLS_CERT_FILE === undefined) !== (env.TLS_KEY_FILE === undefined) && mode !== 'mtls') {
    lines.push(`  ${env.TLS_CERT_FILE === undefined ? 'TLS_CERT_FILE' : 'TLS_KEY_FILE'}: is required with ${env.TLS_CERT_FILE === undefined ? 'TLS_KEY_FILE' : 'TLS_CERT_FILE'}`)
  }
  return lines
}

/** The bundled example store's path is in use: no STORE_FILE and no database (whether it holds the example is checked on its content). */
function isExample (env: Readonly<Record<string, string | undefined>>): boolean {
  return env.STORE_FILE === undefined && env.STORE !== 'postgres'
}

const DATABASE_ONLY = ['DATABASE_URL', 'DATABASE_POOL_MAX', 'STORE_MIGRATE', 'STORE_TIMEOUT_MS', 'CACHE_MAX_ENTRIES', 'CACHE_TTL_MS', 'CACHE_NEGATIVE_TTL_MS', 'CACHE_NEGATIVE_MAX_ENTRIES', 'CACHE_STALE_MS', 'RATE_LIMIT_UNKNOWN_PER_CALLER'] as const
// STORE_WATCH, STORE_SETTLE_MS and STORE_POLL_MS also rule how AUTH_TOKENS_FILE is watched.
const FILE_ONLY = ['STORE_FILE', 'STORE_MAX_SHRINK_PERCENT'] as const

/** Settings of the store not in use would be silently ignored: say so instead. */
function storeProblems (env: Readonly<Record<string, string | undefined>>): string[] {
  const postgres = env.STORE === 'postgres'
  const unused = postgres ? FILE_ONLY : DATABASE_ONLY
  return unused.filter((name) => env[name] !== undefined).map((name) => `  ${name}: has no effect with STORE=${postgres ? 'postgres' : 'file'}`)
}

/** Without STORE_WATCH nothing is reloaded by itself: only SIGHUP reloads, which neither polls nor holds a shrinking file. */
function watchProblems (env: Readonly<Record<string, string | undefined>>): string[] {
  const watch = envSchema.shape.STORE_WATCH.safeParse(env.STORE_WATCH)
  if (!watch.success || watch.data) return []
  const unused = env.STORE === 'postgres' ? ['STORE_POLL_MS'] : ['STORE_POLL_MS', 'STORE_MAX_SHRINK_PERCENT']
  return unused.filter((name) => env[name] !== undefined).map((name) => `  ${name}: has no effect with STORE_WATCH=false (only SIGHUP reloads then)`)
}

/** Every variable this package reads: the service's, the command line's own (src/cli) and the device examples' (examples/device). */
const KNOWN_NAMES = [...Object.keys(envSchema.shape), 'ENOS_SIGNER_TOKEN', 'SIGNER_URL', 'SIGNER_TOKEN', 'MQTT_CA_FILE', 'PRODUCT_KEY', 'DEVICE_KEY']

/**
 * A setting of ours that holds a Kubernetes service link (`MQTT_PORT=tcp://10.0.0.1:1883`, from
 * a Service named mqtt) is named as such and taken out of `env`, instead of being read as a bad port.
 */
function serviceLinkProblems (env: Record<string, string | undefined>): string[] {
  const names = Object.keys(envSchema.shape).filter((name) => isServiceLink(name, env[name]))
  for (const name of names) delete env[name]
  return names.map((name) => `  ${name}: holds a Kubernetes service link (tcp://address:port of a Service named ${name.slice(0, -'_PORT'.length).toLowerCase()}), not a port: ` +
    'set enableServiceLinks: false in the pod spec')
}

/** Thrown by {@link loadConfig}; the message names every bad variable, one per line, never a value. */
export class ConfigError extends Error {
  override name = 'ConfigError'
}

/**
 * Validates the environment and returns a frozen Config. Only server.ts passes process.env.
 * @throws ConfigError listing every invalid variable.
 */
export function loadConfig (env: Readonly<Record<string, string | undefined>>): Readonly<Config> {
  // An empty variable (`PORT=`) counts as unset, as in most shells' `${VAR:-default}`.
  const present = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== ''))
  const links = serviceLinkProblems(present)
  const result = envSchema.safeParse(present)
  const lines = result.success ? [] : result.error.issues.map((issue) => `  ${issue.path.join('.')}: ${issue.message}`)
  lines.push(...links, ...unknownSettings(present, KNOWN_NAMES))
  if (present.MQTT_HOST === undefined) {
    // Broker settings without a broker would be silently ignored: say so instead.
    for (const name of MQTT_DETAILS) if (present[name] !== undefined) lines.push(`  ${name}: has no effect without MQTT_HOST`)
  }
  lines.push(...storeProblems(present), ...watchProblems(present), ...accessProblems(present))
  // A revocation list checks client certificates: without a client CA there are none.
  if (present.TLS_CRL_FILE !== undefined && present.TLS_CLIENT_CA_FILE === undefined) lines.push('  TLS_CRL_FILE: has no effect without TLS_CLIENT_CA_FILE')
  if (result.success && result.data.OVERLOAD_RETRY_AFTER_MIN_S > result.data.OVERLOAD_RETRY_AFTER_MAX_S) {
    lines.push('  OVERLOAD_RETRY_AFTER_MIN_S: must not be more than OVERLOAD_RETRY_AFTER_MAX_S')
  }
  if (!result.success || lines.length > 0) throw new ConfigError(`Invalid configuration:\n${lines.join('\n')}`)
  const e = result.data
  const isExampleStore = isExample(present)
  const authMode: AuthMode = e.AUTH_MODE ?? defaultAuthMode(present)
  return Object.freeze({
    port: e.PORT,
    host: e.HOST,
    store: e.STORE,
    database: Object.freeze({ url: e.DATABASE_URL, poolMax: e.DATABASE_POOL_MAX, migrate: e.STORE_MIGRATE, timeoutMs: e.STORE_TIMEOUT_MS }),
    cache: Object.freeze({ maxEntries: e.CACHE_MAX_ENTRIES, ttlMs: e.CACHE_TTL_MS, negativeTtlMs: e.CACHE_NEGATIVE_TTL_MS, negativeMaxEntries: e.CACHE_NEGATIVE_MAX_ENTRIES, staleMs: e.CACHE_STALE_MS }),
    unknownLookupsPerCaller: e.RATE_LIMIT_UNKNOWN_PER_CALLER,
    storeFile: e.STORE_FILE ?? EXAMPLE_STORE_FILE,
    isExampleStore,
    storeWatch: e.STORE_WATCH,
    storeSettleMs: e.STORE_SETTLE_MS,
    storePollMs: e.STORE_POLL_MS,
    storeMaxShrinkPercent: e.STORE_MAX_SHRINK_PERCENT,
    signMethod: e.SIGN_METHOD,
    mqtt: e.MQTT_HOST === undefined
      ? undefined
      : Object.freeze({ host: e.MQTT_HOST, port: e.MQTT_PORT, tls: e.MQTT_TLS, websocketUrl: e.MQTT_WEBSOCKET_URL }),
    logLevel: e.LOG_LEVEL,
    auth: Object.freeze({ mode: authMode, exampleOpen: e.AUTH_MODE === undefined && authMode === 'none', tokensFile: e.AUTH_TOKENS_FILE, mtlsIdentity: e.MTLS_IDENTITY }),
    rateLimit: Object.freeze({
      perCaller: e.RATE_LIMIT_PER_CALLER ?? (authMode === 'none' ? 0 : DEFAULT_PER_CALLER),
      perDevice: e.RATE_LIMIT_PER_DEVICE,
      batchItemsPerCaller: e.RATE_LIMIT_BATCH_ITEMS_PER_CALLER,
      verifyPerDevice: e.RATE_LIMIT_VERIFY_PER_DEVICE,
      verifyPerCaller: e.RATE_LIMIT_VERIFY_PER_CALLER,
      redisUrl: e.RATE_LIMIT_REDIS_URL
    }),
    tls: e.TLS_CERT_FILE === undefined || e.TLS_KEY_FILE === undefined
      ? undefined
      : Object.freeze({ certFile: e.TLS_CERT_FILE, keyFile: e.TLS_KEY_FILE, clientCaFile: e.TLS_CLIENT_CA_FILE, crlFile: e.TLS_CRL_FILE }),
    maxConnections: e.MAX_CONNECTIONS,
    listenBacklog: e.LISTEN_BACKLOG,
    listenSockets: e.LISTEN_SOCKETS,
    overload: Object.freeze({
      busyMs: e.OVERLOAD_BUSY_MS,
      queueMs: e.OVERLOAD_QUEUE_MS,
      maxInFlight: e.OVERLOAD_MAX_IN_FLIGHT,
      retryAfterMinS: e.OVERLOAD_RETRY_AFTER_MIN_S,
      retryAfterMaxS: e.OVERLOAD_RETRY_AFTER_MAX_S
    }),
    verify: Object.freeze({ maxAgeMs: e.MAX_CREDENTIAL_AGE_MS, notOurs: e.VERIFY_NOT_OURS, unknownCacheMs: e.VERIFY_UNKNOWN_CACHE_MS }),
    batchMaxItems: e.BATCH_MAX_ITEMS,
    batchStream: Object.freeze({ maxItems: e.BATCH_STREAM_MAX_ITEMS, maxMs: e.BATCH_STREAM_MAX_MS, perCaller: e.BATCH_STREAMS_PER_CALLER }),
    bodyLimit: e.BODY_LIMIT,
    requestTimeoutMs: e.REQUEST_TIMEOUT_MS,
    keepAliveTimeoutMs: e.KEEP_ALIVE_TIMEOUT_MS,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    metricsEnabled: e.METRICS_ENABLED
  })
}
