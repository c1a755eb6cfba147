// The store contract against a real PostgreSQL: the PostgreSQL store alone, and behind the cache.
import t from 'tap'
import { createCachedStore } from '../../src/store/cached-store.js'
import { createPostgresStore } from '../../src/store/postgres-store.js'
import { createDeviceDatabase, startPostgres } from '../pg-helper.js'
import { runStoreContract } from './contract.js'

const silent = { warn () {} }
const postgres = await startPostgres(t)

runStoreContract(t, 'PostgreSQL store', async (_t, devices) => {
  const url = await createDeviceDatabase(postgres, devices)
  return createPostgresStore({ url, poolMax: 2, timeoutMs: 10_000, log: silent })
})

runStoreContract(t, 'PostgreSQL store behind the cache', async (_t, devices) => {
  const url = await createDeviceDatabase(postgres, devices)
  const store = await createPostgresStore({ url, poolMax: 2, timeoutMs: 10_000, log: silent })
  return createCachedStore(store, { maxEntries: 100, ttlMs: 60_000, negativeTtlMs: 5000, negativeMaxEntries: 1000, staleMs: 60_000 })
})
