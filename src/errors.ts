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
  DEVICE_DISABLED: 403,
  DEVICE_NOT_FOUND: 404,
  ROUTE_NOT_FOUND: 404,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  INTERNAL: 500,
  STORE_UNAVAILABLE: 503
} as const

export type ErrorCode = keyof typeof ERROR_STATUS

/** Retry-After (seconds) sent with every STORE_UNAVAILABLE answer, unless the thrower says otherwise. */
export const STORE_RETRY_AFTER_SECONDS = 5

/** One problem with one field of a request; `path` is dotted (`signMethod`, `devices.3.deviceKey`). */
export interface ErrorDetail {
  path: string
  message: string
}

export interface AppErrorOptions {
  details?: ErrorDetail[]
  /** Seconds, sent as the Retry-After header (only meaningful on 503). */
  retryAfter?: number
  /** Overrides the table's status; only for BAD_REQUEST, which keeps the HTTP layer's own 4xx. */
  status?: number
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

  constructor (code: ErrorCode, message: string, options: AppErrorOptions = {}) {
    super(message, { cause: options.cause })
    this.name = 'AppError'
    this.code = code
    this.statusCode = options.status ?? ERROR_STATUS[code]
    this.details = options.details
    this.retryAfter = options.retryAfter ?? (code === 'STORE_UNAVAILABLE' ? STORE_RETRY_AFTER_SECONDS : undefined)
  }
}

export function isAppError (err: unknown): err is AppError {
  return err instanceof AppError
}
