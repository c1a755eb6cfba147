// A cache in front of a remote store (lru-cache): bounded, with a TTL, unknown devices kept apart, one query per missed device, stale answers through outages.
import { LRUCache } from 'lru-cache'
import { isAppError } from '../errors.js'
import { NOT_CACHED, deviceId, type CacheStats, type Device, type DeviceKeys, type DeviceLookup, type DeviceStore, type StoreHealth } from './store.js'

export interface CacheOptions {
  /** Most devices held; the least recently used go first. */
  maxEntries: number
  /** How long a device is served from the cache before it is read again. */
  ttlMs: number
  /** How long an unknown device is remembered as unknown (0: not at all). */
  negativeTtlMs: number
  /**
   * Most unknown devices remembered (0: none), in a cache of their own: a flood of made-up keys
   * evicts other unknown keys, never a device that exists.
   */
  negativeMaxEntries: number
  /** How long past its TTL an entry still answers while the store cannot. */
  staleMs: number
}

interface Entry {
  device: Device
  /** Epoch ms after which this entry no longer answers, even when the store is down. */
  usableUntil: number
  /** Served again after a failed refresh: counted as a stale hit. */
  stale: boolean
}

/** What a single lookup found, and whether a stale entry answered it. */
interface Answer {
  device: Device | undefined
  stale: boolean
}

/**
 * After a failed refresh, a stale entry answers for this long before the store is tried again for
 * it, so that an outage costs one attempt per device per second, not one per request.
 */
export const STALE_RECHECK_MS = 1000

/**
 * Wraps `inner` in a cache. A lookup the cache cannot answer asks the store; concurrent misses for
 * one device share that one call. When the store fails (STORE_UNAVAILABLE), a
 * device cached within TTL + staleMs is still answered; anything else gets the store's error, and in
 * a batch only the devices without a usable entry get it. An unknown device is remembered for
 * negativeTtlMs in a cache of its own. A secret rotated or a device disabled in the store is served
 * within ttlMs.
 */
