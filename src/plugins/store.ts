// Decorates the app with its device store (the file store, or PostgreSQL behind a cache) and closes the store with the app.
import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { LRUCache } from 'lru-cache'
import type { Caller } from '../auth/caller.js'
import type { Config } from '../config.js'
import { AppError } from '../errors.js'
import { createCachedStore } from '../store/cached-store.js'
import { createFileStore } from '../store/file-store.js'
import { SchemaError, migrate } from '../store/migrations.js'
import { createPool, createPostgresStore, describePgError, type PostgresStore } from '../store/postgres-store.js'
import { isExampleDevices } from '../store/example-devices.js'
import { SharedDeviceKeyError, describeSharedDeviceKeys } from '../store/shared-device-keys.js'
import { NOT_CACHED, type Device, type DeviceKeys, type DeviceLookup, type DeviceStore } from '../store/store.js'
import { MAX_COUNTED_CALLERS, createUnknownBudget, type UnknownBudget } from '../unknown-budget.js'
import { callerKey } from './rate-limits.js'

declare module 'fastify' {
  interface FastifyInstance {
    store: DeviceStore
    /**
     * MTLS_IDENTITY=deviceKey: refuses a certificate that names only a deviceKey when the store
     * holds that deviceKey in more than one product (FORBIDDEN). Undefined where nothing can be
     * refused (any other mode, or a device file, checked as a whole when loaded): nothing to run per request.
     */
    refuseSharedDeviceKey: ((caller: Caller, deviceKey: string) => Promise<void>) | undefined
    /**
     * The store as this request's caller may use it: with STORE=postgres, a caller past
     * RATE_LIMIT_UNKNOWN_PER_CALLER unknown devices this minute gets RATE_LIMITED for any device the
     * cache cannot answer, instead of a query. Routes look devices up through it.
     */
    storeFor: (request: FastifyRequest) => DeviceStore
  }
}

/** The rule under which a deviceKey must be in one product only, or undefined when certificates name their product. */
function deviceKeyRule (config: Readonly<Config>): string | undefined {
  return config.auth.mode === 'mtls' && config.auth.mtlsIdentity === 'deviceKey' ? 'MTLS_IDENTITY=deviceKey' : undefined
}

export interface StorePluginOptions {
  config: Readonly<Config>
  /** A store built by the caller (tests, another backend); otherwise the one STORE names. */
  store?: DeviceStore
}

async function storePlugin (app: FastifyInstance, { config, store }: StorePluginOptions): Promise<void> {
  const log = app.log.child({ component: 'store' })
  const { store: deviceStore, productKeysOf } = store !== undefined
    ? { store, productKeysOf: undefined }
    : config.store === 'postgres' ? await openPostgres(config, log) : { store: await openFile(app, config, log), productKeysOf: undefined }
  // Lookups are timed through the app's metrics; the store itself knows nothing of them.
  const served = app.metrics.instrumentStore(deviceStore)
  app.decorate('store', served)
  // A device file was checked as a whole when loaded; a database can gain a device at any time, so it is asked each time.
  app.decorate('refuseSharedDeviceKey', productKeysOf === undefined
    ? undefined
    : async (caller: Caller, deviceKey: string) => {
      if (caller.devices?.some((device) => device.productKey === undefined) !== true) return
      if ((await productKeysOf(deviceKey)).length > 1) {
        throw new AppError('FORBIDDEN', `deviceKey "${deviceKey}" is in more than one product, so a client certificate that names only the deviceKey (MTLS_IDENTITY=deviceKey) signs for none of them`)
      }
    })
  const limit = config.unknownLookupsPerCaller
  // Only a store with a cache in front of a database has lookups worth bounding (the file store answers all from memory).
  const peek = served.peekDevices
  const budget = limit === 0 || peek === undefined ? undefined : createUnknownBudget(limit, Date.now)
  if (budget === undefined || peek === undefined) {
    app.decorate('storeFor', () => served)
  } else {
    // One bounded view per caller, made once: not an object and its closures on every request.
    const views = new LRUCache<string, DeviceStore>({ max: MAX_COUNTED_CALLERS })
    app.decorate('storeFor', (request: FastifyRequest) => {
      const key = callerKey(request)
      let view = views.get(key)
      if (view === undefined) views.set(key, view = boundedStore(served, peek, budget, key))
      return view
    })
  }
  app.addHook('onClose', async () => { await served.close() })
}

async function openFile (app: FastifyInstance, config: Readonly<Config>, log: FastifyInstance['log']): Promise<DeviceStore> {
  const store = await createFileStore({
    path: config.storeFile,
    watch: config.storeWatch,
    settleMs: config.storeSettleMs,
    pollMs: config.storePollMs,
    maxShrinkPercent: config.storeMaxShrinkPercent,
    // Open by default only on the example's content: whatever else is at its path (a mounted volume) is refused, at startup and on reload.
    ...(config.auth.exampleOpen && { accept: notTheExample }),
    oneProductPerDeviceKey: deviceKeyRule(config),
    log,
    onReload: (outcome) => { app.metrics.storeReloaded('file', outcome) }
  })
  if (config.isExampleStore) {
    log.warn({ path: config.storeFile }, 'serving the bundled example store: set STORE_FILE to your own devices')
  }
  return store
}

