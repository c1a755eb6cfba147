// The PostgreSQL store: devices read from the `devices` table through a pg pool, every wait bounded by STORE_TIMEOUT_MS.
import pg from 'pg'
import { AppError, STORE_UNAVAILABLE_MESSAGE, isAppError } from '../errors.js'
import { SchemaError, checkSchema, readSchemaVersion } from './migrations.js'
import { LISTED_SHARED, type SharedDeviceKey } from './shared-device-keys.js'
import { deviceId, type Device, type DeviceKeys, type DeviceStore, type StoreHealth } from './store.js'

export interface PostgresStoreOptions {
  /** postgres://… (sslmode in the URL); undefined: pg reads the standard PG* variables. */
  url: string | undefined
  poolMax: number
  /** Longest wait for a connection, for a query, and for both together. */
  timeoutMs: number
  log: { warn: (fields: object, message: string) => void }
}

export interface PostgresStore extends DeviceStore {
  readonly pool: pg.Pool
  /** The first deviceKeys held by more than one product (LISTED_SHARED of them, a few products each), and how many there are. */
  findSharedDeviceKeys (): Promise<{ shared: SharedDeviceKey[], total: number }>
  /** Up to two productKeys that hold `deviceKey`: more than one means it is shared. */
  productKeysOf (deviceKey: string): Promise<string[]>
}

interface DeviceRow { product_key: string, device_key: string, device_secret: string, enabled: boolean }

// Named: each connection prepares them once.
const FIND_DEVICE = 'SELECT product_key, device_key, device_secret, enabled FROM devices WHERE product_key = $1 AND device_key = $2'
const FIND_DEVICES = `SELECT product_key, device_key, device_secret, enabled FROM devices
  WHERE (product_key, device_key) IN (SELECT * FROM unnest($1::text[], $2::text[]))`

// The primary key is (product_key, device_key): both scan the table (once at startup; per certificate request, see README).
const SHARED_DEVICE_KEYS = `SELECT device_key, (array_agg(product_key ORDER BY product_key))[1:${LISTED_SHARED + 1}] AS product_keys, count(*) OVER () AS total
  FROM devices GROUP BY device_key HAVING count(*) > 1 ORDER BY device_key LIMIT ${LISTED_SHARED}`
const PRODUCT_KEYS_OF = 'SELECT product_key FROM devices WHERE device_key = $1 LIMIT 2'

/** Opens a pool (connections are made on first use) for the pg store and the CLI alike. */
export function createPool ({ url, poolMax, timeoutMs }: Omit<PostgresStoreOptions, 'log'>): pg.Pool {
  return new pg.Pool({
    ...(url !== undefined && { connectionString: url }),
    max: poolMax,
    // The store's own deadline (timeoutMs) answers first; these only make sure nothing waits for ever,
    // and the server gives up on the query too, so a slow database is not left with work nobody waits for.
    connectionTimeoutMillis: 2 * timeoutMs,
    query_timeout: 2 * timeoutMs,
    statement_timeout: timeoutMs,
    application_name: 'enos-mqtt-signer'
  })
}

/**
 * The store over an existing schema. Startup stops rather than serving from a database of another
 * schema version.
 * @throws SchemaError when the schema is missing, older or newer; AppError STORE_UNAVAILABLE when the database cannot be reached.
 */
export async function createPostgresStore (options: PostgresStoreOptions): Promise<PostgresStore> {
  const pool = createPool(options)
  // An idle connection the server closes (a restart, an outage) is reported here; without a listener it would end the process.
  pool.on('error', (err) => { options.log.warn({ err: describePgError(err) }, 'an idle database connection failed; it is replaced on next use') })
  let closed: Promise<void> | undefined
  const close = async (): Promise<void> => { await (closed ??= pool.end()) }
  try {
    await bounded(options.timeoutMs, async () => checkSchema(pool))
  } catch (err) {
    await close()
    // At startup the message is for the operator, on stderr: it names the cause (secrets removed).
    if (isAppError(err)) throw new AppError('STORE_UNAVAILABLE', `the device database did not answer (${describePgError(err.cause).message}); retry shortly`, { cause: err.cause })
    throw err
  }
  // The last cause /readyz reported, so that a probe every few seconds logs a change, not every failure.
  let reported: string | undefined
  const query = async <R extends pg.QueryResultRow>(query: pg.QueryConfig): Promise<R[]> =>
    (await bounded(options.timeoutMs, async () => pool.query<R>(query))).rows

  const findDevices = async (keys: readonly DeviceKeys[]): Promise<Array<Device | undefined>> => {
    if (keys.length === 0) return []
    const rows = await query<DeviceRow>({ name: 'find-devices', text: FIND_DEVICES, values: [keys.map((k) => k.productKey), keys.map((k) => k.deviceKey)] })
    const found = new Map(rows.map((row) => [deviceId(row.product_key, row.device_key), toDevice(row)]))
    return keys.map(({ productKey, deviceKey }) => found.get(deviceId(productKey, deviceKey)))
  }

  return {
    kind: 'postgres',
    pool,
    async findDevice (productKey: string, deviceKey: string): Promise<Device | undefined> {
      const [row] = await query<DeviceRow>({ name: 'find-device', text: FIND_DEVICE, values: [productKey, deviceKey] })
      return row === undefined ? undefined : toDevice(row)
    },
    findDevices,
    async findSharedDeviceKeys () {
      const rows = await query<{ device_key: string, product_keys: string[], total: string }>({ text: SHARED_DEVICE_KEYS })
      return { shared: rows.map((row) => ({ deviceKey: row.device_key, productKeys: row.product_keys })), total: Number(rows[0]?.total ?? 0) }
    },
    async productKeysOf (deviceKey: string) {
      return (await query<{ product_key: string }>({ name: 'product-keys-of', text: PRODUCT_KEYS_OF, values: [deviceKey] })).map((row) => row.product_key)
    },
    async checkHealth (): Promise<StoreHealth> {
      let devices: number
      let schemaVersion: number
      try {
        const [row] = await query<{ devices: string }>({ text: 'SELECT count(*) AS devices FROM devices' })
        devices = Number(row?.devices)
        schemaVersion = await bounded(options.timeoutMs, async () => readSchemaVersion(pool))
      } catch (err) {
        // Not ready, and /readyz says why in words that name no host, user or database; the log has the cause.
        // bounded() turns every failure into STORE_UNAVAILABLE, with the pg error (secrets removed) as its cause.
        const cause = describePgError((err as AppError).cause)
        if (cause.message !== reported) options.log.warn({ err: cause }, 'health check: the device database did not answer')
        reported = cause.message
        return { ok: false, kind: 'postgres', detail: outageReason(cause, options.timeoutMs), database: { reachable: false, pool: poolUsage(pool) } }
      }
      reported = undefined
      return {
        ok: true,
        kind: 'postgres',
        detail: `${devices} devices in PostgreSQL (schema version ${schemaVersion})`,
        devices,
        database: { reachable: true, schemaVersion, pool: poolUsage(pool) }
      }
    },
    close
  }
}