export function createCachedStore (inner: DeviceStore, options: CacheOptions): DeviceStore {
  const { ttlMs, negativeTtlMs, negativeMaxEntries, staleMs } = options
  const counts = { hits: 0, misses: 0, staleHits: 0, failures: 0 }
  // Entries filled together (a restart, a warm-up) would all expire together and come back as one burst
  // of queries: each lives a random 90-100% of the TTL instead, which never serves one past the TTL.
  const ttlOf = (): number => Math.max(1, Math.round(ttlMs * (1 - Math.random() * 0.1)))
  const entry = (device: Device): Entry => ({ device, usableUntil: Date.now() + ttlMs + staleMs, stale: false })
  // lru-cache reads a ttl of 0 as "forever": with 0, an unknown device is not remembered at all.
  const unknown = negativeTtlMs === 0 || negativeMaxEntries === 0 ? undefined : new LRUCache<string, true>({ max: negativeMaxEntries, ttl: negativeTtlMs })

  // Only devices that exist enter it: a lookup of an unknown device must not take (evict) a place.
  const cache = new LRUCache<string, Entry>({
    max: options.maxEntries,
    ttl: ttlMs,
    // An expired entry stays (until evicted) as the answer of last resort during an outage.
    noDeleteOnStaleGet: true
  })
  /** The queries running for single devices: concurrent misses for one device share one. */
  const inflight = new Map<string, Promise<Answer>>()

  /** The store says there is no such device: remember that apart, and drop an old entry it may have had. */
  const forget = (id: string): void => {
    cache.delete(id)
    unknown?.set(id, true)
  }

  /**
   * The entry that answers for a device the store could not look up: one cached within TTL +
   * staleMs, which then answers for STALE_RECHECK_MS before the store is tried again for it.
   */
  const usableStale = (id: string): Entry | undefined => {
    const found = cache.peek(id, { allowStale: true })
    if (found === undefined || Date.now() > found.usableUntil) return undefined
    const stale = { ...found, stale: true }
    cache.set(id, stale, { ttl: STALE_RECHECK_MS })
    return stale
  }

  const lookUp = async (id: string, productKey: string, deviceKey: string): Promise<Answer> => {
    try {
      const device = await inner.findDevice(productKey, deviceKey)
      if (device === undefined) forget(id)
      else cache.set(id, entry(device), { ttl: ttlOf() })
      return { device, stale: false }
    } catch (err) {
      const stale = usableStale(id)
      if (stale === undefined) throw err
      return { device: stale.device, stale: true }
    }
  }

  const stats = (): CacheStats => {
    const asked = counts.hits + counts.misses
    return {
      size: cache.size,
      maxEntries: options.maxEntries,
      unknown: unknown?.size ?? 0,
      maxUnknown: unknown === undefined ? 0 : negativeMaxEntries,
      ...counts,
      hitRate: asked === 0 ? 0 : counts.hits / asked
    }
  }

  return {
    kind: inner.kind,
    async findDevice (productKey: string, deviceKey: string): Promise<Device | undefined> {
      const id = deviceId(productKey, deviceKey)
      if (unknown?.has(id) === true) {
        counts.hits++
        return undefined
      }
      const found = cache.get(id)
      if (found !== undefined) {
        if (found.stale) counts.staleHits++
        else counts.hits++
        return found.device
      }
      const running = inflight.get(id)
      let answer: Answer
      try {
        if (running !== undefined) {
          answer = await running
        } else {
          const lookup = lookUp(id, productKey, deviceKey)
          inflight.set(id, lookup)
          try {
            answer = await lookup
          } finally {
            inflight.delete(id)
          }
        }
      } catch (err) {
        counts.failures++
        throw err
      }
      if (answer.stale) counts.staleHits++
      // A lookup that joined a query already running for its device asked nothing of the store either.
      else if (running !== undefined) counts.hits++
      else counts.misses++
      return answer.device
    },
    async findDevices (keys: readonly DeviceKeys[]): Promise<DeviceLookup[]> {
      const results: DeviceLookup[] = keys.map(() => undefined)
      const missed = new Map<string, DeviceKeys>()
      keys.forEach((key, i) => {
        const id = deviceId(key.productKey, key.deviceKey)
        if (unknown?.has(id) === true) {
          counts.hits++
          return
        }
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
      // One call to the store for the whole batch's misses; when it fails, each of them fails alone.
      const asked = [...missed.values()]
      const answers = new Map<string, DeviceLookup>()
      try {
        const found = await inner.findDevices(asked)
        asked.forEach((key, i) => answers.set(deviceId(key.productKey, key.deviceKey), found[i]))
      } catch (err) {
        if (!isAppError(err)) throw err
        for (const id of missed.keys()) answers.set(id, err)
      }
      for (const [id, answer] of answers) {
        if (isAppError(answer)) continue
        if (answer === undefined) forget(id)
        else cache.set(id, entry(answer), { ttl: ttlOf() })
      }
      keys.forEach((key, i) => {
        const id = deviceId(key.productKey, key.deviceKey)
        if (!missed.has(id)) return
        const answer = answers.get(id)
        if (isAppError(answer)) {
          const stale = usableStale(id)
          if (stale === undefined) counts.failures++
          else counts.staleHits++
          results[i] = stale === undefined ? answer : stale.device
          return
        }
        counts.misses++
        results[i] = answer
      })
      return results
    },
    peekDevices (keys: readonly DeviceKeys[]): Array<Device | undefined | typeof NOT_CACHED> {
      return keys.map(({ productKey, deviceKey }) => {
        const id = deviceId(productKey, deviceKey)
        if (unknown?.has(id) === true) return undefined
        return cache.get(id)?.device ?? NOT_CACHED
      })
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
      unknown?.clear()
      await inner.close()
    }
  }
}
