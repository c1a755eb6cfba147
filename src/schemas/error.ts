// The error body every route answers with (see plugins/error-handler.ts), registered once for $ref.
import { z } from 'zod'
import { RETRY_AFTER_HEADER, jsonResponse, type HeaderDoc, type JsonResponse } from './response.js'
import { textAnswerSchema } from './text.js'

export const errorBodySchema = z.object({
  statusCode: z.number().int().describe('The HTTP status, repeated.'),
  code: z.string().describe('Stable error code (see the README table); match on this, not on the message.'),
  error: z.string().describe('The HTTP reason phrase.'),
  message: z.string().describe('What went wrong and what to do about it.'),
  details: z.array(z.object({
    path: z.string().describe('The request field, dotted; empty for the body as a whole.'),
    message: z.string()
  })).optional().describe('One entry per invalid field (VALIDATION_FAILED, UNSUPPORTED_SIGN_METHOD).')
}).meta({ id: 'Error' })

export type ErrorResponse = JsonResponse<typeof errorBodySchema>

/**
 * What these statuses mean on every route that reads a JSON body and looks devices up: spread
 * them next to the route's own, e.g. `errorResponses({ 400: 'The body is not valid: ...', ...COMMON_ERRORS })`.
 */
export const COMMON_ERRORS = {
  408: 'The whole request, headers and body, did not arrive within REQUEST_TIMEOUT_MS (REQUEST_TIMEOUT); the connection is closed.',
  413: 'The body is larger than BODY_LIMIT (PAYLOAD_TOO_LARGE).',
  415: 'The body is not sent as application/json (UNSUPPORTED_MEDIA_TYPE).',
  500: 'A bug (INTERNAL): the message reveals nothing; the log line with the same X-Request-Id has the cause.',
  503: 'The store cannot answer now (STORE_UNAVAILABLE), the service is overloaded (OVERLOADED) or it is stopping (SHUTTING_DOWN); retry after Retry-After seconds.'
} as const

/** The headers an error status carries besides X-Request-Id. */
const HEADERS_BY_STATUS: Record<string, Record<string, HeaderDoc>> = {
  401: { 'WWW-Authenticate': { type: 'string', description: 'Bearer realm="enos-mqtt-signer", with error="invalid_token" or "invalid_request" when a token was sent.' } },
  429: {
    ...RETRY_AFTER_HEADER,
    'X-RateLimit-Limit': { type: 'integer', description: 'The limit that was reached, requests a minute.' },
    'X-RateLimit-Remaining': { type: 'integer', description: 'Always 0 here.' },
    'X-RateLimit-Reset': { type: 'integer', description: 'Seconds until the window ends.' }
  },
  503: RETRY_AFTER_HEADER
}

/** What these statuses mean on every route that needs a caller (scope): spread them next to the route's own. */
export const ACCESS_ERRORS = {
  401: 'No valid credentials (UNAUTHENTICATED): no, a malformed, an unknown or an expired bearer token, or a client certificate that is not accepted; WWW-Authenticate says Bearer.',
  429: 'Too many requests from this caller (RATE_LIMIT_PER_CALLER) or, on POST /sign, for this device (RATE_LIMIT_PER_DEVICE) (RATE_LIMITED); retry after Retry-After seconds.'
} as const

/**
 * How a route that needs a caller documents it: a bearer token (AUTH_MODE=token or mtls) or,
 * with AUTH_MODE=mtls, a device client certificate (OpenAPI 3.0 has no scheme for mutual TLS:
 * the description of bearerAuth says so), or nothing with AUTH_MODE=none.
 */
export const SECURITY: Array<Record<string, string[]>> = [{ bearerAuth: [] }, {}]

/**
 * Response schemas for a route's error statuses, for its `schema.response`: status -> when it
 * happens. Every one is the shared Error body (one $ref component); the description goes on the
 * response, not into the component, and a 503 also documents its Retry-After header.
 */
export function errorResponses<const S extends number> (descriptions: Record<S, string>): Record<S, ErrorResponse> {
  const entries = Object.entries<string>(descriptions).map(([status, description]) =>
    [status, jsonResponse(errorBodySchema, description, HEADERS_BY_STATUS[status] ?? {})])
  // Object.fromEntries forgets the keys, which are exactly those of `descriptions`.
  return Object.fromEntries(entries) as Record<S, ErrorResponse>
}

const errorTextSchema = textAnswerSchema.describe('With Accept: text/plain: two lines, error=<CODE> and message=<what went wrong>.')

/** An error response that is also sent as text lines to a caller that prefers text/plain. */
export type ErrorOrTextResponse = Omit<ErrorResponse, 'content'> & { content: ErrorResponse['content'] & { 'text/plain': { schema: typeof errorTextSchema } } }

/** The same error responses, each documented as JSON and as text/plain lines (routes with `textAnswers`). */
export function withTextErrors<const S extends number> (responses: Record<S, ErrorResponse>): Record<S, ErrorOrTextResponse> {
  const entries = Object.entries<ErrorResponse>(responses).map(([status, response]) =>
    [status, { ...response, content: { ...response.content, 'text/plain': { schema: errorTextSchema } } }])
  return Object.fromEntries(entries) as Record<S, ErrorOrTextResponse>
}
