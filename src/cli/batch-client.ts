// One POST /sign/batch: streams NDJSON lines up, hands each result line back as it arrives, and says how it ended.
import { once } from 'node:events'
import { STATUS_CODES, request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { retryAfterMs } from './retry.js'

export const NDJSON = 'application/x-ndjson'

export interface BatchTarget {
  /** The service's base URL; the request goes to its path + /sign/batch. */
  url: URL
  /** Sent as `Authorization: Bearer <token>`; never written anywhere else. */
  token: string | undefined
  /** An attempt on which nothing moves for this long is given up (and retried). */
  timeoutMs: number
}

/** The fields of a result line the command line reads. Signed results carry the credential fields too. */
export type ResultLine = { line: number, ok: true } & Record<string, unknown> | { line: number, ok: false, error: { code: string, message: string } }

/** How an attempt ended: with its summary line, or in a way worth another attempt, or not. */
export type Outcome =
  | { kind: 'complete', broker: unknown }
  | { kind: 'retry', reason: string, retryAfterMs?: number }
  | { kind: 'fatal', reason: string }

/** The service answered something that is not the batch protocol: retrying would not help. */
export class ProtocolError extends Error {
  override name = 'ProtocolError'
}

/** Carries an error thrown by the caller's onResult out of the request, to be thrown again as it was. */
class CallerError extends Error {
  readonly error: unknown
  constructor (error: unknown) {
    super('onResult failed')
    this.error = error
  }
}

/** Whole-request refusals that say "later": rate limits, and a service that is stopping, starting or behind a proxy that lost it. */
const RETRY_STATUSES = new Set([429, 502, 503, 504])

/** The longest line a result can take; more means this is not the signing service. */
const MAX_RESULT_LINE = 64 * 1024

/** The URL of POST /sign/batch under the base URL (which may have a path of its own, behind a proxy). */
export function batchUrl (base: URL): URL {
  const url = new URL(base)
  url.pathname = url.pathname.replace(/\/+$/, '') + '/sign/batch'
  url.search = ''
  url.hash = ''
  return url
}

/** The base URL, for messages: without credentials, query or fragment. */
export function describeUrl (url: URL): string {
  return url.origin + url.pathname.replace(/\/+$/, '')
}

/**
 * Sends the lines of `body` as one NDJSON request and passes each result line to `onResult`, in
 * order; `onResult` may return a promise to hold up reading (backpressure from the outputs).
 * Network failures, a cut answer and the refusals that mean "later" are `retry`; an answer that
 * is not the batch protocol, or a refusal that another attempt would not change, is `fatal`.
 * An error thrown by `onResult` is thrown again (a ProtocolError is `fatal`); one thrown by
 * `body` ends the attempt as `retry`, since the request fails with it: the caller knows why.
 */
export async function postBatch (target: BatchTarget, body: AsyncIterable<string>, onResult: (result: ResultLine) => void | Promise<void>, signal: AbortSignal): Promise<Outcome> {
  const headers: Record<string, string> = { 'content-type': NDJSON, accept: NDJSON }
  if (target.token !== undefined) headers.authorization = `Bearer ${target.token}`
  const send = target.url.protocol === 'https:' ? httpsRequest : httpRequest
  const req = send(batchUrl(target.url), { method: 'POST', headers, signal })
  // Errors also show up where the request is awaited below; this keeps a late one from being unhandled.
  req.on('error', () => {})
  req.setTimeout(target.timeoutMs, () => req.destroy(Object.assign(new Error(`nothing moved for ${target.timeoutMs / 1000} s`), { code: 'ETIMEDOUT' })))
  // highWaterMark 1: take the next batch from the input only when the connection wants more.
  pipeline(Readable.from(body, { highWaterMark: 1 }), req).catch(() => {})
  return await answerOf(req, target.url, onResult)
    .catch((caught: unknown) => failureOf(caught, target.url))
    .finally(() => req.destroy())
}

async function answerOf (req: ClientRequest, base: URL, onResult: (result: ResultLine) => void | Promise<void>): Promise<Outcome> {
  const [response] = await once(req, 'response') as [IncomingMessage]
  if (response.statusCode !== 200) return await refusal(response, base)
  const type = String(response.headers['content-type'])
  if (!type.startsWith(NDJSON)) throw new ProtocolError(`the answer is ${type}, not ${NDJSON}`)
  return await readResults(response, onResult)
}

/** What ended an attempt early: fatal for a ProtocolError, thrown again for an error of onResult, else worth a retry. */
function failureOf (caught: unknown, base: URL): Outcome {
  const err = caught instanceof CallerError ? caught.error : caught
  if (err instanceof ProtocolError) return { kind: 'fatal', reason: `${describeUrl(base)} does not answer like the signing service (${err.message}); check --url` }
  if (caught instanceof CallerError) throw err
  return { kind: 'retry', reason: describeFailure(err) }
}

/** Errors of a connection that never opened; the others cut one that had. */
const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH'])

/** A network failure in a few words: its code (ECONNREFUSED, ECONNRESET, ...); every error met here has one. */
function describeFailure (err: unknown): string {
  const { code, message } = err as NodeJS.ErrnoException
  if (code === 'ETIMEDOUT') return `no answer (${message})`
  if (UNREACHABLE.has(String(code))) return `cannot reach the service (${code})`
  return `the connection failed (${String(code)})`
}

async function readResults (response: IncomingMessage, onResult: (result: ResultLine) => void | Promise<void>): Promise<Outcome> {
  response.setEncoding('utf8')
  let rest = ''
  for await (const chunk of response as AsyncIterable<string>) {
    const text = rest + chunk
    let start = 0
    for (let end = text.indexOf('\n', start); end !== -1; end = text.indexOf('\n', start)) {
      const value = parseLine(text.slice(start, end))
      start = end + 1
      if ('summary' in value) return { kind: 'complete', broker: value.broker }
      if (!('line' in value)) {
        // The service ended the stream itself (REQUEST_TIMEOUT): what was answered stays answered.
        const { error } = value as { error?: { code?: unknown, message?: unknown } }
        return { kind: 'retry', reason: `the service ended the answer: ${String(error?.code)}: ${String(error?.message)}` }
      }
      const result = checkResult(value)
      try {
        await onResult(result)
      } catch (err) {
        throw new CallerError(err)
      }
    }
    rest = text.slice(start)
    if (rest.length > MAX_RESULT_LINE) throw new ProtocolError(`a line of the answer is longer than ${MAX_RESULT_LINE} bytes`)
  }
  return { kind: 'retry', reason: 'the answer was cut before its summary line' }
}

/** Never quotes the line: a result holds a password. */
function parseLine (line: string): Record<string, unknown> {
  let value: unknown
  try {
    value = JSON.parse(line)
  } catch {
    throw new ProtocolError('a line of the answer is not JSON')
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ProtocolError('a line of the answer is not a JSON object')
  return value as Record<string, unknown>
}

function checkResult (value: Record<string, unknown>): ResultLine {
  const { line, ok, error } = value as { line: unknown, ok: unknown, error?: { code?: unknown, message?: unknown } }
  const wellFormed = typeof line === 'number' && (ok === true || (ok === false && typeof error?.code === 'string' && typeof error.message === 'string'))
  if (!wellFormed) throw new ProtocolError('a result line has no line number, ok flag or error')
  return value as ResultLine
}

/** A whole-request refusal (before any result): worth a retry when it says "later", otherwise fatal. */
async function refusal (response: IncomingMessage, base: URL): Promise<Outcome> {
  const status = response.statusCode as number
  const body = await readErrorBody(response)
  const what = [status, body?.code ?? STATUS_CODES[status]].join(' ').trim() + (body?.message === undefined ? '' : `: ${body.message}`)
  if (RETRY_STATUSES.has(status)) {
    const header = response.headers['retry-after']
    return { kind: 'retry', reason: `the service answered ${what}`, retryAfterMs: retryAfterMs(header) }
  }
  if (status === 401 || status === 403) return { kind: 'fatal', reason: `the service refused the request (${what}); check --token or ENOS_SIGNER_TOKEN` }
  if (status === 404 || status === 405) return { kind: 'fatal', reason: `the service answered ${what}: ${describeUrl(base)} has no POST /sign/batch; check --url` }
  return { kind: 'fatal', reason: `the service answered ${what}` }
}

/** The `{ code, message }` of an error body, if it is one; at most 64 KiB is read. */
async function readErrorBody (response: IncomingMessage): Promise<{ code?: string, message?: string } | undefined> {
  let text = ''
  try {
    for await (const chunk of response as AsyncIterable<Buffer>) {
      text += chunk.toString()
      if (text.length > MAX_RESULT_LINE) break
    }
  } catch {
    // The service may close the connection right after its answer while the request is still being sent.
  }
  try {
    const { code, message } = JSON.parse(text) as { code?: unknown, message?: unknown }
    return { ...(typeof code === 'string' && { code }), ...(typeof message === 'string' && { message }) }
  } catch {
    return undefined
  }
}
