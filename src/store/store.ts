// The device store interface: every backend (file, PostgreSQL, ...) implements DeviceStore.
import type { AppError } from '../errors.js'

/** One device as a store holds it. `deviceSecret` never leaves the service. */
export interface Device {
  productKey: string
  deviceKey: string
  deviceSecret: string
  enabled: boolean
}

/** What names a device. */
export interface DeviceKeys {
  productKey: string
  deviceKey: string
}

/** Counters of a cache in front of a remote store: plain numbers for /readyz and metrics. */
export interface CacheStats {
  size: number
  maxEntries: number
  /** Unknown devices remembered as unknown, in a cache of their own (CACHE_NEGATIVE_MAX_ENTRIES). */
  unknown: number
  maxUnknown: number
  /** Lookups answered from the cache, or by joining a query already running for the same device. */
  hits: number
  /** Lookups that queried the store. */
  misses: number
  /** hits / (hits + misses), 0 before the first lookup. */
  hitRate: number
  /** Lookups answered from an entry past its TTL because the store could not answer. */
  staleHits: number
  /** Lookups that failed because the store could not answer and no usable entry was cached. */
  failures: number
}

/** What /readyz reports about a store. Never contains a secret. */
export interface StoreHealth {
  /** True when lookups can be answered now. */
  ok: boolean
  /** Backend name, e.g. `file`. */
  kind: string
  /** One line a person can act on: what is loaded, or why the store is not ready. */
  detail: string
  devices?: number
  /** ISO time of the data now served. */
  loadedAt?: string
  /** The last reload that failed after the data now served was loaded (the old data stays in use). */
  lastReloadError?: { message: string, at: string }
  /** A database behind the store: whether it answered, its schema version, the connections of this replica's pool. */
  database?: { reachable: boolean, schemaVersion?: number, pool: { total: number, idle: number, waiting: number } }
  /** The cache in front of a remote store: entries held, and lookups answered from it (hits) or by the store (misses) since start. */
  cache?: CacheStats
  /** A new version that was not applied by itself because it would remove too many devices (the old data stays in use). */
  heldReload?: { message: string, devices: number, removed: number, at: string }
}

/**
 * A source of device secrets. Methods are async; a missing device is `undefined`, not an error.
 * A backend that cannot answer throws AppError STORE_UNAVAILABLE. Stores hold no business rules:
 * whether a disabled device may sign is the route's decision.
 */
export interface DeviceStore {
  readonly kind: string
  findDevice (productKey: string, deviceKey: string): Promise<Device | undefined>
  /**
   * Many lookups at once (a batch): the devices in the order of `keys`, `undefined` where there is
   * none. One call for a whole batch, so that a remote store can answer it with one query. A store
   * that can answer only some of the keys (a cache whose backend is down) answers the others with
   * their AppError, so that they fail alone; one that can answer none rejects.
   */
  findDevices (keys: readonly DeviceKeys[]): Promise<DeviceLookup[]>
  /**
   * A store with a cache in front of a remote backend: what the cache can answer now, without asking
   * the backend (the device, undefined for one remembered as unknown, NOT_CACHED for the rest).
   * A store that holds everything in memory has none: every lookup it answers costs nothing.
   */
  peekDevices? (keys: readonly DeviceKeys[]): Array<Device | undefined | typeof NOT_CACHED>
  checkHealth (): Promise<StoreHealth>
  /** Re-reads the source (SIGHUP). A failed reload keeps the old data and is reported by checkHealth. */
  reload? (): Promise<unknown>
  /**
   * A store with a cache in front of its backend: how many lookups the cache answered (hits) and
   * how many went to the backend (misses), counted since it opened. Read at each /metrics scrape.
   */
  cacheStats? (): { hits: number, misses: number }
  close (): Promise<void>
}

/**
 * What {@link DeviceStore.findDevices} answers for one key: the device, `undefined` where there is
 * none, or the AppError STORE_UNAVAILABLE of a key that a store answering some keys without its
 * backend (a cache during an outage) could not answer. Devices are plain objects, never errors.
 */
export type DeviceLookup = Device | undefined | AppError

/** What {@link DeviceStore.peekDevices} answers for a key whose answer would need the backend. */
export const NOT_CACHED: unique symbol = Symbol('not cached')

/** The lookup key for a device: the same `deviceKey&productKey` form as mqttUsername (`&` is in neither key). */
export function deviceId (productKey: string, deviceKey: string): string {
  return `${deviceKey}&${productKey}`
}
