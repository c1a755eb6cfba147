// The only place errors become HTTP responses: every error body has the same shape and a stable code.
import { STATUS_CODES } from 'node:http'
import type { Duplex } from 'node:stream'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest, FastifySchemaValidationError } from 'fastify'
import fp from 'fastify-plugin'
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod'
import type { z } from 'zod'
import { AppError, isAppError, type ErrorDetail } from '../errors.js'
import type { errorBodySchema } from '../schemas/error.js'
import { REQUEST_COMPLETED } from './request-log.js'

export type ErrorBody = z.infer<typeof errorBodySchema>

/** Fastify's own client errors, given our stable codes and a message a person can act on. */
const FASTIFY_ERRORS: Record<string, () => AppError> = {
  FST_ERR_CTP_BODY_TOO_LARGE: () => new AppError('PAYLOAD_TOO_LARGE', 'request body is larger than this service accepts (see BODY_LIMIT)'),
  FST_ERR_CTP_INVALID_MEDIA_TYPE: () => new AppError('UNSUPPORTED_MEDIA_TYPE', 'send the request body as JSON with Content-Type: application/json'),
  FST_ERR_CTP_EMPTY_JSON_BODY: () => new AppError('MALFORMED_JSON', 'the request body is empty; send a JSON object'),
  FST_ERR_CTP_INVALID_JSON_BODY: () => new AppError('MALFORMED_JSON', 'the request body is not valid JSON'),
  FST_ERR_BAD_URL: () => new AppError('BAD_REQUEST', 'the request URL is not valid')
}

/**
 * Maps anything thrown while handling a request to the AppError that answers it. Messages of
 * unexpected errors are never passed on: they may hold internals.
 */
export function toAppError (err: FastifyError | Error): AppError {
  if (isAppError(err)) return err
  if (hasZodFastifySchemaValidationErrors(err)) {
    const details = err.validation.flatMap(toDetails)
    const summary = details.map(({ path, message }) => path === '' ? message : `${path}: ${message}`).join('; ')
    // Fastify sets validationContext (body, querystring, ...) on every validation error.
    return new AppError('VALIDATION_FAILED', `invalid request ${String(err.validationContext)}: ${summary}`, { details })
  }
  const code = 'code' in err ? err.code : undefined
  const known = code === undefined ? undefined : FASTIFY_ERRORS[code]
  if (known !== undefined) return known()
  const status = 'statusCode' in err ? err.statusCode : undefined
  if (typeof status === 'number' && status >= 400 && status < 500) {
    // Another client error from the HTTP layer (bad Content-Length, prototype poisoning, ...):
    // keep its status and its message, which describes the request, not the server.
    return new AppError('BAD_REQUEST', err.message, { status })
  }
  return new AppError('INTERNAL', 'internal error; the request id in the logs tells what happened', { cause: err })
}

/** One detail per field; zod reports all unknown fields in one issue at the parent's path. */
function toDetails (issue: FastifySchemaValidationError): ErrorDetail[] {
  const path = issue.instancePath.split('/').filter(Boolean).join('.')
  const unknown = issue.keyword === 'unrecognized_keys' ? issue.params.keys : undefined
  if (Array.isArray(unknown)) {
    return unknown.map((key) => ({ path: path === '' ? String(key) : `${path}.${String(key)}`, message: 'is not a known field' }))
  }
  return [{ path, message: String(issue.message) }]
}

export function toErrorBody (err: AppError): ErrorBody {
  return {
    statusCode: err.statusCode,
    code: err.code,
    error: STATUS_CODES[err.statusCode] ?? 'Error',
    message: err.message,
    ...(err.details && { details: err.details })
  }
}

export function sendError (err: FastifyError | Error, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const appError = toAppError(err)
  request.outcome = appError.code
  if (appError.statusCode >= 500) request.log.error({ err }, 'request failed')
  if (appError.retryAfter !== undefined) reply.header('retry-after', String(appError.retryAfter))
  return reply.code(appError.statusCode).send(toErrorBody(appError))
}

const CLIENT_GONE = new Set(['ECONNRESET', 'HPE_INVALID_EOF_STATE'])

const CLIENT_ERRORS: Record<number, string> = {
  400: 'the request is not valid HTTP',
  408: 'the request was not received in time (see REQUEST_TIMEOUT_MS)',
  431: 'the request headers are too large'
}

/**
 * Requests Node's HTTP parser refuses before Fastify sees them (a bad header, headers too large, a
 * request too slow to arrive) get the same error body as every other error, and one log line.
 */
export function handleClientError (this: FastifyInstance, err: NodeJS.ErrnoException, socket: Duplex): void {
  // A client that reset or closed mid-request has nobody left to answer, and is not worth a log line.
  if (CLIENT_GONE.has(String(err.code)) || !socket.writable) {
    socket.destroy()
    return
  }
  const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400
  const body = JSON.stringify(toErrorBody(new AppError('BAD_REQUEST', CLIENT_ERRORS[status] as string, { status })))
  this.log.info({ statusCode: status, outcome: 'BAD_REQUEST', problem: err.code }, REQUEST_COMPLETED)
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`)
}

export default fp(async function errorHandler (app) {
  app.setErrorHandler(sendError)
  app.setNotFoundHandler((request, reply) => {
    return sendError(new AppError('ROUTE_NOT_FOUND', `no route ${request.method} ${request.url.slice(0, 200)}; see /docs`), request, reply)
  })
}, { name: 'error-handler', fastify: '5.x' })
