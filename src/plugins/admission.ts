// Admission control: past a busy event loop or too many requests in flight, new requests get a cheap 503 OVERLOADED with a jittered Retry-After, the heaviest callers first.
import type { Socket } from 'node:net'
import { Server as TlsServer } from 'node:tls'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { AppError } from '../errors.js'
import { TEXT_PLAIN, prefersText, textLines } from '../schemas/text.js'
import { toErrorBody } from './error-handler.js'
import { AUTH_HOOKS } from './auth.js'
import { addressKey, callerKey } from './rate-limits.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** What admission control has done so far, for /metrics. */
    admission: { stats: () => AdmissionStats }
  }
}

/**
 * Why a request was shed: the event loop was busy too long in this turn, new connections waited too
 * long for their first request to be read, or too many requests were in flight.
 */
export type ShedReason = 'busy' | 'queue' | 'in_flight'

export interface AdmissionStats {
  /** Requests answered 503 OVERLOADED since the start, by reason. */
  shed: Record<ShedReason, number>
  /** Requests admitted and not yet answered. */
  inFlight: number
}

export interface AdmissionLimits {
  /** Milliseconds the event loop may be busy in one turn before new requests are shed (heavy callers from half of it); Infinity: never. */
  busyMs: number
  /** Milliseconds new connections may wait for their first request to be read (QueueDelay) before new requests are shed (heavy callers from half of it); Infinity: never. */
  queueMs: number
  /** Requests in flight at once before new ones are shed (heavy callers from three quarters of it); Infinity: no bound. */
  maxInFlight: number
  /** Length of one window of the per-caller counts; a caller's share is judged over the last one or two. */
  windowMs: number
  /** Callers counted per window; more (a flood of addresses) are never judged light. Bounds memory. */
  maxCallers: number
}

/** A caller with more than this times its share of the recent admissions is heavy: shed first. */
const HEAVY = 1.25
/** A caller with at most this fraction of its share is light: still admitted when everyone else is shed. */
const LIGHT = 0.5

/**
 * The decision, with no clock or I/O of its own: `admit` is called once per request with how long
 * the event loop has been busy in this turn and the time now (milliseconds, any origin), and
 * `release` once per admitted request when its answer is done.
 *
 * Fairness: admissions are counted per caller over the current and the previous window. A caller's
 * share is the recent admissions divided by the callers admitted recently. Under mild pressure
 * (half the busy budget, three quarters of the in-flight bound) a caller above HEAVY times its share
 * is shed; under full pressure every caller is, except one at most LIGHT times its share (and
 * never past the in-flight bound). A boot storm of many callers with one request each has no
 * light caller: they are shed alike.
 */
export class Admission {
  inFlight = 0
  private current = new Map<string, number>()
  private previous = new Map<string, number>()
  private currentTotal = 0
  private previousTotal = 0
  /** Keys of `current` that `previous` lacks: with previous.size, the callers of the two windows. */
  private newCallers = 0
  private windowStart: number
  private readonly limits: AdmissionLimits

  constructor (limits: AdmissionLimits, now: number) {
    this.limits = limits
    this.windowStart = now
  }

  /** undefined: admitted, and in flight until release(); otherwise why it is shed. */
  admit (key: string, busyMs: number, now: number, queueMs = 0): ShedReason | undefined {
    if (now - this.windowStart >= this.limits.windowMs) this.roll(now)
    const { busyMs: busyLimit, queueMs: queueLimit, maxInFlight } = this.limits
    const inFlight = this.inFlight
    const loopLevel = Math.max(busyMs >= busyLimit ? 2 : busyMs >= busyLimit / 2 ? 1 : 0, queueMs >= queueLimit ? 2 : queueMs >= queueLimit / 2 ? 1 : 0)
    const flightLevel = inFlight >= maxInFlight ? 2 : inFlight >= maxInFlight * 0.75 ? 1 : 0
    if (loopLevel === 0 && flightLevel === 0) return this.count(key)
    const loopReason: ShedReason = busyMs / busyLimit >= queueMs / queueLimit ? 'busy' : 'queue'
    const current = this.current.get(key)
    const count = (current ?? 0) + (this.previous.get(key) ?? 0)
    const total = this.currentTotal + this.previousTotal
    const callers = this.previous.size + this.newCallers
    if (loopLevel < 2 && flightLevel < 2) {
      // count / share = count * callers / total
      return count * callers > HEAVY * total ? (loopLevel >= flightLevel ? loopReason : 'in_flight') : this.count(key)
    }
    if (flightLevel === 2) return 'in_flight'
    // A caller that cannot be counted (the window is full of callers: a flood of addresses) is never light.
    if (current === undefined && this.current.size >= this.limits.maxCallers) return loopReason
    return callers > 0 && (count + 1) * callers <= LIGHT * total ? this.count(key) : loopReason
  }

