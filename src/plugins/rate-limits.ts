// Rate limits per caller, per device and per batch item, in one-minute windows; counters shared through Redis when RATE_LIMIT_REDIS_URL is set.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { Redis } from 'ioredis'
import { Counters, type CounterKey } from '../auth/rate-limit-store.js'
import { AppError } from '../errors.js'
import { callerOf } from './auth.js'

export interface RateLimitOptions {
  /** Requests per minute per caller on POST /sign and POST /sign/batch (a batch is one); 0: no limit. */
  perCaller: number
  /** Signatures per minute per device, POST /sign and batch items together; 0: no limit. */
  perDevice: number
  /** Batch items (and stream lines) per minute per caller; 0: no limit. */
  batchItemsPerCaller: number
  /** POST /verify attempts per minute per device; 0: no limit. */
  verifyPerDevice: number
  /** POST /verify requests per minute per caller; 0: no limit. */
  verifyPerCaller: number
  /** Redis shared by the replicas; undefined: each process counts alone. */
  redisUrl: string | undefined
  /** Epoch milliseconds the windows are counted by; the default is Date.now. */
  clock?: () => number
}

/** What /readyz says about the counters. */
export interface RateLimitHealth {
  perCaller: number
  perDevice: number
  batchItemsPerCaller: number
  verifyPerDevice: number
  verifyPerCaller: number
  /** Whether the counters are shared with the other replicas now (Redis configured, reachable and answering). */
  shared: boolean
  /** up; down: not connected; unresponsive: connected, but a command failed or timed out and no check has found it answering since. */
  redis?: 'up' | 'down' | 'unresponsive'
}

/** What /metrics says about sharing the counters through Redis; undefined without RATE_LIMIT_REDIS_URL. */
export interface RateLimitSharing {
  shared: boolean
  /** Times the breaker opened (a command to Redis failed or timed out) since the start. */
  openings: number
}

/** A device, as the limits name it. */
export interface DeviceKeys {
  productKey: string
  deviceKey: string
}

/** The limits of one batch request, item by item: which items of a group are over a limit. */
export interface BatchLimits {
  /**
   * Counts `count` items against the caller's RATE_LIMIT_BATCH_ITEMS_PER_CALLER and answers how
   * many of them, the first ones, are within it; undefined: all of them (no limit).
   */
  items (count: number): number | undefined | Promise<number | undefined>
  /** The RATE_LIMITED error of an item over the items limit. */
  itemsRefusal (): AppError
  /**
   * Counts one signature for each device (found in the store) against RATE_LIMIT_PER_DEVICE and
   * answers, for each, its refusal when it is over; undefined: none is over (or no limit).
   */
  devices (devices: readonly DeviceKeys[]): Array<AppError | undefined> | undefined | Promise<Array<AppError | undefined> | undefined>
}

declare module 'fastify' {
  interface FastifyInstance {
    limits: {
      /** onRequest hook of the signing routes, after authentication; undefined when the limit is off (nothing to run per request). */
      perCaller: Limit | undefined
      /** onRequest hook of POST /verify (RATE_LIMIT_VERIFY_PER_CALLER, off by default). */
      verifyPerCaller: Limit | undefined
      /**
       * Called by POST /sign once the store has found the device; undefined when the limit is off.
       * Synchronous when counting locally (throws the refusal); a promise only while counting through Redis.
       */
      perDevice: ((request: FastifyRequest, reply: FastifyReply, device: DeviceKeys) => void | Promise<void>) | undefined
      /** Called by POST /verify once the store has found the device: its refusal when it is over; undefined when the limit is off. */
      verifyPerDevice: ((device: DeviceKeys) => string | undefined | Promise<string | undefined>) | undefined
      /** The per-item limits of one POST /sign/batch request. */
      batch: (request: FastifyRequest) => BatchLimits
      health: () => RateLimitHealth
      /** Undefined without RATE_LIMIT_REDIS_URL. */
      sharing: () => RateLimitSharing | undefined
    }
  }
}