/** Connections of the pool: open, idle, and requests waiting for one. */
export function poolUsage (pool: pg.Pool): { total: number, idle: number, waiting: number } {
  return { total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount }
}

function toDevice (row: DeviceRow): Device {
  return { productKey: row.product_key, deviceKey: row.device_key, deviceSecret: row.device_secret, enabled: row.enabled }
}

/**
 * Runs `work` with a deadline, turning every failure into STORE_UNAVAILABLE. pg's own timeouts
 * bound the wait for a connection and the query separately; the deadline bounds them together.
 */
async function bounded<T> (timeoutMs: number, work: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(`no answer within STORE_TIMEOUT_MS (${timeoutMs} ms)`), { code: STORE_TIMEOUT })), timeoutMs)
  })
  const running = work()
  // Once the deadline has passed, the late outcome of the work is nobody's business.
  running.catch(() => {})
  return Promise.race([running, deadline])
    .catch((err: unknown) => { throw storeUnavailable(err) })
    .finally(() => clearTimeout(timer))
}

/** The code of the error of a wait cut at STORE_TIMEOUT_MS. */
const STORE_TIMEOUT = 'STORE_TIMEOUT'

/**
 * The outage as the client sees it: fixed words (the driver's text names hosts, ports, users and
 * databases), with the pg error (secrets removed) as the cause, which is logged.
 */
function storeUnavailable (err: unknown): AppError {
  // A schema that does not fit is no outage: startup stops with its own message.
  if (err instanceof SchemaError) throw err
  return new AppError('STORE_UNAVAILABLE', STORE_UNAVAILABLE_MESSAGE, { cause: describePgError(err) })
}

/** Why the database did not answer, by the error's code (network, or PostgreSQL's SQLSTATE), in words for the open /readyz. */
const OUTAGE_REASONS: Record<string, string> = {
  ECONNREFUSED: 'the device database refused the connection (is it running?)',
  ENOTFOUND: 'the host name of the device database does not resolve',
  EAI_AGAIN: 'the host name of the device database does not resolve',
  ETIMEDOUT: 'the device database cannot be reached over the network',
  EHOSTUNREACH: 'the device database cannot be reached over the network',
  ENETUNREACH: 'the device database cannot be reached over the network',
  ECONNRESET: 'the device database closed the connection',
  EPIPE: 'the device database closed the connection',
  '28P01': 'the device database refused the service\'s password (DATABASE_URL or PGPASSWORD)',
  28000: 'the device database refused the service\'s user (DATABASE_URL or PGUSER)',
  '3D000': 'the database named by DATABASE_URL (or PGDATABASE) does not exist',
  '42P01': 'the devices table is missing (run enos-mqtt-signer migrate)',
  42501: 'the service\'s database user may not read the devices table',
  53300: 'the device database has no connection free (max_connections)',
  '57P01': 'the device database is shutting down',
  '57P02': 'the device database is shutting down',
  '57P03': 'the device database is starting up or shutting down',
  57014: 'the device database cancelled the query (statement_timeout)'
}

/** The reason /readyz gives for an outage: never the driver's text, which names hosts, ports, users and databases. */
export function outageReason (cause: { code?: string }, timeoutMs: number): string {
  if (cause.code === STORE_TIMEOUT) return `the device database did not answer within STORE_TIMEOUT_MS (${timeoutMs} ms)`
  return (cause.code === undefined ? undefined : OUTAGE_REASONS[cause.code]) ?? 'the device database did not answer (the cause is in the service\'s log)'
}

/**
 * A pg or network error, reduced to its code and a message that holds no secret: pg messages can
 * quote values (a row that broke a constraint, with its secret) in `detail`, which is dropped, and a
 * connection string in a message has its password removed.
 */
export function describePgError (err: unknown): Error & { code?: string } {
  const { code, message } = err as { code?: unknown, message?: unknown }
  const text = typeof message === 'string' ? message : String(err)
  const safe = new Error(redactUrls(text).split('\n')[0]) as Error & { code?: string }
  if (typeof code === 'string') safe.code = code
  return safe
}

/** `postgres://user:pw@host` -> `postgres://user:[redacted]@host`, wherever it appears. */
export function redactUrls (text: string): string {
  return text.replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^:/?#@\s]*:)[^@\s]*@/gi, '$1[redacted]@')
}
