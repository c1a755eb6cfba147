// GET /metrics: Prometheus metrics with prom-client, in a registry of the app's own; no label names a device, a caller or a secret.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import { normalizeSignMethod, type SignMethod } from '../core/sign-method.js'
import { isAppError } from '../errors.js'
import type { DeviceKeys, DeviceStore } from '../store/store.js'
import { CounterCells, HistogramCells } from './metric-cells.js'
import type { AdmissionStats } from './admission.js'
import type { RateLimitSharing } from './rate-limits.js'

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics
  }
}

/** What the rest of the app reports; every call does nothing when METRICS_ENABLED=false. */
export interface Metrics {
  /** The store with its lookups timed and counted (the store itself when metrics are off). */
  instrumentStore: (store: DeviceStore) => DeviceStore
  /** A reload attempt of the store and its outcome (`reloaded`, `failed`, `held`, ...). */
  storeReloaded: (store: string, outcome: string) => void
}

export interface MetricsOptions {
  enabled: boolean
  /** The sign method of a POST /sign that names none (SIGN_METHOD). */
  defaultSignMethod: SignMethod
  version: string
}

/** The label of requests that matched no route: one value for them all, never the URL a client sent. */
export const UNMATCHED_ROUTE = 'unmatched'

const PREFIX = 'enos_signer_'
/** The service answers in about a millisecond; a batch or a slow store can take seconds. */
const HTTP_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
/** From an in-memory map (microseconds) to a remote database (milliseconds). */
const STORE_BUCKETS = [0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1]
const ACCESS_CODES = new Set(['UNAUTHENTICATED', 'FORBIDDEN'])

const OFF: Metrics = { instrumentStore: (store) => store, storeReloaded: () => {} }

/** The metrics a request leaves behind once it is answered. */
function requestMetrics (registry: Registry, defaultSignMethod: SignMethod): (request: FastifyRequest, reply: FastifyReply) => void {
  const registers = [registry]
  // The count of a histogram (`_count`) is the request counter: one observation per request, not two.
  const duration = new HistogramCells(`${PREFIX}http_request_duration_seconds`,
    'HTTP requests by method, route pattern and status code, and how long they took to answer.',
    ['method', 'route', 'status_code'], HTTP_BUCKETS, registry)
  const signatures = new CounterCells(`${PREFIX}signatures_total`,
    'POST /sign requests with a valid body, by sign method and outcome: signed, or the error code.',
    ['sign_method', 'outcome'], registry)
  const batchItems = new Counter({
    name: `${PREFIX}batch_items_total`,
    help: 'Devices in POST /sign/batch requests, by outcome: signed or failed.',
    labelNames: ['outcome'],
    registers
  })
  const rateLimited = new Counter({
    name: `${PREFIX}rate_limited_total`,
    help: 'Requests refused with RATE_LIMITED, by route and limit: caller (RATE_LIMIT_PER_CALLER) or device (RATE_LIMIT_PER_DEVICE).',
    labelNames: ['route', 'limit'],
    registers
  })
  const accessRefused = new Counter({
    name: `${PREFIX}auth_failures_total`,
    help: 'Requests refused by access control, by route and code: UNAUTHENTICATED or FORBIDDEN.',
    labelNames: ['route', 'code'],
    registers
  })

  return (request, reply) => {
    const route = request.routeOptions.url ?? UNMATCHED_ROUTE
    duration.observe([request.method, route, reply.statusCode], reply.elapsedTime / 1000)
    const { outcome } = request
    if (outcome === null) return
    if (route === '/sign' && request.deviceRef !== null) {
      const named = (request.body as { signMethod?: string }).signMethod
      const method = named === undefined ? defaultSignMethod : normalizeSignMethod(named) ?? 'unsupported'
      signatures.inc([method, outcome])
    }
    const { batch } = request
    if (batch !== null) {
      batchItems.inc({ outcome: 'signed' }, batch.signed)
      batchItems.inc({ outcome: 'failed' }, batch.failed)
    }
    // The per-caller limit is checked when the request arrives, before its body names a device;
    // the per-device one only once it has (routes/sign.ts).
    if (outcome === 'RATE_LIMITED') rateLimited.inc({ route, limit: request.deviceRef === null ? 'caller' : 'device' })
    else if (ACCESS_CODES.has(outcome)) accessRefused.inc({ route, code: outcome })
  }
}

