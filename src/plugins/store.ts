// Decorates the app with its device store (the file store, or PostgreSQL behind a cache) and closes the store with the app.
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { Config } from '../config.js'
import { createCachedStore } from '../store/cached-store.js'
import { createFileStore } from '../store/file-store.js'
import { SchemaError, migrate } from '../store/migrations.js'
import { createPool, createPostgresStore, describePgError } from '../store/postgres-store.js'
import { isExampleDevices } from '../store/example-devices.js'
import type { Device, DeviceStore } from '../store/store.js'

declare module 'fastify' {
  interface FastifyInstance {
    store: DeviceStore
  }
}

export interface StorePluginOptions {
  config: Readonly<Config>
  /** A store built by the caller (tests, another backend); otherwise the one STORE names. */
  store?: DeviceStore
}

async function storePlugin (app: FastifyInstance, { config, store }: StorePluginOptions): Promise<void> {
  const log = app.log.child({ component: 'store' })
  const deviceStore = store ?? (config.store === 'postgres' ? await openPostgres(config, log) : await openFile(app, config, log))
  // Lookups are timed through the app's metrics; the store itself knows nothing of them.
  const served = app.metrics.instrumentStore(deviceStore)
  app.decorate('store', served)
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

/** PostgreSQL, migrated first when STORE_MIGRATE=true, behind the cache unless CACHE_MAX_ENTRIES=0. */
async function openPostgres (config: Readonly<Config>, log: FastifyInstance['log']): Promise<DeviceStore> {
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
  log.info({ poolMax, cacheMaxEntries: config.cache.maxEntries }, 'serving devices from PostgreSQL')
  return config.cache.maxEntries === 0 ? store : createCachedStore(store, config.cache)
}

/** A failed migration stops startup with what PostgreSQL said, secrets removed. */
function migrationFailed (err: unknown): Error {
  if (err instanceof SchemaError) return err
  return new SchemaError(`STORE_MIGRATE=true: the migration failed (${describePgError(err).message})`)
}

export default fp(storePlugin, { name: 'store', fastify: '5.x', dependencies: ['metrics'] })