/**
 * An onRequest hook that counts the request; past the limit it ends the hook with AppError
 * RATE_LIMITED (with Retry-After and the rate-limit headers). Callback-style, so that counting
 * locally makes no promise and waits for no microtask; only a count through Redis waits.
 */
export type Limit = (request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void) => void

const MINUTE_MS = 60_000
/** At most one warning about Redis per this long: an outage must be loud, not flood the log. */
const WARN_EVERY_MS = 10_000
/** How long a command to Redis may take before the counting goes on locally (and the breaker opens). */
export const REDIS_COMMAND_TIMEOUT_MS = 250
/** While the breaker is open, Redis is asked (PING) this often whether it answers again. */
export const REDIS_PROBE_EVERY_MS = 500

/**
 * Who a request comes from, for the per-caller limits: the token's name or the certificate's
 * device; when open, the client address, IPv6 by its /64 (one host's, or one site's, addresses:
 * a single machine may use any address of its /64) and an IPv4-mapped IPv6 address as the IPv4 one.
 * A fleet token is not counted by RATE_LIMIT_PER_CALLER, but what is still counted per caller (the
 * unknown devices it may look up) is counted per token and client address: whoever holds a copy
 * of it cannot spend that budget for the whole fleet.
 */
export function callerKey (request: FastifyRequest): string {
  const caller = callerOf(request)
  if (caller.kind === 'open') return `ip:${addressKey(request.ip)}`
  // A space is in no token name: no other caller's key can be this one.
  return caller.fleet === true ? `caller:${caller.name} ip:${addressKey(request.ip)}` : `caller:${caller.name}`
}

/**
 * An IPv4 address as it is; an IPv6 address as its /64 prefix, in one spelling. A request whose
 * connection is already gone has no address (Node's request.ip is then undefined): it gets a key
 * no address has, instead of a TypeError (a 500 no one receives, and an error line).
 */
export function addressKey (ip: string | undefined): string {
  if (ip === undefined) return '(gone)'
  if (!ip.includes(':')) return ip
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(ip)
  if (mapped !== null) return mapped[1] as string
  const address = ip.split('%')[0] as string
  const [head = '', tail] = address.split('::')
  const groups = (part: string): string[] => part === '' ? [] : part.split(':').flatMap((group) => group.includes('.') ? ['0', '0'] : [group])
  const front = groups(head)
  const back = tail === undefined ? [] : groups(tail)
  const all = [...front, ...Array<string>(Math.max(0, 8 - front.length - back.length)).fill('0'), ...back]
  return all.slice(0, 4).map((group) => Number.parseInt(group, 16).toString(16)).join(':') + '::/64'
}

const secondsUntil = (endsAt: number, now: number): number => Math.max(1, Math.ceil((endsAt - now) / 1000))

/** What Counters.add answers. */
type Counted = { counts: number[], window: { endsAt: number } }

