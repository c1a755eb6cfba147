// A cache in front of a remote store (lru-cache): bounded, with a TTL, negative entries, one query per missed device, stale answers through outages.
import { LRUCache } from 'lru-cache'
import { deviceId, type CacheStats, type Device, type DeviceKeys, type DeviceStore, type StoreHealth } from './store.js'

export interface CacheOptions {
  /** Most devices held; the least recently used go first. */
  maxEntries: number
  /** How long a device is served from the cache before it is read again. */
  ttlMs: number
  /** How long an unknown device is remembered as unknown (0: not at all). */
  negativeTtlMs: number
  /** How long past its TTL an entry still answers while the store cannot. */
  staleMs: number
}

interface Entry {
  device: Device | undefined
  /** Epoch ms after which this entry no longer answers, even when the store is down. */
  usableUntil: number
  /** Served again after a failed refresh: counted as a stale hit. */
  stale: boolean
}

/**
 * After a failed refresh, a stale entry answers for this long before the store is tried again for
 * it, so that an outage costs one attempt per device per second, not one per request.
 */
export const STALE_RECHECK_MS = 1000

/**
 * Wraps `inner` in a cache. A lookup the cache cannot answer asks the store; concurrent misses for
 * one device share that one call (lru-cache's fetch). When the store fails (STORE_UNAVAILABLE), a
 * device cached within TTL + staleMs is still answered; anything else gets the store's error.
 * A secret rotated or a device disabled in the store is served within ttlMs.
 */
export function createCachedStore (inner: DeviceStore, options: CacheOptions): DeviceStore {
  const { ttlMs, negativeTtlMs, staleMs } = options
  const counts = { hits: 0, misses: 0, staleHits: 0, failures: 0 }
  // Entries filled together (a restart, a warm-up) would all expire together and come back as one burst
  // of queries: each lives a random 90-100% of the TTL instead, which never serves one past the TTL.
  const ttlOf = (): number => Math.max(1, Math.round(ttlMs * (1 - Math.random() * 0.1)))
  const entry = (device: Device | undefined): Entry => ({ device, usableUntil: Date.now() + (device === undefined ? negativeTtlMs : ttlMs) + staleMs, stale: false })

  const cache = new LRUCache<string, Entry, DeviceKeys>({
    max: options.maxEntries,
    ttl: ttlMs,
    // An expired entry stays (until evicted) as the answer of last resort during an outage.
    noDeleteOnStaleGet: true,
    async fetchMethod (_id, previous, { options: set, context }) {
      try {
        const device = await inner.findDevice(context.productKey, context.deviceKey)
        if (device !== undefined) {
          set.ttl = ttlOf()
          return entry(device)
        }
        // lru-cache reads a ttl of 0 as "forever": an unknown device is then not cached at all.
        if (negativeTtlMs === 0) return undefined
        set.ttl = negativeTtlMs
        return entry(undefined)
      } catch (err) {
        if (previous === undefined || Date.now() > previous.usableUntil) throw err
        set.ttl = STALE_RECHECK_MS
        return { ...previous, stale: true }
      }
    }
  })

  /** Counts what answered a lookup. */
  const count = (found: Entry | undefined, status: LRUCache.Status<string, Entry, DeviceKeys>): void => {
    if (found?.stale === true) counts.staleHits++
    // A lookup that joined a query already running for its device asked nothing of the store either.
    else if (status.fetch === 'hit' || status.fetch === 'inflight') counts.hits++
    else counts.misses++
  }

  const stats = (): CacheStats => {
    const asked = counts.hits + counts.misses
    return { size: cache.size, maxEntries: options.maxEntries, ...counts, hitRate: asked === 0 ? 0 : counts.hits / asked }
  }

  return {
    kind: inner.kind,
    async findDevice (productKey: string, deviceKey: string): Promise<Device | undefined> {
      const status: LRUCache.Status<string, Entry, DeviceKeys> = {}
      try {
        const found = await cache.fetch(deviceId(productKey, deviceKey), { context: { productKey, deviceKey }, status })
        count(found, status)
        return found?.device
      } catch (err) {
        counts.failures++
        throw err
      }
    },
    async findDevices (keys: readonly DeviceKeys[]): Promise<Array<Device | undefined>> {
      const results: Array<Device | undefined> = keys.map(() => undefined)
      const missed = new Map<string, DeviceKeys>()
      keys.forEach((key, i) => {
        const id = deviceId(key.productKey, key.deviceKey)
        const found = cache.get(id)
        if (found === undefined) {
          missed.set(id, key)
          return
        }
        if (found.stale) counts.staleHits++
        else counts.hits++
        results[i] = found.device
      })
      if (missed.size === 0) return results
      // One call to the store for the whole batch's misses.
      const asked = [...missed.values()]
      let answers: Array<Device | undefined>
      try {
        answers = await inner.findDevices(asked)
      } catch (err) {
        return answerStale(keys, results, missed, err)
      }
      const fresh = new Map<string, Device | undefined>()
      asked.forEach((key, i) => {
        const id = deviceId(key.productKey, key.deviceKey)
        const device = answers[i]
        fresh.set(id, device)
        if (device !== undefined) cache.set(id, entry(device), { ttl: ttlOf() })
        else if (negativeTtlMs > 0) cache.set(id, entry(undefined), { ttl: negativeTtlMs })
      })
      keys.forEach((key, i) => {
        const id = deviceId(key.productKey, key.deviceKey)
        if (!missed.has(id)) return
        counts.misses++
        results[i] = fresh.get(id)
      })
      return results
    },
    async checkHealth (): Promise<StoreHealth> {
      const health = await inner.checkHealth()
      const cached = stats()
      const detail = health.ok ? health.detail : `${health.detail}; the ${cached.size} cached devices keep signing until their entries are ${staleMs} ms past their TTL`
      return { ...health, detail, cache: cached }
    },
    cacheStats: () => ({ hits: counts.hits, misses: counts.misses }),
    async close (): Promise<void> {
      cache.clear()
      await inner.close()
    }
  }

  /** The store failed a batch: answer it from usable stale entries, or fail it whole. */
  function answerStale (keys: readonly DeviceKeys[], results: Array<Device | undefined>, missed: Map<string, DeviceKeys>, err: unknown): Array<Device | undefined> {
    const now = Date.now()
    const stale: Array<[number, Entry]> = []
    for (const [i, key] of keys.entries()) {
      const id = deviceId(key.productKey, key.deviceKey)
      if (!missed.has(id)) continue
      const found = cache.peek(id, { allowStale: true })
      if (found === undefined || now > found.usableUntil) {
        counts.failures++
        throw err
      }
      stale.push([i, found])
    }
    for (const [i, found] of stale) {
      counts.staleHits++
      results[i] = found.device
    }
    return results
  }
}
