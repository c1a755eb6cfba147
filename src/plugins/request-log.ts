// One JSON log line per request (instead of Fastify's two), with the device and the outcome.
import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { LogController, type FastifyReply, type FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { RequestLogger } from './request-logger.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The request's one log line is also its audit line: a signing decision (POST /sign, POST /verify). */
    audit?: boolean
  }
  interface FastifyRequest {
    /** The device a request was about, once its body has been validated. */
    deviceRef: { productKey: string, deviceKey: string, clientId: string } | null
    /** What happened: `signed`, `allow`/`deny`/`ignore` (POST /verify), an error code, or null for a plain success. */
    outcome: string | null
    /** Why POST /verify answered as it did: for the log line only, never for the caller, never a password. */
    reason: string | null
    /** The counts of a batch, updated as its items are signed (a stream's are final when its answer ends). */
    batch: { total: number, signed: number, failed: number } | null
    /** What the audit line of a batch says of its items. */
    batchAudit: BatchAudit | null
  }
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

/** The reason logged for an answer that was streamed but could not end. */
const CUT = 'the answer was cut before it ended'

/** The message of the one log line written per request, wherever it is written. */
export const REQUEST_COMPLETED = 'request completed'

/** Takes a caller's X-Request-Id when it is a plain token (it goes into logs), else a new UUID. */
export function genReqId (req: IncomingMessage): string {
  const given = req.headers['x-request-id']
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID()
}

/**
 * Pino redaction: nothing secret may reach a log line even if a future change logs an object
 * carrying one. Bodies are never logged (see RequestLogController). The paths are explicit on
 * purpose: a wildcard path makes pino walk every line, which cost ~7% of the CPU of POST /sign.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'deviceSecret', 'mqttPassword',
  'device.deviceSecret', 'credentials.mqttPassword',
  'body.deviceSecret', 'body.mqttPassword'
]

/** The shape pino (and Fastify's types) expect of a serialized error. */
export interface LoggedError {
  [key: string]: unknown
  type: string
  message: string
  stack: string
}

/** How deep a chain of `cause`s is followed in a log line. */
const MAX_CAUSE_DEPTH = 5

/**
 * The `err` serializer: an error is logged as its type, message, code and stack, and its causes
 * the same way, never with its other enumerable fields. A store error carrying the row it failed
 * on, or credentials attached by a future change, cannot reach a log line through them.
 */
export function serializeError (err: unknown, depth = 0): LoggedError {
  if (!(err instanceof Error)) return { type: typeof err, message: String(err), stack: '' }
  const { code } = err as NodeJS.ErrnoException
  return {
    type: err.constructor.name,
    message: err.message,
    ...(typeof code === 'string' && { code }),
    stack: String(err.stack),
    ...(err.cause !== undefined && depth < MAX_CAUSE_DEPTH && { cause: serializeError(err.cause, depth + 1) })
  }
}

/**
 * Replaces Fastify's "incoming request" + "request completed" pair with one line per request,
 * written when the response is finished. Fields: reqId, method, route, statusCode, durationMs,
 * productKey and deviceKey (once validated), the counts of a batch, and outcome. Never the body.
 */
export class RequestLogController extends LogController {
  override incomingRequest (): void {}

  /**
   * A streamed answer that could not finish (the client went away): Fastify reports it here and
   * not as completed, so this writes the request's one line.
   */
  override streamError (error: Error, request: FastifyRequest, reply: FastifyReply): void {
    request.outcome ??= 'aborted'
    // Also a stream cut at SHUTDOWN_TIMEOUT_MS, whose outcome and reason say SHUTTING_DOWN already.
    request.reason = request.reason === null ? CUT : `${request.reason}; ${CUT}`
    this.requestCompleted(error, request, reply)
  }

