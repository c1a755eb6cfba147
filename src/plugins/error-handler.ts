// The only place errors become HTTP responses: every error body has the same shape and a stable code.
import { randomUUID } from 'node:crypto'
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest, FastifySchemaValidationError } from 'fastify'
import fp from 'fastify-plugin'
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod'
import type { z } from 'zod'
import { AppError, HTTP_LAYER_CODES, isAppError, type ErrorDetail } from '../errors.js'
import type { errorBodySchema } from '../schemas/error.js'
import { TEXT_PLAIN, prefersText, textLines } from '../schemas/text.js'
import { REQUEST_COMPLETED } from './request-log.js'

export type ErrorBody = z.infer<typeof errorBodySchema>

const REQUEST_TIMEOUT_MESSAGE = 'the request was not received in time (see REQUEST_TIMEOUT_MS)'

/** Fastify's own client errors, given our stable codes and a message a person can act on. */
const FASTIFY_ERRORS: Record<string, () => AppError> = {
  FST_ERR_CTP_BODY_TOO_LARGE: () => new AppError('PAYLOAD_TOO_LARGE', 'request body is larger than this service accepts (see BODY_LIMIT)'),
  FST_ERR_CTP_INVALID_MEDIA_TYPE: () => new AppError('UNSUPPORTED_MEDIA_TYPE', 'send the request body as JSON with Content-Type: application/json'),
  FST_ERR_CTP_EMPTY_JSON_BODY: () => new AppError('MALFORMED_JSON', 'the request body is empty; send a JSON object'),
  FST_ERR_CTP_INVALID_JSON_BODY: () => new AppError('MALFORMED_JSON', 'the request body is not valid JSON'),
  FST_ERR_BAD_URL: () => new AppError('BAD_REQUEST', 'the request URL is not valid'),
  ERR_HTTP_REQUEST_TIMEOUT: () => new AppError('REQUEST_TIMEOUT', REQUEST_TIMEOUT_MESSAGE)
}

/**
 * Maps anything thrown while handling a request to the AppError that answers it. Messages of
 * unexpected errors are never passed on: they may hold internals.
 */
export function toAppError (err: FastifyError | Error): AppError {
  if (isAppError(err)) return err
  if (hasZodFastifySchemaValidationErrors(err)) {
    // Fastify sets validationContext (body, querystring, ...) on every validation error.
    return validationFailed(`invalid request ${String(err.validationContext)}`, fromFastify(err.validation))
  }
  const code = 'code' in err ? err.code : undefined
  const known = code === undefined ? undefined : FASTIFY_ERRORS[code]
  if (known !== undefined) return known()
  const status = 'statusCode' in err ? err.statusCode : 'status' in err ? err.status : undefined
  if (typeof status === 'number' && status >= 400 && status < 500) return httpLayerError(status, err.message)
  return new AppError('INTERNAL', 'internal error; the request id in the logs tells what happened', { cause: err })
}

/**
 * Another client error of the HTTP layer (a bad Content-Length, a Range the /docs files cannot
 * serve, ...): the code its status has in the table, and its message, which describes the
 * request, not the server. A 403 of the static files (a `..` in the path) is a path that does
 * not exist as far as the client is concerned.
 */
function httpLayerError (status: number, message: string): AppError {
  if (status === 403 || status === 404) return new AppError('ROUTE_NOT_FOUND', 'no such path; see /docs')
  return new AppError(HTTP_LAYER_CODES[status] ?? 'BAD_REQUEST', HTTP_LAYER_MESSAGES[status] ?? message)
}

/** Clearer words than the static file server's bare reason phrases. */
const HTTP_LAYER_MESSAGES: Record<number, string> = {
  412: 'the file is not the version If-Match or If-Unmodified-Since names; fetch it again without them',
  416: 'the Range header asks for bytes the file does not have'
}

/** One thing wrong with a value, whichever validator found it: the dotted path, and the unknown keys it has. */
interface Issue {
  path: string
  unknownKeys: readonly PropertyKey[] | undefined
  message: string
}

/**
 * VALIDATION_FAILED naming each bad field: the one wording for a request body and for each item
 * of a batch. One detail per field; zod reports all unknown fields in one issue at the parent's path.
 */
function validationFailed (what: string, issues: readonly Issue[]): AppError {
  const details = issues.flatMap(({ path, unknownKeys, message }): ErrorDetail[] => unknownKeys === undefined
    ? [{ path, message }]
    : unknownKeys.map((key) => ({ path: path === '' ? String(key) : `${path}.${String(key)}`, message: 'is not a known field' })))
  const summary = details.map(({ path, message }) => path === '' ? message : `${path}: ${message}`).join('; ')
  return new AppError('VALIDATION_FAILED', `${what}: ${summary}`, { details })
}

/** The validation errors Fastify reports (through the zod type provider) as issues. */
function fromFastify (errors: readonly FastifySchemaValidationError[]): Issue[] {
  return errors.map((issue) => ({
    path: issue.instancePath.split('/').filter(Boolean).join('.'),
    unknownKeys: issue.keyword === 'unrecognized_keys' && Array.isArray(issue.params.keys) ? issue.params.keys : undefined,
    message: String(issue.message)
  }))
}

/** VALIDATION_FAILED for a value zod refused outside Fastify's own validation (an item of a batch): its ZodError, or the same issues from the schema's `~standard` interface. */
export function zodValidationFailed (what: string, error: Pick<z.ZodError, 'issues'>): AppError {
  return validationFailed(what, error.issues.map((issue) => ({
    path: issue.path.map(String).join('.'),
    unknownKeys: issue.code === 'unrecognized_keys' ? issue.keys : undefined,
    message: issue.message
  })))
}