/** Store lookups, their latency and reloads; the store's own figures (devices, cache) read at each scrape. */
function storeMetrics (registry: Registry, store: () => DeviceStore): Metrics & { refresh: () => Promise<void> } {
  const registers = [registry]
  const lookups = new HistogramCells(`${PREFIX}store_lookup_duration_seconds`,
    'Store lookups by store kind, operation (find: POST /sign, find_many: a batch or a chunk of a stream) and result (ok or error), and how long they took.',
    ['store', 'operation', 'result'], STORE_BUCKETS, registry)
  const looked = new CounterCells(`${PREFIX}store_devices_looked_up_total`,
    'Devices asked of the store, by store kind and whether it holds them (found or missing).',
    ['store', 'result'], registry)
  const reloads = new Counter({
    name: `${PREFIX}store_reloads_total`,
    help: 'Store reload attempts by store kind and outcome: reloaded, unchanged, held (STORE_MAX_SHRINK_PERCENT), failed, changing.',
    labelNames: ['store', 'outcome'],
    registers
  })
  const ready = new Gauge({
    name: `${PREFIX}store_ready`,
    help: 'Whether the store can answer lookups now (1) or not (0), as /readyz reports it.',
    labelNames: ['store'],
    registers
  })
  const devices = new Gauge({ name: `${PREFIX}store_devices`, help: 'Devices in the store now.', labelNames: ['store'], registers })
  const loadedAt = new Gauge({
    name: `${PREFIX}store_loaded_timestamp_seconds`,
    help: 'When the data the store serves now was loaded (Unix time).',
    labelNames: ['store'],
    registers
  })
  // A counter the store keeps itself, read at each scrape: a gauge in prom-client terms, a counter in Prometheus'.
  const cacheLookups = new Gauge({
    name: `${PREFIX}store_cache_lookups_total`,
    help: 'Lookups answered from the store\'s cache (hit) or not (miss), for a store that has one.',
    labelNames: ['store', 'result'],
    registers
  })

  /** Reads what the store says of itself; called before each scrape is written. */
  async function refresh (): Promise<void> {
    const current = store()
    const health = await current.checkHealth().catch(() => undefined)
    ready.set({ store: current.kind }, health?.ok === true ? 1 : 0)
    if (health?.devices !== undefined) devices.set({ store: current.kind }, health.devices)
    if (health?.loadedAt !== undefined) loadedAt.set({ store: current.kind }, Date.parse(health.loadedAt) / 1000)
    const cache = current.cacheStats?.()
    if (cache !== undefined) {
      cacheLookups.set({ store: current.kind, result: 'hit' }, cache.hits)
      cacheLookups.set({ store: current.kind, result: 'miss' }, cache.misses)
    }
  }

  /** Seconds since `start` (performance.now() milliseconds) into the lookup histogram. */
  function timed (kind: string, operation: string, result: string, start: number): void {
    lookups.observe([kind, operation, result], (performance.now() - start) / 1000)
  }

  return {
    refresh,
    instrumentStore: (inner) => {
      const { kind } = inner
      return {
        // What else the store offers (the file store's check()) stays reachable; the interface's methods are called on the store itself.
        ...inner,
        kind,
        async findDevice (productKey: string, deviceKey: string) {
          const start = performance.now()
          let device
          try {
            device = await inner.findDevice(productKey, deviceKey)
          } catch (err) {
            timed(kind, 'find', 'error', start)
            throw err
          }
          timed(kind, 'find', 'ok', start)
          looked.inc([kind, device === undefined ? 'missing' : 'found'])
          return device
        },
        async findDevices (keys: readonly DeviceKeys[]) {
          const start = performance.now()
          let found
          try {
            found = await inner.findDevices(keys)
          } catch (err) {
            timed(kind, 'find_many', 'error', start)
            throw err
          }
          timed(kind, 'find_many', 'ok', start)
          let missing = 0
          let failed = 0
          for (const device of found) {
            if (device === undefined) missing++
            else if (isAppError(device)) failed++
          }
          looked.inc([kind, 'found'], found.length - missing - failed)
          looked.inc([kind, 'missing'], missing)
          return found
        },
        checkHealth: () => inner.checkHealth(),
        ...(inner.reload !== undefined && { reload: inner.reload.bind(inner) }),
        ...(inner.cacheStats !== undefined && { cacheStats: inner.cacheStats.bind(inner) }),
        close: () => inner.close()
      }
    },
    storeReloaded: (kind, outcome) => { reloads.inc({ store: kind, outcome }) }
  }
}