function notTheExample (devices: ReadonlyMap<string, Device>): string | undefined {
  if (isExampleDevices(devices)) return undefined
  return `is not the bundled example store (it holds ${devices.size} device${devices.size === 1 ? '' : 's'}), and with AUTH_MODE unset it would be served open: ` +
    'set AUTH_TOKENS_FILE (access by token), or AUTH_MODE=none to run open on purpose'
}

/**
 * The store for one caller: lookups count the unknown devices that reached the database; once the
 * caller has found `budget.perMinute` of them this minute, a device the cache cannot answer gets
 * RATE_LIMITED without a query (cached devices, and devices remembered as unknown, still answer).
 */
function boundedStore (store: DeviceStore, peek: NonNullable<DeviceStore['peekDevices']>, budget: UnknownBudget, caller: string): DeviceStore {
  const refused = (seconds: number): AppError => new AppError('RATE_LIMITED',
    `this caller looked up more than ${budget.perMinute} unknown devices in a minute (RATE_LIMIT_UNKNOWN_PER_CALLER): ` +
    `devices not in the cache are refused for ${seconds} s; check the deviceKeys you send`, { retryAfter: seconds })
  return {
    ...store,
    async findDevice (productKey: string, deviceKey: string) {
      const [cached] = peek([{ productKey, deviceKey }])
      const seconds = budget.spentFor(caller)
      if (seconds !== undefined && cached === NOT_CACHED) throw refused(seconds)
      // Through the store's own findDevice, so that concurrent lookups of one device still make one query.
      const device = await store.findDevice(productKey, deviceKey)
      // Charged: a device the cache could not answer, that the database did not find.
      if (device === undefined && cached === NOT_CACHED) budget.charge(caller, 1)
      return device
    },
    async findDevices (keys: readonly DeviceKeys[]): Promise<DeviceLookup[]> {
      const cached = peek(keys)
      const seconds = budget.spentFor(caller)
      if (seconds === undefined) {
        const found = await store.findDevices(keys)
        budget.charge(caller, found.filter((device, i) => device === undefined && cached[i] === NOT_CACHED).length)
        return found
      }
      // Spent: only what the cache holds is looked up (and answered from it); the rest is refused.
      const held = keys.filter((_key, i) => cached[i] !== NOT_CACHED)
      const found = held.length === 0 ? [] : await store.findDevices(held)
      const error = refused(seconds)
      let next = 0
      return cached.map((entry) => entry === NOT_CACHED ? error : found[next++])
    }
  }
}

/**
 * PostgreSQL, migrated first when STORE_MIGRATE=true, behind the cache unless CACHE_MAX_ENTRIES=0.
 * Under MTLS_IDENTITY=deviceKey, startup stops while a deviceKey is in two products, and every
 * certificate request asks again (`productKeysOf`), uncached: a row added later must count at once.
 */
async function openPostgres (config: Readonly<Config>, log: FastifyInstance['log']): Promise<{ store: DeviceStore, productKeysOf: PostgresStore['productKeysOf'] | undefined }> {
  const { url, poolMax, timeoutMs } = config.database
  if (config.database.migrate) {
    // Its own short-lived connection: a migration may take longer than STORE_TIMEOUT_MS allows a lookup.
    const pool = createPool({ url, poolMax: 1, timeoutMs: 0 })
    try {
      const { applied, version } = await migrate(pool)
      log.info({ applied, schemaVersion: version }, applied.length > 0 ? 'database schema migrated' : 'database schema up to date')
    } catch (err) {
      throw migrationFailed(err)
    } finally {
      await pool.end()
    }
  }
  const store = await createPostgresStore({ url, poolMax, timeoutMs, log })
  const rule = deviceKeyRule(config)
  if (rule !== undefined) {
    /* c8 ignore next -- only a database lost between the schema check and this query, milliseconds apart, fails it */
    const found = await store.findSharedDeviceKeys().catch(async (err: unknown) => { await store.close(); throw err })
    if (found.total > 0) {
      await store.close()
      throw new SharedDeviceKeyError(`STORE=postgres: ${describeSharedDeviceKeys(found.shared, found.total, rule)}`)
    }
  }
  log.info({ poolMax, cacheMaxEntries: config.cache.maxEntries }, 'serving devices from PostgreSQL')
  return {
    store: config.cache.maxEntries === 0 ? store : createCachedStore(store, config.cache),
    productKeysOf: rule === undefined ? undefined : (deviceKey) => store.productKeysOf(deviceKey)
  }
}

/** A failed migration stops startup with what PostgreSQL said, secrets removed. */
function migrationFailed (err: unknown): Error {
  if (err instanceof SchemaError) return err
  return new SchemaError(`STORE_MIGRATE=true: the migration failed (${describePgError(err).message})`)
}

export default fp(storePlugin, { name: 'store', fastify: '5.x', dependencies: ['metrics'] })