export function toErrorBody (err: AppError): ErrorBody {
  return {
    statusCode: err.statusCode,
    code: err.code,
    // Every status in the error table has a reason phrase.
    error: String(STATUS_CODES[err.statusCode]),
    message: err.message,
    ...(err.details && { details: err.details })
  }
}

export function sendError (err: FastifyError | Error, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const appError = toAppError(err)
  request.outcome = appError.code
  if (appError.statusCode >= 500) request.log.error({ err }, 'request failed')
  if (appError.retryAfter !== undefined) reply.header('retry-after', String(appError.retryAfter))
  if (appError.headers !== undefined) reply.headers(appError.headers)
  reply.code(appError.statusCode)
  // A device that asked for text gets its error as text too: the same status, code and message.
  if (prefersText(request)) return reply.type(TEXT_PLAIN).send(textLines([['error', appError.code], ['message', appError.message]]))
  return reply.send(toErrorBody(appError))
}

const CLIENT_GONE = new Set(['ECONNRESET', 'HPE_INVALID_EOF_STATE'])

/** The answers to requests Node's parser refuses, by the parser's error code; anything else is 400. */
const CLIENT_ERRORS: Record<string, () => AppError> = {
  HPE_HEADER_OVERFLOW: () => new AppError('HEADERS_TOO_LARGE', 'the request headers are too large'),
  ERR_HTTP_REQUEST_TIMEOUT: () => new AppError('REQUEST_TIMEOUT', REQUEST_TIMEOUT_MESSAGE)
}

/** Requests whose body is a stream read for as long as it flows: REQUEST_TIMEOUT_MS does not cut them. */
const STREAMING = new WeakSet<IncomingMessage>()

/**
 * Exempts a request from REQUEST_TIMEOUT_MS (Node's check would end it however steadily it
 * flows). Whoever calls this bounds the stream's idle time instead.
 */
export function exemptFromRequestTimeout (request: IncomingMessage): void {
  STREAMING.add(request)
}

/** What Node's http server keeps on a socket: the response in flight on it, and its request. */
interface HttpSocket extends Duplex {
  _httpMessage?: ServerResponse | null
}

/**
 * Requests Node's HTTP parser refuses before Fastify sees them (a bad header, headers too large, a
 * request too slow to arrive) get the same error body as every other error, and one log line.
 * When a request's body is too slow, Fastify is already reading it: the timeout is handed to that
 * read, so the answer and its log line come from Fastify's own error path, as for any error.
 */
export function handleClientError (this: FastifyInstance, err: NodeJS.ErrnoException, socket: Duplex): void {
  // A client that reset or closed mid-request has nobody left to answer, and is not worth a log line.
  if (CLIENT_GONE.has(String(err.code)) || !socket.writable) {
    socket.destroy()
    return
  }
  const inFlight = (socket as HttpSocket)._httpMessage
  if (inFlight != null) {
    // A stream is long by design: it has its own idle limit instead (POST /sign/batch with NDJSON).
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT' && STREAMING.has(inFlight.req)) return
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT' && !inFlight.headersSent && inFlight.req.listenerCount('error') > 0) {
      inFlight.req.emit('error', err)
    } else {
      // An answer is on its way already, or its route does not read the body: nothing correct can be added.
      socket.destroy()
    }
    return
  }
  const appError = CLIENT_ERRORS[String(err.code)]?.() ?? new AppError('BAD_REQUEST', 'the request is not valid HTTP')
  const { rawPacket, bytesParsed } = err as ParserError
  const unread = rawPacket instanceof Buffer && typeof bytesParsed === 'number' ? rawPacket.length - bytesParsed : 0
  writeRawError(this, socket, appError, {
    problem: err.code,
    // The connection is closed after the answer: say so, and whether requests sent behind this one were lost with it.
    connection: 'closed',
    ...(unread > 0 && { unreadBytes: unread, note: 'bytes sent after the refused request (pipelined requests included) were not processed' })
  })
}

/** What Node's parser attaches to the error it reports. */
interface ParserError extends NodeJS.ErrnoException {
  rawPacket?: unknown
  bytesParsed?: unknown
}

/**
 * Answers on a bare socket (no Fastify request exists) with the usual error body, a request id
 * and `Connection: close`, and writes the one log line of that request.
 */
export function writeRawError (app: FastifyInstance, socket: Duplex, appError: AppError, logFields: Record<string, unknown> = {}): void {
  const reqId = randomUUID()
  const body = JSON.stringify(toErrorBody(appError))
  const extra = Object.entries(appError.headers ?? {}).map(([name, value]) => `${name}: ${value}\r\n`).join('')
  app.log.info({ reqId, statusCode: appError.statusCode, outcome: appError.code, ...logFields }, REQUEST_COMPLETED)
  socket.end(`HTTP/1.1 ${appError.statusCode} ${STATUS_CODES[appError.statusCode]}\r\nContent-Type: application/json\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\nX-Request-Id: ${reqId}\r\n${extra}Connection: close\r\n\r\n${body}`)
}

export default fp(async function errorHandler (app) {
  app.setErrorHandler(sendError)
  app.setNotFoundHandler((request, reply) => {
    return sendError(new AppError('ROUTE_NOT_FOUND', `no route ${request.method} ${request.url.slice(0, 200)}; see /docs`), request, reply)
  })
}, { name: 'error-handler', fastify: '5.x' })
