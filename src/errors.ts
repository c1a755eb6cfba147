// The error table: every stable error code the API can answer with, and its HTTP status.

/**
 * Error code -> HTTP status. Codes are public API: never rename one, add and deprecate.
 * Every code here has a README row and is reached through HTTP by a test.
 */
export const ERROR_STATUS = {
  VALIDATION_FAILED: 400,
  UNSUPPORTED_SIGN_METHOD: 400,
  MALFORMED_JSON: 400,
  BAD_REQUEST: 400,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  DEVICE_DISABLED: 403,
  DEVICE_NOT_FOUND: 404,
  ROUTE_NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  REQUEST_TIMEOUT: 408,
  PRECONDITION_FAILED: 412,
  PAYLOAD_TOO_LARGE: 413,
  BATCH_TOO_LARGE: 413,
  /** Only in the error line of an NDJSON stream that reached BATCH_STREAM_MAX_ITEMS or BATCH_STREAM_MAX_MS. */
  STREAM_LIMIT_REACHED: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  RANGE_NOT_SATISFIABLE: 416,
  EXPECTATION_FAILED: 417,
  RATE_LIMITED: 429,
  HEADERS_TOO_LARGE: 431,
  INTERNAL: 500,
  STORE_UNAVAILABLE: 503,
  SHUTTING_DOWN: 503,
  /** Admission control shed the request (OVERLOAD_BUSY_MS, OVERLOAD_MAX_IN_FLIGHT); Retry-After is drawn from OVERLOAD_RETRY_AFTER_MIN_S..MAX_S. */
  OVERLOADED: 503
} as const

export type ErrorCode = keyof typeof ERROR_STATUS

/** Retry-After (seconds) sent with every STORE_UNAVAILABLE answer, unless the thrower says otherwise. */
export const STORE_RETRY_AFTER_SECONDS = 5

/**
 * The message of every STORE_UNAVAILABLE answer: fixed words, never the backend's own text, which can
 * name hosts, ports, users and databases. The cause is logged under the request id instead.
 */
export const STORE_UNAVAILABLE_MESSAGE = `the device store is not answering; retry after ${STORE_RETRY_AFTER_SECONDS} seconds (Retry-After); ` +
  'the cause is logged under the request id of this answer (X-Request-Id)'

/** Retry-After (seconds) sent while the service shuts down: another replica, or this one restarted, can answer. */
export const SHUTDOWN_RETRY_AFTER_SECONDS = 1

/**
 * The code that answers a client error found by the HTTP layer itself (Node's parser, Fastify,
 * the static files of /docs), by its status. A status not listed is answered as 400 BAD_REQUEST.
 */
export const HTTP_LAYER_CODES: Readonly<Record<number, ErrorCode>> = {
  400: 'BAD_REQUEST',
  404: 'ROUTE_NOT_FOUND',
  405: 'METHOD_NOT_ALLOWED',
  408: 'REQUEST_TIMEOUT',
  412: 'PRECONDITION_FAILED',
  413: 'PAYLOAD_TOO_LARGE',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  416: 'RANGE_NOT_SATISFIABLE',
  417: 'EXPECTATION_FAILED',
  431: 'HEADERS_TOO_LARGE'
}

/** One problem with one field of a request; `path` is dotted (`signMethod`, `devices.3.deviceKey`). */
export interface ErrorDetail {
  path: string
  message: string
}

export interface AppErrorOptions {
  details?: ErrorDetail[]
  /** Seconds, sent as the Retry-After header (only meaningful on 503). */
  retryAfter?: number
  /** Response headers the error needs (`Allow` on 405). */
  headers?: Record<string, string>
  cause?: unknown
}

/**
 * The one error type the service throws on purpose. `message` is shown to the client, so it
 * must never contain a deviceSecret, an mqttPassword or any other secret.
 */
export class AppError extends Error {
  readonly code: ErrorCode
  readonly statusCode: number
  readonly details: ErrorDetail[] | undefined
  readonly retryAfter: number | undefined
  readonly headers: Record<string, string> | undefined

  constructor (code: ErrorCode, message: string, options: AppErrorOptions = {}) {
    const statusCode = ERROR_STATUS[code]
    // An answer to a client (4xx) needs no stack trace, and none is logged: capturing one took
    // about 7% of the CPU of a flood of requests for unknown devices (perf). The service's own
    // failures (5xx) keep theirs for the log.
    const stackTraceLimit = Error.stackTraceLimit
    if (statusCode < 500) Error.stackTraceLimit = 0
    super(message, { cause: options.cause })
    Error.stackTraceLimit = stackTraceLimit
    this.name = 'AppError'
    this.code = code
    this.statusCode = statusCode
    this.details = options.details
    this.retryAfter = options.retryAfter ?? DEFAULT_RETRY_AFTER[code]
    this.headers = options.headers
  }
}

const DEFAULT_RETRY_AFTER: Partial<Record<ErrorCode, number>> = {
  STORE_UNAVAILABLE: STORE_RETRY_AFTER_SECONDS,
  SHUTTING_DOWN: SHUTDOWN_RETRY_AFTER_SECONDS
}

export function isAppError (err: unknown): err is AppError {
  return err instanceof AppError
}