  release (): void {
    this.inFlight--
  }

  private count (key: string): undefined {
    const seen = this.current.get(key)
    if (seen !== undefined) {
      this.current.set(key, seen + 1)
    } else if (this.current.size < this.limits.maxCallers) {
      this.current.set(key, 1)
      if (!this.previous.has(key)) this.newCallers++
    }
    this.currentTotal++
    this.inFlight++
    return undefined
  }

  private roll (now: number): void {
    const emptied = this.previous
    emptied.clear()
    if (now - this.windowStart >= 2 * this.limits.windowMs) {
      // Nothing was admitted for a whole window: nothing recent to judge by.
      this.current.clear()
      this.previousTotal = 0
    } else {
      this.previous = this.current
      this.current = emptied
      this.previousTotal = this.currentTotal
    }
    this.currentTotal = 0
    this.newCallers = 0
    this.windowStart = now
  }
}

/** How often the median wait of new connections is taken (QueueDelay). */
export const QUEUE_INTERVAL_MS = 100
/** Addresses whose new connections are counted in one interval (QueueDelay). */
export const MAX_QUEUE_ADDRESSES = 10_000
/**
 * New connections of one address counted in one interval (QueueDelay). Measured in the storm bench
 * (8 load addresses): one per address made the signal too coarse (p99 1.56 s against 1.13 s with no cap).
 */
export const SAMPLES_PER_ADDRESS = 4

/**
 * How long new connections wait, in this process, from their accept to their first request: the
 * queue a boot storm builds, which the event loop's turns do not show (each turn is short, but
 * thousands of connections wait their turn). Judged by the MEDIAN wait over each QUEUE_INTERVAL_MS
 * (how many waited at least the limit, or half of it, against all), not the longest, and with a
 * few samples per address at most: a client that connects and sends its request late (a pool
 * connecting ahead, or someone trying to make the service shed everyone) shows a long wait, but
 * weighs a few connections against all those of other addresses that come promptly. (The least wait, as CoDel takes it, does not work
 * here: measured in a storm, some connections are read at once while the median waits 300-570 ms.)
 * An interval's value holds through the next one; no new connection in an interval: 0.
 */
export class QueueDelay {
  private readonly limitMs: number
  private intervalStart: number
  private seen = 0
  private pastHalf = 0
  private pastLimit = 0
  private value = 0
  private readonly addresses = new Map<string, number>()

  /** `limitMs`: OVERLOAD_QUEUE_MS; current() answers 0, half of it or all of it. */
  constructor (limitMs: number, now: number) {
    this.limitMs = limitMs
    this.intervalStart = now
  }

  /**
   * One new connection's wait, from `address` (its address key). At most SAMPLES_PER_ADDRESS
   * connections of each address are counted in an interval: a client that opens many connections
   * and sends late (to make everyone shed) weighs no more than a few devices do; a fleet's devices
   * each have their own address. At most MAX_QUEUE_ADDRESSES addresses an interval are counted
   * (bounded memory).
   */
  sample (address: string, waitedMs: number, now: number): void {
    this.current(now)
    const taken = this.addresses.get(address) ?? 0
    if (taken >= SAMPLES_PER_ADDRESS || (taken === 0 && this.addresses.size >= MAX_QUEUE_ADDRESSES)) return
    this.addresses.set(address, taken + 1)
    this.seen++
    if (waitedMs >= this.limitMs / 2) this.pastHalf++
    if (waitedMs >= this.limitMs) this.pastLimit++
  }

