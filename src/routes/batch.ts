// POST /sign/batch: many devices in one request, as a JSON batch or as an NDJSON stream; one bad item fails alone.
import { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyBaseLogger, FastifyReply, FastifyRequest } from 'fastify'
import { validatorCompiler, type FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import type { z } from 'zod'
import type { SignMethod } from '../core/sign-method.js'
import { AppError, isAppError, type ErrorCode } from '../errors.js'
import { exemptFromRequestTimeout, zodValidationFailed } from '../plugins/error-handler.js'
import {
  MAX_REFERENCE_LENGTH, batchEnvelopeSchema, batchItemSchema, batchLineSchema, batchRequestSchema, batchResponseSchema,
  writeBroker, writeFailed, writePosition, writeSigned, writeSummary, type BatchItem, type BatchSummary
} from '../schemas/batch.js'
import type { Broker } from '../schemas/credentials.js'
import { deviceRefusal, requireScope, type Caller } from '../auth/caller.js'
import type { BatchAudit } from '../plugins/request-log.js'
import { callerOf } from '../plugins/auth.js'
import { callerKey, type BatchLimits } from '../plugins/rate-limits.js'
import { newBatchAudit, noteFailure, noteSigned, type ItemPosition } from '../plugins/request-log.js'
import { ACCESS_ERRORS, COMMON_ERRORS, SECURITY, errorResponses } from '../schemas/error.js'
import { REQUEST_ID_HEADER } from '../schemas/response.js'
import { signFound, type SignDefaults } from '../sign-device.js'
import type { DeviceLookup, DeviceStore } from '../store/store.js'
import { IdleStreamError, splitLines, withIdleLimit, type Line } from './ndjson-lines.js'

export interface BatchRouteOptions {
  defaultSignMethod: SignMethod
  broker: Broker | undefined
  /** Epoch milliseconds; one timestamp per batch for the items that name none. */
  clock: () => number
  /** BATCH_MAX_ITEMS: the most items of a JSON batch. */
  maxItems: number
  /** BATCH_STREAM_MAX_ITEMS: the most lines one NDJSON stream answers. */
  streamMaxItems: number
  /** BATCH_STREAM_MAX_MS: the longest one NDJSON stream stays open. */
  streamMaxMs: number
  /** The longest NDJSON line, in bytes (BODY_LIMIT, the largest body of a single POST /sign). */
  maxLineBytes: number
  /** An NDJSON stream that sends nothing for this long is ended (REQUEST_TIMEOUT_MS). */
  idleMs: number
  /** BATCH_STREAMS_PER_CALLER: the most NDJSON streams one caller has open at once; 0 is no limit. */
  streamsPerCaller: number
}

export const NDJSON = 'application/x-ndjson'

/**
 * The body limit of a JSON batch: this much per item. A full item with every field at its
 * longest is about 500 bytes of JSON; the rest leaves room for escapes and indentation.
 */
export const BYTES_PER_ITEM = 1024

/**
 * The most lines of an NDJSON stream signed, and answered, in one step: a chunk of many short
 * lines (a 64 KiB chunk holds 20,000 lines of `{}`) is answered in slices of this many, each written
 * only when the answer can take it, so the work and memory per step stay bounded (a slice's
 * answer is at most about 100 KB).
 */
export const STREAM_SLICE_LINES = 256

/** Retry-After (seconds) of a stream refused for BATCH_STREAMS_PER_CALLER: a stream of the caller's must end first. */
const STREAMS_RETRY_AFTER_SECONDS = 5

/** The item's reference when it has a usable one, so that even a failed item can be matched up. */
function referenceOf (value: unknown): string | undefined {
  const reference = typeof value === 'object' && value !== null ? (value as { reference?: unknown }).reference : undefined
  return typeof reference === 'string' && reference.length <= MAX_REFERENCE_LENGTH ? reference : undefined
}

/**
 * Checks one item against batchItemSchema through its Standard Schema interface: the same value
 * and issues as safeParse, without the object safeParse answers a failure with (its lazy `error`
 * getter). A stream of bad lines fails item after item, and each such answer outlived V8's young
 * generation: 1,000,000 failed items promoted about 540 MB into the old space with safeParse,
 * 4 MB this way (--trace-gc-nvp), and that old space, not yet collected, was most of the memory
 * of streams whose clients never read.
 */
function checkItem (value: unknown): { item: BatchItem } | { error: AppError } {
  const result = batchItemSchema['~standard'].validate(value)
  /* c8 ignore next -- batchItemSchema has no async check, so validate answers at once */
  if (result instanceof Promise) throw new TypeError('batchItemSchema must validate synchronously')
  if (result.issues !== undefined) return { error: zodValidationFailed('invalid device', { issues: result.issues as z.core.$ZodIssue[] }) }
  return { item: result.value }
}

function isStream (body: unknown): body is Readable {
  return body instanceof Readable
}

interface Signing {
  store: DeviceStore
  defaults: SignDefaults
  summary: BatchSummary
  /** What the request's audit line says of the items: the failed ones and the signed ones by product. */
  audit: BatchAudit
  log: FastifyBaseLogger
  caller: Caller
  /** The caller's items budget and the devices' own limits, counted item by item. */
  limits: BatchLimits
}

/** One item of a group to sign: where its result goes, and the item as sent. Or its result already, when the line could not be read. */
type Entry = { at: ItemPosition, position: string, value: unknown } | { at: ItemPosition, failed: string, code: string }

const INTERNAL_MESSAGE = 'internal error; the request id in the logs tells what happened'

/**
 * The results of a group of items, as JSON text in their order, counted in the summary: all of a
 * JSON batch, or the lines of one chunk of a stream. The group is looked up in the store with one
 * call. Every failure of one item ends in its own result, so it fails alone; a failure that is not
 * an AppError is a bug, logged with its cause and answered INTERNAL, as POST /sign would.
 */
async function resultsOf (signing: Signing, entries: readonly Entry[], access?: () => StreamStop | undefined): Promise<string[]> {
  const { summary, audit, log } = signing
  const results: string[] = new Array<string>(entries.length)
  const valid: Array<{ at: number, position: string, item: BatchItem }> = []
  const fail = (at: number, text: string, code: string, item?: BatchItem): void => {
    summary.failed++
    results[at] = text
    noteFailure(audit, { ...(entries[at] as Entry).at, ...(item !== undefined && { productKey: item.productKey, deviceKey: item.deviceKey }), code })
  }
  const failWith = (at: number, error: AppError, item?: BatchItem): void => fail(at, writeFailed((entries[at] as { position: string }).position, error), error.code, item)
  entries.forEach((entry, at) => {
    summary.total++
    if ('failed' in entry) return fail(at, entry.failed, entry.code)
    const checked = checkItem(entry.value)
    if ('error' in checked) return failWith(at, checked.error)
    const refusal = deviceRefusal(signing.caller, checked.item.productKey, checked.item.deviceKey)
    if (refusal !== undefined) return failWith(at, refusal, checked.item)
    valid.push({ at, position: entry.position, item: checked.item })
  })
  // The caller's items budget, for the whole group at once; the items past it are not looked up.
  const within = await signing.limits.items(valid.length)
  if (within !== undefined && within < valid.length) {
    const refusal = signing.limits.itemsRefusal()
    for (const { at, item } of valid.splice(within)) failWith(at, refusal, item)
  }
  let devices: DeviceLookup[]
  try {
    devices = await signing.store.findDevices(valid.map(({ item }) => item))
  } catch (err) {
    const error = isAppError(err) ? err : new AppError('INTERNAL', INTERNAL_MESSAGE)
    // The items' message is fixed; the cause (the store's own words) is logged here, under the request id.
    log.error({ err }, 'batch lookup failed')
    for (const { at, item } of valid) failWith(at, error, item)
    return results
  }
  const failure = devices.find(isAppError)
  if (failure !== undefined) log.error({ err: failure }, 'batch lookup failed for the devices without a usable cache entry')
  // The per-device limit that POST /sign counts too, only for devices the store holds.
  const found = valid.filter((_, i) => devices[i] !== undefined && !isAppError(devices[i])).map(({ item }) => item)
  const overLimit = await signing.limits.devices(found)
  // The awaits above can last up to STORE_TIMEOUT_MS, and the token may have been removed, expired
  // or narrowed meanwhile: a stream takes its caller again here, after the last await and before
  // anything is signed. Access that ended fails the items still unsigned with its code.
  const ended = access?.()
  if (ended !== undefined) {
    const error = new AppError(ended.code, ended.why)
    for (const { at, item } of valid) failWith(at, error, item)
    return results
  }
  let foundAt = 0
  valid.forEach(({ at, position, item }, i) => {
    const device = devices[i]
    // A device the store could not look up fails alone; the others are answered (a cache in an outage).
    if (isAppError(device)) return failWith(at, device, item)
    const refusal = (device === undefined ? undefined : overLimit?.[foundAt++]) ??
      // Checked again against the caller now in force: a token narrowed during the lookup.
      deviceRefusal(signing.caller, item.productKey, item.deviceKey)
    if (refusal !== undefined) return failWith(at, refusal, item)
    try {
      results[at] = writeSigned(position, signFound(device, item, signing.defaults))
      summary.signed++
      noteSigned(audit, item.productKey)
    } catch (err) {
      // signFound throws only AppErrors: the table's answers for one device.
      failWith(at, err as AppError, item)
    }
  })
  return results
}

/** The entry of one NDJSON input line: the value on it, or its result when it cannot be read. */
function lineEntry (line: Line, maxLineBytes: number): Entry {
  const at = { line: line.number }
  const position = (reference?: string): string => writePosition('line', line.number, reference)
  const unreadable = (error: AppError): Entry => ({ at, failed: writeFailed(position(), error), code: error.code })
  if (!('text' in line)) {
    return unreadable(new AppError('PAYLOAD_TOO_LARGE', `line ${line.number} is longer than ${maxLineBytes} bytes (BODY_LIMIT); one line holds one device`))
  }
  try {
    const value: unknown = JSON.parse(line.text)
    return { at, position: position(referenceOf(value)), value }
  } catch {
    return unreadable(new AppError('MALFORMED_JSON', `line ${line.number} is not valid JSON`))
  }
}

/**
 * Why a stream ends before its input does: the code of its error line and of its audit line's
 * outcome, what happened, and whether the client should send the rest in a new stream.
 */
interface StreamStop { code: ErrorCode, why: string, resend: boolean }

/** The stops that end a stream's access (its token removed, expired, or without sign:batch): its lines not yet signed are not signed. */
type AccessStop = StreamStop & { code: 'UNAUTHENTICATED' | 'FORBIDDEN' }

/** The reason of an aborted stream, as thrown by withIdleLimit. */
class StreamStopped extends Error {
  override name = 'StreamStopped'
  readonly stop: StreamStop
  constructor (stop: StreamStop) {
    super(stop.why)
    this.stop = stop
  }
}

/** The longest the app's close waits for cut streams to write their audit lines (it takes a turn or two). */
const CUT_STREAMS_WAIT_MS = 1000

/** setTimeout's longest delay; a later deadline is armed again when it comes. */
const MAX_TIMER_MS = 2 ** 31 - 1

/**
 * One open NDJSON stream, as the registry of its app sees it: who it signs for now, and when it
 * must end. Its caller is taken again whenever the token file changes and when its token
 * expires, so a removed, expired or narrowed token stops signing on the streams it holds as it
 * does on new requests; the stream also ends at BATCH_STREAM_MAX_MS, idle or not.
 */
class OpenStream {
  readonly #controller = new AbortController()
  readonly #deadline: number
  readonly #signing: Signing
  readonly #caller: () => Caller
  readonly #maxMs: number
  readonly #onStop: (stop: StreamStop) => void
  readonly #registry: Set<OpenStream>
  readonly #onClosed: Array<() => void> = []
  #timer: NodeJS.Timeout | undefined
  /** Set once the caller is refused: kept even when the stream was already ended for another reason (shutdown). */
  #revoked: AccessStop | undefined

  /** Opens the stream in `registry`, where it stays until close(). */
  constructor (registry: Set<OpenStream>, signing: Signing, caller: () => Caller, maxMs: number, onStop: (stop: StreamStop) => void) {
    this.#registry = registry
    this.#signing = signing
    this.#caller = caller
    this.#maxMs = maxMs
    this.#deadline = Date.now() + maxMs
    this.#onStop = onStop
    registry.add(this)
    this.#arm()
  }

  /** Aborted when the stream must end: no more input is read; what was read is answered. */
  get signal (): AbortSignal {
    return this.#controller.signal
  }

  /** Ends the stream at its next step (the first reason stands). */
  stop (stop: StreamStop): void {
    if (this.#controller.signal.aborted) return
    clearTimeout(this.#timer)
    this.#onStop(stop)
    this.#controller.abort(new StreamStopped(stop))
  }

  /** Takes the caller again (the token file changed, or a deadline came): the stream goes on with it, or ends. */
  check (): void {
    if (Date.now() >= this.#deadline) {
      this.stop({ code: 'STREAM_LIMIT_REACHED', why: `a stream stays open at most ${this.#maxMs} ms (BATCH_STREAM_MAX_MS)`, resend: true })
    }
    // Even a stream already ended is asked: the lines it has read are answered, and signed only if its caller still may.
    let caller: Caller
    try {
      caller = this.#caller()
      requireScope(caller, 'sign:batch')
    } catch (err) {
      // currentCaller and requireScope throw only these: UNAUTHENTICATED, FORBIDDEN.
      const { code, message } = err as AppError & { code: AccessStop['code'] }
      this.#revoked = { code, why: message, resend: false }
      return this.stop(this.#revoked)
    }
    this.#signing.caller = caller
    if (!this.#controller.signal.aborted) this.#arm()
  }

  /** Takes the caller again now (see check) and tells whether the stream may still sign: undefined, or why not. */
  access (): AccessStop | undefined {
    if (this.#revoked === undefined) this.check()
    return this.#revoked
  }

  /** Resolves once close() has run: the stream's answer has ended, or was cut (its log line is written by then). */
  async closed (): Promise<void> {
    return new Promise((resolve) => { this.#onClosed.push(resolve) })
  }

  close (): void {
    clearTimeout(this.#timer)
    this.#registry.delete(this)
    for (const resolve of this.#onClosed) resolve()
  }

  /** One timer, for the nearer of the stream's deadline and its token's expiry. */
  #arm (): void {
    clearTimeout(this.#timer)
    const expires = this.#signing.caller.expires?.getTime() ?? Infinity
    const at = Math.min(this.#deadline, expires)
    this.#timer = setTimeout(() => this.check(), Math.min(MAX_TIMER_MS, Math.max(0, at - Date.now())))
  }
}

/** The error line and the summary line that end a stream early. */
function stoppedLines (stop: StreamStop, summary: BatchSummary, lastLine: number, broker: Broker | undefined): string {
  const message = `${stop.why}; it was ended after line ${lastLine}, with ${summary.signed} devices signed` +
    (stop.resend ? '; send the rest in a new stream' : '')
  return JSON.stringify({ error: { code: stop.code, message } }) + '\n' +
    '{"summary":' + writeSummary(summary) + ',"complete":false' + writeBroker(broker) + '}\n'
}

/**
 * The NDJSON answer: one result line per input line as the input arrives, then the summary line.
 * The lines are answered in slices of at most STREAM_SLICE_LINES, one chunk of output each. It
 * is pulled by the response stream, a slice at a time, so a reader that is slow holds up the
 * signing and the reading of the input too (backpressure both ways). A
 * stream ended early (idle, a limit, its token, shutdown) answers the lines it has read, then an
 * error line and the summary marked `"complete":false`.
 */
async function * streamResults (signing: Signing, input: Readable, open: () => OpenStream, options: BatchRouteOptions, onEnd: (outcome: string, reason?: string) => void): AsyncGenerator<string> {
  const { summary } = signing
  let lastLine = 0
  let stop: StreamStop
  // Opened when the answer starts to be read, so that every stream opened is closed below.
  const stream = open()
  try {
    // An empty first chunk sends the status and headers now: a client that waits for them before
    // sending its lines (as fetch does) would otherwise wait for a server waiting for its lines.
    yield ''
    for await (let lines of splitLines(withIdleLimit(input, options.idleMs, stream.signal), options.maxLineBytes, STREAM_SLICE_LINES)) {
      const room = options.streamMaxItems - summary.total
      if (lines.length > room) {
        lines = lines.slice(0, room)
        stream.stop({ code: 'STREAM_LIMIT_REACHED', why: `a stream answers at most ${options.streamMaxItems} lines (BATCH_STREAM_MAX_ITEMS)`, resend: true })
      }
      if (lines.length === 0) continue
      const results = await resultsOf(signing, lines.map((line) => lineEntry(line, options.maxLineBytes)), () => stream.access())
      lastLine = (lines.at(-1) as Line).number
      // Joined with its last newline, into one flat string: `join() + '\n'` made a rope that the
      // socket's write flattened into a second copy of the slice, which then waited there.
      results.push('')
      yield results.join('\n')
    }
    stream.signal.throwIfAborted()
  } catch (err) {
    if (err instanceof IdleStreamError) {
      stop = { code: 'REQUEST_TIMEOUT', why: `the stream sent nothing for ${options.idleMs} ms (REQUEST_TIMEOUT_MS)`, resend: true }
      onEnd(stop.code, stop.why)
    } else if (err instanceof StreamStopped) {
      stop = err.stop
    } else {
      onEnd('aborted')
      return
    }
    yield stoppedLines(stop, summary, lastLine, options.broker)
    return
  } finally {
    stream.close()
  }
  onEnd('signed')
  yield '{"summary":' + writeSummary(summary) + writeBroker(options.broker) + '}\n'
}

/**
 * Sends text already written to the shape of the response schema (by the writers of
 * schemas/batch.ts, tested against it): Fastify sends a string or a stream as it is.
 */
function sendWritten (reply: FastifyReply, type: string, payload: string | Readable): FastifyReply {
  return reply.type(type).send(payload)
}

const batchRoute: FastifyPluginAsyncZod<BatchRouteOptions> = async (app, options) => {
  const { defaultSignMethod, broker, clock, maxItems } = options
  // The NDJSON streams open now: each takes its caller again when the token file changes, and
  // each is ended (after answering what it has read) when the service shuts down.
  const streams = new Set<OpenStream>()
  // The NDJSON streams each caller (callerKey) has open now, for BATCH_STREAMS_PER_CALLER.
  const openPerCaller = new Map<string, number>()
  /** Counts a new stream of the request's caller, refused past the limit; the count is released when its connection closes. */
  const holdStreamSlot = (request: FastifyRequest, reply: FastifyReply): void => {
    const key = callerKey(request)
    const held = openPerCaller.get(key) ?? 0
    if (options.streamsPerCaller > 0 && held >= options.streamsPerCaller) {
      // The body is not read: the connection ends with this answer.
      reply.header('connection', 'close')
      throw new AppError('RATE_LIMITED', `this caller already has ${held} NDJSON streams open, the most allowed (BATCH_STREAMS_PER_CALLER): ` +
        `end one, or retry after ${STREAMS_RETRY_AFTER_SECONDS} s`, { retryAfter: STREAMS_RETRY_AFTER_SECONDS })
    }
    openPerCaller.set(key, held + 1)
    let released = false
    const release = (): void => {
      if (released) return
      released = true
      const left = (openPerCaller.get(key) as number) - 1
      if (left === 0) openPerCaller.delete(key)
      else openPerCaller.set(key, left)
    }
    // Whichever comes first: the answer ended (or cut), or its connection closed.
    reply.raw.once('close', release)
    request.raw.socket.once('close', release)
    /* c8 ignore next -- a client gone between its headers and the route: the close events have passed already */
    if (reply.raw.destroyed || request.raw.socket.destroyed) release()
  }
  const unsubscribe = app.onTokensChanged(() => {
    for (const stream of streams) stream.check()
  })
  app.addHook('preClose', (done) => {
    for (const stream of streams) stream.stop({ code: 'SHUTTING_DOWN', why: 'the service is shutting down', resend: true })
    done()
  })
  app.addHook('onClose', async () => {
    unsubscribe()
    // Runs once the server has closed. A stream cut at SHUTDOWN_TIMEOUT_MS writes its audit line as
    // its response closes, which comes just after: the process must not exit before that.
    await Promise.race([Promise.all([...streams].map(async (stream) => stream.closed())), sleep(CUT_STREAMS_WAIT_MS, undefined, { ref: false })])
  })

  // The NDJSON body is handed to the route as the stream it is: read as it arrives, never whole.
  app.addContentTypeParser(NDJSON, (request, payload, done) => {
    exemptFromRequestTimeout(request.raw)
    done(null, payload)
  })

  app.post('/sign/batch', {
    config: { scope: 'sign:batch', audit: true },
    onRequest: app.limits.perCaller,
    bodyLimit: maxItems * BYTES_PER_ITEM + BYTES_PER_ITEM,
    // The documented body lists whole items; the check here is only the envelope, so that a bad
    // item fails alone instead of failing the batch. A stream is read, and checked, line by line.
    validatorCompiler: (route) => {
      const validateEnvelope = validatorCompiler({ ...route, schema: batchEnvelopeSchema })
      return (data: unknown) => isStream(data) ? { value: data } : validateEnvelope(data)
    },
    schema: {
      tags: ['signing'],
      operationId: 'signBatch',
      summary: 'Sign MQTT CONNECT credentials for many devices',
      description: `As JSON: at most BATCH_MAX_ITEMS devices, answered with one result per device, in order. As ${NDJSON}: ` +
        'one device per line, any number, answered line by line as the lines arrive and ended by a summary line. ' +
        'Each device is checked and signed on its own, with the codes POST /sign would answer: a bad item fails alone.',
      security: SECURITY,
      body: {
        content: {
          'application/json': { schema: batchRequestSchema },
          [NDJSON]: { schema: batchItemSchema.describe('One device per line (a JSON object on one line).') }
        }
      },
      response: {
        200: {
          description: 'One result per device, in order, and the summary; as JSON, or as NDJSON lines when the body was NDJSON.',
          headers: REQUEST_ID_HEADER,
          content: { 'application/json': { schema: batchResponseSchema }, [NDJSON]: { schema: batchLineSchema } }
        },
        ...errorResponses({
          ...ACCESS_ERRORS,
          403: 'The caller lacks the sign:batch scope (FORBIDDEN). An item for a product or device the caller may not sign for fails alone, with FORBIDDEN.',
          400: 'The body is not a batch: not JSON (MALFORMED_JSON), or not an object with a non-empty `devices` array and nothing else (VALIDATION_FAILED). A bad item is not this: it fails in its own result.',
          413: 'More than BATCH_MAX_ITEMS devices (BATCH_TOO_LARGE: stream them as NDJSON instead), or a JSON body larger than 1 KiB per allowed device (PAYLOAD_TOO_LARGE).',
          408: COMMON_ERRORS[408],
          429: `Too many requests from this caller (RATE_LIMIT_PER_CALLER), or, for an ${NDJSON} stream, BATCH_STREAMS_PER_CALLER streams of this caller are open already (RATE_LIMITED); retry after Retry-After seconds.`,
          415: `The body is neither application/json nor ${NDJSON} (UNSUPPORTED_MEDIA_TYPE).`,
          500: COMMON_ERRORS[500],
          503: 'The service is stopping (SHUTTING_DOWN) or overloaded (OVERLOADED: only a new request; a stream already open is never cut); retry after Retry-After seconds. A store that cannot answer fails each item instead (STORE_UNAVAILABLE).'
        })
      }
    }
  }, async (request, reply) => {
    const summary = { total: 0, signed: 0, failed: 0 }
    const audit = newBatchAudit()
    request.batchAudit = audit
    const signing: Signing = {
      store: app.storeFor(request),
      defaults: { signMethod: defaultSignMethod, timestamp: String(clock()) },
      summary,
      audit,
      log: request.log,
      caller: callerOf(request),
      limits: app.limits.batch(request)
    }
    const body: unknown = request.body
    if (isStream(body)) {
      holdStreamSlot(request, reply)
      request.batch = summary
      // Long-lived and one per connection: the connection ends with the answer.
      reply.header('connection', 'close')
      const onEnd = (outcome: string, reason?: string): void => {
        request.outcome = outcome
        if (reason !== undefined) request.reason = reason
      }
      const open = (): OpenStream => new OpenStream(streams, signing, () => app.currentCaller(request), options.streamMaxMs, (stop) => onEnd(stop.code, stop.why))
      // One slice waits in the response stream at most: the next one is signed once it is taken.
      return sendWritten(reply, NDJSON, Readable.from(streamResults(signing, body, open, options, onEnd), { highWaterMark: 1 }))
    }
    const { devices } = body as { devices: unknown[] }
    if (devices.length > maxItems) {
      throw new AppError('BATCH_TOO_LARGE', `a batch holds at most ${maxItems} devices (BATCH_MAX_ITEMS) and this one has ${devices.length}: split it, or stream it as ${NDJSON}`)
    }
    request.batch = summary
    const results = await resultsOf(signing, devices.map((value, index) => ({ at: { index }, position: writePosition('index', index, referenceOf(value)), value })))
    request.outcome = 'signed'
    return sendWritten(reply, 'application/json; charset=utf-8', '{"results":[' + results.join(',') + '],"summary":' + writeSummary(summary) + writeBroker(broker) + '}')
  })
}

export default batchRoute
