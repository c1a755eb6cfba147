// Rate limits per caller and per device, with @fastify/rate-limit; counters shared through Redis when RATE_LIMIT_REDIS_URL is set.
import rateLimit from '@fastify/rate-limit'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { Redis } from 'ioredis'
import { fallbackStore } from '../auth/rate-limit-store.js'
import { AppError } from '../errors.js'
import { callerOf } from './auth.js'

export interface RateLimitOptions {
  /** Requests per minute per caller on the signing routes (a batch is one); 0: no limit. */
  perCaller: number
  /** POST /sign requests per minute per device; 0: no limit. */
  perDevice: number
  /** Redis shared by the replicas; undefined: each process counts alone. */
  redisUrl: string | undefined
}

/** What /readyz says about the counters. */
export interface RateLimitHealth {
  perCaller: number
  perDevice: number
  /** Whether the counters are shared with the other replicas now (Redis configured and reachable). */
  shared: boolean
  redis?: 'up' | 'down'
}

declare module 'fastify' {
  interface FastifyInstance {
    limits: {
      /** onRequest hook of the signing routes, after authentication; undefined when the limit is off (nothing to run per request). */
      perCaller: Limit | undefined
      /** Called by POST /sign once the body names the device and the caller may sign for it; undefined when the limit is off. */
      perDevice: Limit | undefined
      health: () => RateLimitHealth
    }
  }
}

/** Counts the request; throws AppError RATE_LIMITED (with Retry-After and the rate-limit headers) past the limit. */
export type Limit = (request: FastifyRequest, reply: FastifyReply) => Promise<void>

const MINUTE_MS = 60_000
/** At most one warning about Redis per this long: an outage must be loud, not flood the log. */
const WARN_EVERY_MS = 10_000

async function rateLimits (app: FastifyInstance, options: RateLimitOptions): Promise<void> {
  const log = app.log.child({ component: 'rate-limits' })
  const redis = options.redisUrl === undefined
    ? undefined
    : new Redis(options.redisUrl, {
      // Fail fast while Redis is away (count locally) instead of queueing commands behind requests.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: 1000,
      commandTimeout: 250,
      retryStrategy: (attempt) => Math.min(attempt * 250, 2000)
    })
  let warnedAt = 0
  const warn = (problem: string): void => {
    if (Date.now() - warnedAt < WARN_EVERY_MS) return
    warnedAt = Date.now()
    log.warn({ problem }, 'rate-limit Redis unreachable: counting in this process alone until it is back')
  }
  if (redis !== undefined) {
    redis.on('ready', () => {
      warnedAt = 0
      log.info('rate-limit counters shared through Redis')
    })
    // Never the URL: it may hold a password.
    redis.on('error', (err: Error) => warn(err.message))
    app.addHook('onClose', async () => { redis.disconnect() })
  }

  await app.register(rateLimit, {
    global: false,
    store: fallbackStore({ redis, isUp: () => redis?.status === 'ready', failed: (err) => warn(String(err?.message)) })
  })

  function limiter (max: number, key: (request: FastifyRequest) => string, what: (request: FastifyRequest) => string, variable: string): Limit | undefined {
    if (max === 0) return undefined
    const check = app.createRateLimit({ max, timeWindow: MINUTE_MS, keyGenerator: key })
    return async (request, reply) => {
      const result = await check(request)
      // isAllowed means exempt (an allow list); a counted request is refused only once isExceeded.
      if (result.isAllowed || !result.isExceeded) return
      reply.headers({ 'x-ratelimit-limit': String(max), 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': String(result.ttlInSeconds) })
      throw new AppError('RATE_LIMITED', `more than ${max} requests a minute ${what(request)} (${variable}); retry after ${result.ttlInSeconds} s`, { retryAfter: result.ttlInSeconds })
    }
  }

  const deviceOf = (request: FastifyRequest): { productKey: string, deviceKey: string } => request.body as { productKey: string, deviceKey: string }
  app.decorate('limits', {
    perCaller: limiter(options.perCaller, (request) => {
      const caller = callerOf(request)
      return caller.kind === 'open' ? `ip:${request.ip}` : `caller:${caller.name}`
    }, () => 'from this caller', 'RATE_LIMIT_PER_CALLER'),
    perDevice: limiter(options.perDevice, (request) => {
      const { productKey, deviceKey } = deviceOf(request)
      return `device:${productKey}/${deviceKey}`
    }, (request) => `for device "${deviceOf(request).deviceKey}" of product "${deviceOf(request).productKey}"`, 'RATE_LIMIT_PER_DEVICE'),
    health: (): RateLimitHealth => ({
      perCaller: options.perCaller,
      perDevice: options.perDevice,
      shared: redis?.status === 'ready',
      ...(redis !== undefined && { redis: redis.status === 'ready' ? 'up' as const : 'down' as const })
    })
  })
}

export default fp(rateLimits, { name: 'rate-limits', fastify: '5.x', dependencies: ['auth'] })