  /** The lower bound of the last interval's median wait, in steps: 0, half the limit, or the limit. */
  current (now: number): number {
    if (now - this.intervalStart >= QUEUE_INTERVAL_MS) {
      // More than one interval since the last look: nothing is known about now.
      const recent = now - this.intervalStart < 2 * QUEUE_INTERVAL_MS
      const half = this.seen / 2
      this.value = !recent || this.seen === 0 ? 0 : this.pastLimit > half ? this.limitMs : this.pastHalf > half ? this.limitMs / 2 : 0
      this.seen = this.pastHalf = this.pastLimit = 0
      this.addresses.clear()
      this.intervalStart = now
    }
    return this.value
  }
}

/** Where a connection keeps the time it was accepted, until its first request is judged. */
const ACCEPTED_AT = Symbol('acceptedAt')
interface Accepted { [ACCEPTED_AT]?: number }

export interface AdmissionOptions {
  /** OVERLOAD_BUSY_MS; 0: the event loop is not watched. */
  busyMs: number
  /** OVERLOAD_QUEUE_MS; 0: the wait of new connections is not watched. */
  queueMs: number
  /** OVERLOAD_MAX_IN_FLIGHT; 0: no bound. */
  maxInFlight: number
  /** Retry-After of an OVERLOADED answer, drawn per answer from this range of whole seconds. */
  retryAfterMinS: number
  retryAfterMaxS: number
  /** Milliseconds, monotonic: the windows of the per-caller counts. Default: performance.now. */
  clock?: () => number
  /** How long the event loop has been busy in this turn (tests force pressure with it). Default: measured. */
  loopBusy?: () => number
}

/** Routes never shed: an orchestrator must see a loaded replica as alive and ready, and Prometheus must see it loaded. */
export const PROBES: ReadonlySet<string> = new Set(['/healthz', '/readyz', '/metrics'])
/** Admissions per caller are judged over one or two windows of this length. */
export const WINDOW_MS = 1000
/** Callers counted per window (two windows are held). */
export const MAX_CALLERS = 50_000
/** How often, at most, shedding is reported in the log: a flood must not flood the log too. */
const REPORT_EVERY_MS = 10_000

export const overloadedMessage = (seconds: number): string =>
  `the service has more requests than it can answer now; retry after ${seconds} s (Retry-After), as the other callers will`

/** The answer of one Retry-After value, built once: status line headers and body, JSON and text. */
interface Prebuilt { json: Buffer, jsonLength: string, text: Buffer, textLength: string, seconds: string }

function prebuild (seconds: number): Prebuilt {
  const message = overloadedMessage(seconds)
  const json = Buffer.from(JSON.stringify(toErrorBody(new AppError('OVERLOADED', message))))
  const text = Buffer.from(textLines([['error', 'OVERLOADED'], ['message', message]]))
  return { json, jsonLength: String(json.length), text, textLength: String(text.length), seconds: String(seconds) }
}

