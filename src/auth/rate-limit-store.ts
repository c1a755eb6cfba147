// Rate-limit counters shared through Redis by the replicas, falling back to this process's own counters while Redis is away.
import { createRequire } from 'node:module'

/** The counter store of @fastify/rate-limit (its LocalStore and RedisStore, and this one). */
export interface CounterStore {
  incr (key: string, callback: (err: Error | null, result?: { current: number, ttl: number }) => void, timeWindow: number, max: number): void
  child (options: object): CounterStore
}

type StoreClass<A extends unknown[]> = new (...args: A) => CounterStore

// The plugin's own stores, reused rather than written again; the package has no `exports`, so the
// files are reachable, and they have no types: these are the constructors as the plugin calls them.
const require = createRequire(import.meta.url)
const LocalStore = require('@fastify/rate-limit/store/LocalStore.js') as StoreClass<[continueExceeding: boolean, exponentialBackoff: boolean, cache?: number]>
const RedisStore = require('@fastify/rate-limit/store/RedisStore.js') as StoreClass<[continueExceeding: boolean, exponentialBackoff: boolean, redis: unknown, key?: string]>

/** The link to Redis, as the store needs it. */
export interface SharedCounters {
  /** An ioredis client; undefined: counters are this process's alone. */
  redis: unknown
  /** Whether Redis can be asked now (connected); when not, counting goes on locally. */
  isUp (): boolean
  /** Called when asking Redis failed: counting goes on locally, loudly. */
  failed (err: Error | null): void
}

/** Distinct from other users of the same Redis. */
export const REDIS_KEY_PREFIX = 'enos-mqtt-signer:rate:'

/** Local LRU size: callers and devices counted at once when Redis is not there. */
const LOCAL_KEYS = 100_000

class FallbackStore implements CounterStore {
  private readonly local: CounterStore
  private readonly remote: CounterStore | undefined
  private readonly shared: SharedCounters

  constructor (local: CounterStore, remote: CounterStore | undefined, shared: SharedCounters) {
    this.local = local
    this.remote = remote
    this.shared = shared
  }

  incr (key: string, callback: Parameters<CounterStore['incr']>[1], timeWindow: number, max: number): void {
    const { local, remote, shared } = this
    if (remote === undefined || !shared.isUp()) {
      local.incr(key, callback, timeWindow, max)
      return
    }
    remote.incr(key, (err, result) => {
      if (err === null && result !== undefined) {
        callback(null, result)
        return
      }
      shared.failed(err)
      local.incr(key, callback, timeWindow, max)
    }, timeWindow, max)
  }

  child (options: object): CounterStore {
    return new FallbackStore(this.local.child({ ...options, cache: LOCAL_KEYS }), this.remote?.child(options), this.shared)
  }
}

/** The store class to give @fastify/rate-limit: it builds one store per limiter through child(). */
export function fallbackStore (shared: SharedCounters): new () => CounterStore {
  return class extends FallbackStore {
    constructor () {
      super(new LocalStore(false, false, LOCAL_KEYS), shared.redis === undefined ? undefined : new RedisStore(false, false, shared.redis, REDIS_KEY_PREFIX), shared)
    }
  }
}
