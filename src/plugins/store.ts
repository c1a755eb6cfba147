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
    log
  })
  if (config.isExampleStore && store === undefined) {
    log.warn({ path: config.storeFile }, 'serving the bundled example store: set STORE_FILE to your own devices')
  }
  app.decorate('store', deviceStore)
  app.addHook('onClose', async () => { await deviceStore.close() })
}

export default fp(storePlugin, { name: 'store', fastify: '5.x' })
