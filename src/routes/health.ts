// GET /healthz (the process is alive) and GET /readyz (the store can answer lookups): open, so it names no path, address or driver error.
import { z } from 'zod'
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import { STORE_RETRY_AFTER_SECONDS } from '../errors.js'
import { COMMON_ERRORS, errorBodySchema, errorResponses } from '../schemas/error.js'
import { RETRY_AFTER_HEADER, jsonResponse } from '../schemas/response.js'
import type { StoreHealth } from '../store/store.js'

const storeHealthSchema = z.object({
  ok: z.boolean(),
  kind: z.string(),
  detail: z.string(),
  devices: z.number().int().optional(),
  loadedAt: z.string().optional(),
  lastReloadError: z.object({ message: z.string(), at: z.string() }).optional()
    .describe('The last reload that failed; the data loaded at loadedAt is still served.'),
  heldReload: z.object({ message: z.string(), devices: z.number().int(), removed: z.number().int(), at: z.string() }).optional()
    .describe('A changed file not applied by itself because it would remove too many devices (STORE_MAX_SHRINK_PERCENT); SIGHUP applies it.'),
  database: z.object({
    reachable: z.boolean(),
    schemaVersion: z.number().int().optional(),
    pool: z.object({ total: z.number().int(), idle: z.number().int(), waiting: z.number().int() })
      .describe("This replica's connections: open, idle, and lookups waiting for one (DATABASE_POOL_MAX).")
  }).optional().describe('STORE=postgres: whether PostgreSQL answered now, and its schema version.'),
  cache: z.object({
    size: z.number().int(),
    maxEntries: z.number().int(),
    unknown: z.number().int().describe('Unknown devices remembered as unknown, in a cache of their own (CACHE_NEGATIVE_MAX_ENTRIES): they never take the place of a device.'),
    maxUnknown: z.number().int(),
    hits: z.number().int(),
    misses: z.number().int(),
    hitRate: z.number(),
    staleHits: z.number().int().describe('Lookups answered past their TTL because PostgreSQL could not answer.'),
    failures: z.number().int().describe('Lookups that got 503 STORE_UNAVAILABLE: PostgreSQL could not answer and nothing usable was cached.')
  }).optional().describe('STORE=postgres: the cache in front of PostgreSQL, counted since start.')
}).meta({ id: 'StoreHealth' })

const reloadErrorSchema = z.object({ message: z.string(), at: z.string() })

const accessSchema = z.object({
  mode: z.enum(['token', 'mtls', 'none']).describe('AUTH_MODE in force.'),
  tokens: z.object({ tokens: z.number().int(), loadedAt: z.string(), lastReloadError: reloadErrorSchema.optional() }).optional()
    .describe('AUTH_TOKENS_FILE: how many tokens it holds; a failed reload keeps the previous ones.'),
  rateLimits: z.object({
    perCaller: z.number().int(),
    perDevice: z.number().int(),
    batchItemsPerCaller: z.number().int(),
    verifyPerDevice: z.number().int(),
    verifyPerCaller: z.number().int(),
    shared: z.boolean().describe('Counters shared with the other replicas through Redis now.'),
    redis: z.enum(['up', 'down', 'unresponsive']).optional()
      .describe('RATE_LIMIT_REDIS_URL: up; down: not connected; unresponsive: connected, but a command failed or timed out and no check has found it answering since (counting is local meanwhile).')
  }),
  tls: z.object({ lastReloadError: reloadErrorSchema.optional() }).optional()
}).meta({ id: 'AccessHealth' })

export type AccessHealth = z.infer<typeof accessSchema>

const readySchema = z.object({
  status: z.enum(['ready', 'unavailable']),
  store: storeHealthSchema,
  access: accessSchema.optional().describe('Access control, rate limits and TLS: for operators; they do not decide readiness.')
})

export interface HealthRouteOptions {
  /** What access control, rate limits and TLS look like now. */
  access?: () => AccessHealth
  /** The files the service reads, by the variable that names them: /readyz shows the variable, never the path. */
  files?: Readonly<Record<string, string | undefined>>
}

/** An absolute path in quotes, as Node's and OpenSSL's messages quote one. */
const QUOTED_PATH = /(["'])\/[^"'\n]*\1/g

/**
 * The text with every path of `files` replaced by the name of its variable, and any other quoted
 * absolute path by `[path]`: /readyz is open to anyone who can reach the port, and a path tells
 * them how the host is laid out. What helps (a line number, an errno code) stays.
 */
export function withoutPaths (text: string, files: Readonly<Record<string, string | undefined>>): string {
  const named = Object.entries(files).filter((entry): entry is [string, string] => entry[1] !== undefined && entry[1].length > 0)
    // The longest first: a path that holds another is replaced whole.
    .sort(([, a], [, b]) => b.length - a.length)
  let result = text
  for (const [name, path] of named) result = result.replaceAll(path, name)
  return result.replace(QUOTED_PATH, '[path]')
}

/** Every string of a /readyz body (details, reload errors), without paths. */
export function scrubbed<T> (value: T, files: Readonly<Record<string, string | undefined>>): T {
  if (typeof value === 'string') return withoutPaths(value, files) as T
  if (Array.isArray(value)) return value.map((item: unknown) => scrubbed(item, files)) as T
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, scrubbed(item, files)])) as T
  }
  return value
}

/** Said when the store cannot even report its health: the words are ours, the cause goes to the log. */
export const HEALTH_CHECK_FAILED = 'the store did not answer its health check (the cause is in the service\'s log)'

const healthRoutes: FastifyPluginAsyncZod<HealthRouteOptions> = async (app, { access, files = {} }) => {
  app.get('/healthz', {
    schema: {
      tags: ['health'],
      operationId: 'healthz',
      summary: 'Liveness: the process is up',
      response: {
        200: jsonResponse(z.object({ status: z.literal('ok') }), 'The process is up and answering.'),
        ...errorResponses({ 500: COMMON_ERRORS[500] })
      }
    }
  }, async () => ({ status: 'ok' as const }))

  app.get('/readyz', {
    schema: {
      tags: ['health'],
      operationId: 'readyz',
      summary: 'Readiness: the device store is loaded and reachable',
      response: {
        200: jsonResponse(readySchema, 'Ready: the store is loaded and answers lookups.'),
        // While the service stops, the request guard answers 503 SHUTTING_DOWN in the error body instead.
        503: jsonResponse(z.union([readySchema, errorBodySchema]),
          'Not ready: the store cannot answer (store.detail says why), or the service is stopping (the Error body, SHUTTING_DOWN); retry after Retry-After seconds.', RETRY_AFTER_HEADER),
        ...errorResponses({ 500: COMMON_ERRORS[500] })
      }
    }
  }, async (request, reply) => {
    let store: StoreHealth
    try {
      store = await app.store.checkHealth()
    } catch (err) {
      request.log.error({ err }, 'store health check failed')
      // A store that cannot even report its health is unavailable; the message is ours, not the backend's.
      store = { ok: false, kind: app.store.kind, detail: HEALTH_CHECK_FAILED }
    }
    if (!store.ok) {
      request.outcome = 'STORE_UNAVAILABLE'
      reply.code(503).header('retry-after', String(STORE_RETRY_AFTER_SECONDS))
    }
    return scrubbed({ status: store.ok ? 'ready' as const : 'unavailable' as const, store, ...(access !== undefined && { access: access() }) }, files)
  })
}

export default healthRoutes