/** Whether the rate-limit counters are shared through Redis now, and how often the breaker opened; read at each scrape, only with RATE_LIMIT_REDIS_URL. */
function sharingMetrics (registry: Registry, sharing: () => RateLimitSharing | undefined): () => void {
  let metrics: { shared: Gauge, openings: Counter } | undefined
  let counted = 0
  return () => {
    const now = sharing()
    if (now === undefined) return
    metrics ??= {
      shared: new Gauge({
        name: `${PREFIX}rate_limit_shared`,
        help: 'Whether the rate-limit counters are shared through Redis now (1) or counted in this process alone (0: Redis down or not answering); only with RATE_LIMIT_REDIS_URL.',
        registers: [registry]
      }),
      // The rate limits keep the count; a counter here (a _total name), moved on by what it grew since the last scrape.
      openings: new Counter({
        name: `${PREFIX}rate_limit_breaker_openings_total`,
        help: 'Times a command to Redis failed or timed out while connected, so counting went on in this process alone until a check found Redis answering; only with RATE_LIMIT_REDIS_URL.',
        registers: [registry]
      })
    }
    metrics.shared.set(now.shared ? 1 : 0)
    metrics.openings.inc(now.openings - counted)
    counted = now.openings
  }
}

/** What admission control shed and holds in flight, read at each scrape (it counts in plain numbers: no metric work per shed request). */
function admissionMetrics (registry: Registry, stats: () => AdmissionStats): () => void {
  const shed = new Counter({
    name: `${PREFIX}requests_shed_total`,
    help: 'Requests answered 503 OVERLOADED by admission control, by reason: busy (OVERLOAD_BUSY_MS), queue (OVERLOAD_QUEUE_MS) or in_flight (OVERLOAD_MAX_IN_FLIGHT).',
    labelNames: ['reason'],
    registers: [registry]
  })
  const inFlight = new Gauge({ name: `${PREFIX}requests_in_flight`, help: 'Requests admitted and not yet answered (probes excluded).', registers: [registry] })
  const counted = { busy: 0, queue: 0, in_flight: 0 }
  return () => {
    const now = stats()
    for (const reason of ['busy', 'queue', 'in_flight'] as const) {
      shed.inc({ reason }, now.shed[reason] - counted[reason])
      counted[reason] = now.shed[reason]
    }
    inFlight.set(now.inFlight)
  }
}

async function metrics (app: FastifyInstance, { enabled, defaultSignMethod, version }: MetricsOptions): Promise<void> {
  if (!enabled) {
    app.decorate('metrics', OFF)
    return
  }
  // The app's own registry, not prom-client's global one: two apps in one process (tests) do not share counters.
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  new Gauge({ name: `${PREFIX}info`, help: 'Always 1; the version label says which release runs.', labelNames: ['version'], registers: [registry] })
    .set({ version }, 1)
  const stores = storeMetrics(registry, () => app.store)
  app.decorate('metrics', { instrumentStore: stores.instrumentStore, storeReloaded: stores.storeReloaded })
  const sharing = sharingMetrics(registry, () => app.limits.sharing())
  const admitted = admissionMetrics(registry, () => app.admission.stats())
  const observe = requestMetrics(registry, defaultSignMethod)
  app.addHook('onResponse', (request, reply, done) => {
    observe(request, reply)
    done()
  })

  // Open like /healthz: scraped from inside the network, and nothing in it is secret. Not in the
  // OpenAPI document: it is Prometheus' text format, not part of the JSON API.
  app.get('/metrics', { schema: { hide: true } }, async (_request, reply) => {
    // Each metric is collected at the same time as the others: what the store says is read first.
    await stores.refresh()
    sharing()
    admitted()
    const text = await registry.metrics()
    return reply.type(registry.contentType).send(text)
  })
}

export default fp(metrics, { name: 'metrics', fastify: '5.x' })