async function admission (app: FastifyInstance, options: AdmissionOptions): Promise<void> {
  const shed: Record<ShedReason, number> = { busy: 0, queue: 0, in_flight: 0 }
  const clock = options.clock ?? (() => performance.now())
  const control = new Admission({
    busyMs: options.busyMs === 0 ? Infinity : options.busyMs,
    queueMs: options.queueMs === 0 ? Infinity : options.queueMs,
    maxInFlight: options.maxInFlight === 0 ? Infinity : options.maxInFlight,
    windowMs: WINDOW_MS,
    maxCallers: MAX_CALLERS
  }, clock())
  app.decorate('admission', { stats: (): AdmissionStats => ({ shed: { ...shed }, inFlight: control.inFlight }) })
  if (options.busyMs === 0 && options.queueMs === 0 && options.maxInFlight === 0) return

  const answers: Prebuilt[] = []
  for (let s = options.retryAfterMinS; s <= options.retryAfterMaxS; s++) answers.push(prebuild(s))

  // The turn of the event loop a request is seen in starts with the first request seen in it,
  // and ends in the check phase (setImmediate) that follows the poll phase reading the sockets.
  let turnStart = -1
  let turnUse = performance.eventLoopUtilization()
  // Off (0): the wall time is never past it, so the loop is never asked.
  const halfBusy = options.busyMs === 0 ? Infinity : options.busyMs / 2
  const endTurn = (): void => { turnStart = -1 }
  const measured = (now: number): number => {
    if (turnStart >= 0) {
      const wall = now - turnStart
      if (wall < halfBusy) return wall
      // A turn begun in the check phase (a request resumed by setImmediate) ends only after the next
      // poll, which may have waited idle for I/O: count only the time the loop was busy since.
      return performance.eventLoopUtilization(turnUse).active
    }
    turnStart = now
    turnUse = performance.eventLoopUtilization()
    setImmediate(endTurn)
    return 0
  }
  const busyFor = options.loopBusy === undefined ? measured : options.loopBusy
  const release = (): void => { control.release() }

  // Over HTTPS from the end of the handshake: the handshake's round trips are the client's network, not this queue.
  const queue = new QueueDelay(options.queueMs, clock())
  const watchQueue = options.queueMs !== 0
  if (watchQueue) {
    app.server.on(app.server instanceof TlsServer ? 'secureConnection' : 'connection', (socket: Socket & Accepted) => {
      socket[ACCEPTED_AT] = clock()
    })
  }

  let lastShedAt = -Infinity
  let reportedAt = -Infinity
  let unreported: Record<ShedReason, number> = { busy: 0, queue: 0, in_flight: 0 }

  const hook = (request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void): void => {
    const now = clock()
    let queueMs = 0
    if (watchQueue) {
      const socket = request.raw.socket as Socket & Accepted
      const acceptedAt = socket[ACCEPTED_AT]
      if (acceptedAt !== undefined) {
        socket[ACCEPTED_AT] = undefined
        queue.sample(addressKey(request.ip), now - acceptedAt, now)
      }
      queueMs = queue.current(now)
    }
    const reason = control.admit(callerKey(request), busyFor(now), now, queueMs)
    const res = reply.raw
    if (reason === undefined) {
      // 'close' comes once per response, answered or cut: the count cannot leak.
      res.on('close', release)
      // Shedding lately: end connections with their answers, so that new connections get a turn.
      if (now - lastShedAt < WINDOW_MS) res.shouldKeepAlive = false
      done()
      return
    }
    lastShedAt = now
    shed[reason]++
    unreported[reason]++
    if (now - reportedAt >= REPORT_EVERY_MS) {
      reportedAt = now
      app.log.warn({ shed: unreported, inFlight: control.inFlight }, 'overloaded: new requests are answered 503 OVERLOADED (see OVERLOAD_BUSY_MS, OVERLOAD_QUEUE_MS, OVERLOAD_MAX_IN_FLIGHT)')
      unreported = { busy: 0, queue: 0, in_flight: 0 }
    }
    // The cheapest answer there is: no body read, no lookup, no hook after this one, no log line
    // (counted in /metrics instead), headers and body built at startup.
    request.outcome = 'OVERLOADED'
    reply.hijack()
    const answer = answers[Math.floor(Math.random() * answers.length)] as Prebuilt
    const text = prefersText(request)
    res.shouldKeepAlive = false
    res.writeHead(503, [
      'content-type', text ? TEXT_PLAIN : 'application/json; charset=utf-8',
      'content-length', text ? answer.textLength : answer.jsonLength,
      'retry-after', answer.seconds,
      'x-request-id', request.id
    ])
    res.end(text ? answer.text : answer.json)
  }

  // A route's own hook, right after its authentication: a caller is judged by who it is (its token,
  // its certificate, its address when open), not by an address it shares with others, and a request
  // shed spends none of its per-caller budget, which the route's next hook counts. Only the routes
  // with a scope (the API) are judged: the probes, and the /docs pages, are never shed.
  app.addHook('onRoute', (route) => {
    if (route.config?.scope === undefined) return
    // Auth (registered before this plugin) has put its hook first on every route with a scope.
    const hooks = [route.onRequest].flat().filter((h) => h !== undefined)
    hooks.splice(hooks.findIndex((h) => AUTH_HOOKS.has(h as never)) + 1, 0, hook)
    route.onRequest = hooks
  })
}

export default fp(admission, { name: 'admission', fastify: '5.x', dependencies: ['auth', 'rate-limits'] })