async function rateLimits (app: FastifyInstance, options: RateLimitOptions): Promise<void> {
  const log = app.log.child({ component: 'rate-limits' })
  const redis = options.redisUrl === undefined
    ? undefined
    : new Redis(options.redisUrl, {
      // Fail fast while Redis is away (count locally) instead of queueing commands behind requests.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: 1000,
      commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
      retryStrategy: (attempt) => Math.min(attempt * 250, 2000)
    })
  let warnedAt = 0
  const warn = (problem: string): void => {
    if (Date.now() - warnedAt < WARN_EVERY_MS) return
    warnedAt = Date.now()
    log.warn({ problem }, 'rate-limit Redis unreachable: counting in this process alone until it is back')
  }
  // The breaker: a command that failed or timed out while connected opens it, and until a PING (or
  // a reconnection's ready check) is answered, counting is local and synchronous, so a Redis that
  // hangs with its connection up costs no more than one that is gone: no request waits for it.
  let answering = true
  let openings = 0
  let probe: NodeJS.Timeout | undefined
  // A flapping Redis (PING answered, the next count timing out) opens it again and again: one warning per WARN_EVERY_MS, and its closing.
  let loggedAt = -WARN_EVERY_MS
  let loud = false
  const shut = (): void => {
    answering = true
    clearInterval(probe)
  }
  const open = (problem: string): void => {
    answering = false
    openings++
    loud = Date.now() - loggedAt >= WARN_EVERY_MS
    if (loud) {
      loggedAt = Date.now()
      log.warn({ problem, openings }, `rate-limit Redis not answering: counting in this process alone, asking it again every ${REDIS_PROBE_EVERY_MS} ms`)
    }
    // One PING at a time: it times out (REDIS_COMMAND_TIMEOUT_MS) before the next; while Redis is
    // not connected it fails at once, and the reconnection's ready check shuts the breaker.
    probe = setInterval(() => {
      redis?.ping().then(() => {
        shut()
        if (loud) log.info('rate-limit Redis answering again: counters shared through Redis')
      }, () => {})
    }, REDIS_PROBE_EVERY_MS).unref()
  }
  if (redis !== undefined) {
    redis.on('ready', () => {
      warnedAt = 0
      shut()
      log.info('rate-limit counters shared through Redis')
    })
    // Never the URL: it may hold a password.
    redis.on('error', (err: Error) => warn(err.message))
    app.addHook('onClose', async () => {
      clearInterval(probe)
      redis.disconnect()
    })
  }
  const isUp = (): boolean => answering && redis?.status === 'ready'
  // Commands already sent when the breaker opened fail too: one opening for them all.
  const failed = (err: Error): void => { if (answering) open(err.message) }
  // One set of counters per limit: keys of one limit never crowd out those of another.
  const shared = { redis, isUp, failed }
  const clock = options.clock ?? Date.now
  const counters = (name: string): Counters => new Counters(name, MINUTE_MS, shared, clock)

  function requestLimit (name: string, max: number, what: string, variable: string): Limit | undefined {
    if (max === 0) return undefined
    const counts = counters(name)
    const check = ({ counts: [current = 0], window }: Counted, reply: FastifyReply, done: (err?: Error) => void): void => {
      done(current <= max ? undefined : refusal(reply, max, window.endsAt, `more than ${max} requests a minute ${what} (${variable})`))
    }
    // Fastify's hook runner answers what a hook throws (callerKey's INTERNAL) as it answers done(err).
    return (request, reply, done) => {
      // A fleet token is many devices, each held to RATE_LIMIT_PER_DEVICE: one budget for them all would cap the fleet's boot.
      if (request.caller?.fleet === true) {
        done()
        return
      }
      const added = counts.add([{ group: '', key: callerKey(request) }])
      if (added instanceof Promise) added.then((result) => { check(result, reply, done) }, done)
      else check(added, reply, done)
    }
  }

  /** The RATE_LIMITED error of a limit, its rate-limit headers set on the reply. */
  function refusal (reply: FastifyReply, max: number, endsAt: number, message: string): AppError {
    const retryAfter = secondsUntil(endsAt, clock())
    reply.headers({ 'x-ratelimit-limit': String(max), 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': String(retryAfter) })
    return new AppError('RATE_LIMITED', `${message}; retry after ${retryAfter} s`, { retryAfter })
  }

  const deviceKey = ({ productKey, deviceKey }: DeviceKeys): CounterKey => ({ group: productKey, key: deviceKey })
  const deviceMessage = (max: number, { productKey, deviceKey }: DeviceKeys): string =>
    `more than ${max} signatures a minute for device "${deviceKey}" of product "${productKey}" (RATE_LIMIT_PER_DEVICE)`
  const devices = options.perDevice === 0 ? undefined : counters('device')
  const items = options.batchItemsPerCaller === 0 ? undefined : counters('items')
  const verifyDevices = options.verifyPerDevice === 0 ? undefined : counters('verify-device')

  const overDevice = ({ counts: [current = 0], window }: Counted, reply: FastifyReply, device: DeviceKeys): void => {
    if (current > options.perDevice) throw refusal(reply, options.perDevice, window.endsAt, deviceMessage(options.perDevice, device))
  }
  // Synchronous when counting locally: no promise for POST /sign to wait on.
  const perDevice = devices === undefined
    ? undefined
    : (_request: FastifyRequest, reply: FastifyReply, device: DeviceKeys): void | Promise<void> => {
        const added = devices.add([deviceKey(device)])
        if (added instanceof Promise) return added.then((result) => { overDevice(result, reply, device) })
        overDevice(added, reply, device)
      }

  const overVerify = ({ counts: [current = 0] }: { counts: number[] }): string | undefined =>
    current > options.verifyPerDevice ? 'more attempts a minute than RATE_LIMIT_VERIFY_PER_DEVICE' : undefined
  // Synchronous when counting locally: /verify is a broker's hot path.
  function countVerify (counts: Counters, device: DeviceKeys): string | undefined | Promise<string | undefined> {
    const added = counts.add([deviceKey(device)])
    return added instanceof Promise ? added.then(overVerify) : overVerify(added)
  }
  const verifyPerDevice = verifyDevices === undefined ? undefined : (device: DeviceKeys) => countVerify(verifyDevices, device)

  function batch (request: FastifyRequest): BatchLimits {
    const caller = { group: '', key: callerKey(request) }
    let itemsEndAt = 0
    const itemsMax = options.batchItemsPerCaller
    const deviceMax = options.perDevice
    const withinItems = ({ counts: [current = 0], window }: { counts: number[], window: { endsAt: number } }, count: number): number => {
      itemsEndAt = window.endsAt
      return Math.max(0, Math.min(count, itemsMax - (current - count)))
    }
    const overDevices = (list: readonly DeviceKeys[], { counts, window }: { counts: number[], window: { endsAt: number } }): Array<AppError | undefined> | undefined => {
      let refusals: Array<AppError | undefined> | undefined
      for (let i = 0; i < counts.length; i++) {
        if ((counts[i] as number) <= deviceMax) continue
        refusals ??= new Array<AppError | undefined>(counts.length)
        const retryAfter = secondsUntil(window.endsAt, clock())
        refusals[i] = new AppError('RATE_LIMITED', `${deviceMessage(deviceMax, list[i] as DeviceKeys)}; retry after ${retryAfter} s`, { retryAfter })
      }
      return refusals
    }
    return {
      items (count) {
        if (items === undefined || count === 0) return undefined
        const added = items.add([caller], [count])
        return added instanceof Promise ? added.then((result) => withinItems(result, count)) : withinItems(added, count)
      },
      itemsRefusal () {
        const retryAfter = secondsUntil(itemsEndAt, clock())
        return new AppError('RATE_LIMITED', `more than ${itemsMax} batch items a minute from this caller (RATE_LIMIT_BATCH_ITEMS_PER_CALLER); retry after ${retryAfter} s`, { retryAfter })
      },
      devices (list) {
        if (devices === undefined || list.length === 0) return undefined
        const added = devices.add(list.map(deviceKey))
        return added instanceof Promise ? added.then((result) => overDevices(list, result)) : overDevices(list, added)
      }
    }
  }

  app.decorate('limits', {
    perCaller: requestLimit('caller', options.perCaller, 'from this caller', 'RATE_LIMIT_PER_CALLER'),
    verifyPerCaller: requestLimit('verify-caller', options.verifyPerCaller, 'from this caller', 'RATE_LIMIT_VERIFY_PER_CALLER'),
    perDevice,
    verifyPerDevice,
    batch,
    health: (): RateLimitHealth => ({
      perCaller: options.perCaller,
      perDevice: options.perDevice,
      batchItemsPerCaller: options.batchItemsPerCaller,
      verifyPerDevice: options.verifyPerDevice,
      verifyPerCaller: options.verifyPerCaller,
      shared: isUp(),
      ...(redis !== undefined && { redis: redis.status !== 'ready' ? 'down' as const : answering ? 'up' as const : 'unresponsive' as const })
    }),
    sharing: () => redis === undefined ? undefined : { shared: isUp(), openings }
  })
}

export default fp(rateLimits, { name: 'rate-limits', fastify: '5.x', dependencies: ['auth'] })