  override requestCompleted (_error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    // Every request's logger is one (app.ts); nothing is built for a line that would not be written.
    const log = request.log as RequestLogger
    // A request shed by admission control is counted in /metrics, not logged: a flood must not flood the log.
    if (!log.isLevelEnabled('info') || request.outcome === 'OVERLOADED') return
    // Loose: a request Fastify refuses before routing (a malformed URL) is made without the decorators.
    const { batch } = request
    // A getter that builds an object each time it is read: read once.
    const route = request.routeOptions
    log.completed({
      ...(route.config?.audit === true && auditFields(request)),
      method: request.method,
      route: route.url ?? request.url.slice(0, 200),
      statusCode: reply.statusCode,
      durationMs: Math.round(reply.elapsedTime * 100) / 100,
      ...request.deviceRef,
      ...(batch != null && { batch: { size: batch.total, signed: batch.signed, failed: batch.failed, ...(request.batchAudit != null && auditOfBatch(request.batchAudit)) } }),
      // Every error path sets an outcome; the status-based fallback is for one that might not.
      outcome: request.outcome ?? (reply.statusCode < 400 ? 'ok' : 'error'),
      ...(request.reason != null && { reason: request.reason })
    }, REQUEST_COMPLETED)
  }
}

/** Where an item of a batch stands: `{ index }` (JSON) or `{ line }` (NDJSON). */
export type ItemPosition = { index: number } | { line: number }

/**
 * The audit of a batch, in its one audit line: the failed items (where, which device, which
 * code), and how many devices were signed for each product. Not one line per item: a batch comes
 * from a provisioning tool that holds the list it sent, and a line per device would write 250 MB
 * of log for a million-device stream and slow it tenfold (measured).
 */
export interface BatchAudit {
  failures: Array<ItemPosition & { productKey?: string, deviceKey?: string, code: string }>
  /** Failures past MAX_LISTED_FAILURES: counted, not listed. */
  failuresNotListed: number
  signedByProduct: Map<string, number>
  /** Signed devices of products past MAX_LISTED_PRODUCTS: counted together. */
  signedOtherProducts: number
}

/** Bounds of a batch's audit line, so that a hostile batch cannot make it huge. */
const MAX_LISTED_FAILURES = 1000
const MAX_LISTED_PRODUCTS = 100

export function newBatchAudit (): BatchAudit {
  return { failures: [], failuresNotListed: 0, signedByProduct: new Map(), signedOtherProducts: 0 }
}

export function noteFailure (audit: BatchAudit, failure: BatchAudit['failures'][number]): void {
  if (audit.failures.length < MAX_LISTED_FAILURES) audit.failures.push(failure)
  else audit.failuresNotListed++
}

export function noteSigned (audit: BatchAudit, productKey: string): void {
  const count = audit.signedByProduct.get(productKey)
  if (count !== undefined) audit.signedByProduct.set(productKey, count + 1)
  else if (audit.signedByProduct.size < MAX_LISTED_PRODUCTS) audit.signedByProduct.set(productKey, 1)
  else audit.signedOtherProducts++
}

const positionOf = (item: ItemPosition): number => 'index' in item ? item.index : item.line

function auditOfBatch (audit: BatchAudit): Record<string, unknown> {
  return {
    // In input order: a batch notes refusals by the caller before lookups, which come after.
    failures: audit.failures.sort((a, b) => positionOf(a) - positionOf(b)),
    ...(audit.failuresNotListed > 0 && { failuresNotListed: audit.failuresNotListed }),
    signedByProduct: Object.fromEntries(audit.signedByProduct),
    ...(audit.signedOtherProducts > 0 && { signedOtherProducts: audit.signedOtherProducts })
  }
}

/**
 * Who decided what for whom, for the audit trail: the caller (token name, certificate, or open
 * with the client address), the client id, and the error code when refused. Never a secret, a
 * password or a token: the caller is a name.
 */
function auditFields (request: FastifyRequest): Record<string, unknown> {
  return { audit: true, caller: request.caller?.name ?? null, clientAddress: request.ip }
}

export default fp(async function requestLog (app) {
  app.decorateRequest('deviceRef', null)
  app.decorateRequest('outcome', null)
  app.decorateRequest('reason', null)
  app.decorateRequest('batch', null)
  app.decorateRequest('batchAudit', null)
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id)
    done()
  })
}, { name: 'request-log', fastify: '5.x' })
