// Decorates the app with its device store and closes the store with the app.
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { Config } from '../config.js'
import { createFileStore } from '../store/file-store.js'
import type { DeviceStore } from '../store/store.js'

declare module 'fastify' {
  interface FastifyInstance {
    store: DeviceStore
  }
}

export interface StorePluginOptions {
  config: Readonly<Config>
  /** A store built by the caller (tests, another backend); otherwise the file store of STORE_FILE. */
  store?: DeviceStore
}

async function storePlugin (app: FastifyInstance, { config, store }: StorePluginOptions): Promise<void> {
  const log = app.log.child({ component: 'store' })
  const deviceStore = store ?? await createFileStore({
    path: config.storeFile,
    watch: config.storeWatch,
    settleMs: config.storeSettleMs,
    pollMs: config.storePollMs,
    maxShrinkPercent: config.storeMaxShrinkPercent,
    log,
    onReload: (outcome) => { app.metrics.storeReloaded('file', outcome) }
  })
  if (config.isExampleStore && store === undefined) {
    log.warn({ path: config.storeFile }, 'serving the bundled example store: set STORE_FILE to your own devices')
  }
  // Lookups are timed through the app's metrics; the store itself knows nothing of them.
  const served = app.metrics.instrumentStore(deviceStore)
  app.decorate('store', served)
  app.addHook('onClose', async () => { await served.close() })
}

export default fp(storePlugin, { name: 'store', fastify: '5.x', dependencies: ['metrics'] })
