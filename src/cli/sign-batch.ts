// `enos-mqtt-signer sign-batch`: signs every device of a file with one streamed POST /sign/batch, resuming after failures.
import { constants } from 'node:os'
import { resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Command, InvalidArgumentError, Option } from 'commander'
import { describeUrl, postBatch, type BatchTarget, type Outcome, type ResultLine } from './batch-client.js'
import { Feed, type Deliver, type DeliverUnreadable } from './feed.js'
import type { Io } from './io.js'
import { INPUT_FORMATS, countItems, inputFormatOf, openInput, readInput, type Device, type InputFormat, type InputRecord, type Unreadable } from './inputs.js'
import { CREDENTIAL_COLUMNS, ERROR_COLUMNS, OUTPUT_FORMATS, OutputError, openRows, outputFormatOf, type OutputFormat, type RowWriter } from './outputs.js'
import { createProgress, progressMode, type Progress } from './progress.js'
import { DEFAULT_BACKOFF, retryDelay } from './retry.js'
import { UsageError } from './usage-error.js'

export interface SignBatchOptions {
  url: string
  in: string
  out: string
  format?: InputFormat
  outFormat?: OutputFormat
  errors?: string
  token?: string
  quiet: boolean
  retries: number
  maxDelay: number
  timeout: number
}

/** Records sent and waiting for their results, at most (plus one batch): past that, input reading pauses. */
export const MAX_UNANSWERED = 10_000

/** Failures listed on stderr; --errors has them all. */
export const MAX_LISTED_FAILURES = 20

const NAME = 'sign-batch'

const EXIT_CODES = `
Exit status:
  0  every device was signed
  1  some devices failed (listed on stderr, all of them in --errors FILE); the others are in --out
  2  usage error (options, unreadable input, bad CSV header), or the service could not be reached
     or refused the request after the retries; nothing is written to --out
  130, 143  interrupted (SIGINT, SIGTERM); nothing is written to --out

Examples:
  enos-mqtt-signer sign-batch --url http://127.0.0.1:8080 --in devices.csv --out credentials.csv --errors failed.csv
  generate-devices | enos-mqtt-signer sign-batch --url http://signer:8080 --in - --format ndjson --out - --out-format ndjson
`

function wholeNumber (min: number, max: number) {
  return (value: string): number => {
    if (!/^\d{1,9}$/.test(value) || Number(value) < min || Number(value) > max) throw new InvalidArgumentError(`must be a whole number from ${min} to ${max}`)
    return Number(value)
  }
}

export function signBatchCommand (io: Io): Command {
  return new Command(NAME)
    .summary('sign MQTT credentials for every device of a CSV, JSON or NDJSON file')
    .description('Signs MQTT CONNECT credentials for every device of a file through the service\'s POST /sign/batch, streamed as one request. ' +
      'Retries when the service is unreachable, busy (429) or restarting (503), resuming after the last device answered: every device ends up in the output exactly once.')
    .requiredOption('--url <url>', 'base URL of the signing service, e.g. http://127.0.0.1:8080')
    .requiredOption('--in <file>', 'devices to sign: .csv (header productKey,deviceKey[,clientId][,timestamp][,signMethod][,reference], any order), .json ({ "devices": [...] }) or .ndjson/.jsonl (one device per line); - reads standard input and needs --format')
    .requiredOption('--out <file>', 'where the credentials go: .csv (productKey,deviceKey,reference,clientId,timestamp,signMethod,mqttClientId,mqttUsername,mqttPassword, signed devices only) or .ndjson/.jsonl (every result); it appears only once complete. - writes standard output and needs --out-format')
    .addOption(new Option('--format <format>', 'format of --in, instead of its extension').choices(INPUT_FORMATS))
    .addOption(new Option('--out-format <format>', 'format of --out, instead of its extension').choices(OUTPUT_FORMATS))
    .option('--errors <file>', 'also write every failed device to this CSV file (line,reference,code,message)')
    .addOption(new Option('--token <token>', 'bearer token sent to the service; prefer the environment variable, since a command line is visible to other users').env('ENOS_SIGNER_TOKEN'))
    .option('--quiet', 'no progress and no retry notices (the summary and the failures are still printed)', false)
    .addOption(new Option('--retries <n>', 'attempts in a row without progress before giving up (an attempt that gets new results starts the count again)').default(8).argParser(wholeNumber(0, 1000)))
    .addOption(new Option('--max-delay <seconds>', 'longest wait between two attempts; a Retry-After from the service is honoured even when longer').default(30).argParser(wholeNumber(1, 3600)))
    .addOption(new Option('--timeout <seconds>', 'give up an attempt on which nothing has moved for this long, and retry').default(60).argParser(wholeNumber(1, 3600)))
    .addHelpText('after', EXIT_CODES)
    .action(async (options: SignBatchOptions) => {
      process.exitCode = await runSignBatch(options, io)
    })
}

/** The run's counts, and the failures kept for stderr. */
interface Tally {
  signed: number
  failed: number
  /** Results that came from the service (not the records failed here). */
  served: number
  listed: string[]
}

/** Resolves with `promise`, or rejects as soon as `signal` aborts (the promise then goes on unwatched). */
async function abortable<T> (promise: Promise<T>, signal: AbortSignal): Promise<T> {
  signal.throwIfAborted()
  let onAbort: (() => void) | undefined
  const aborted = new Promise<never>((_resolve, reject) => {
    onAbort = () => reject(signal.reason)
    signal.addEventListener('abort', onAbort, { once: true })
  })
  try {
    return await Promise.race([promise, aborted])
  } finally {
    signal.removeEventListener('abort', onAbort as () => void)
  }
}

function parseUrl (text: string): URL {
  let url: URL | undefined
  try {
    url = new URL(text)
  } catch {}
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw new UsageError('--url must be an http:// or https:// URL, e.g. http://127.0.0.1:8080')
  }
  return url
}

/** The batches of `source`, starting with `first`, already read from it. */
async function * startingWith<T> (first: IteratorResult<T>, source: AsyncGenerator<T>): AsyncGenerator<T> {
  if (first.done === true) return
  yield first.value
  yield * source
}

/** Where each result goes: the outputs, the tally and the progress. */
function createSink (format: InputFormat, outFormat: OutputFormat, results: RowWriter, errors: RowWriter | undefined, progress: Progress): { tally: Tally, deliver: Deliver, deliverUnreadable: DeliverUnreadable } {
  const tally: Tally = { signed: 0, failed: 0, served: 0, listed: [] }
  const where = (at: number): string => format === 'json' ? `devices[${at}]` : `line ${at}`
  const positionKey = format === 'json' ? 'index' : 'line'
  const fail = (record: InputRecord, error: { code: string, message: string }): void => {
    tally.failed++
    if (tally.listed.length < MAX_LISTED_FAILURES) {
      tally.listed.push(`  ${where(record.at)}${record.reference === '' ? '' : ` (reference ${record.reference})`}: ${error.code}: ${error.message}`)
    }
    errors?.write({ line: record.at, reference: record.reference, code: error.code, message: error.message })
  }
  const deliver = (record: Device, result: ResultLine): void => {
    tally.served++
    if (result.ok) tally.signed++
    else fail(record, result.error)
    if (outFormat === 'ndjson') results.write(resultObject(positionKey, record, result))
    else if (result.ok) results.write(credentialRow(record, result))
    progress.update(tally.signed + tally.failed, tally.failed)
  }
  const deliverUnreadable = (record: Unreadable): void => {
    fail(record, record.error)
    if (outFormat === 'ndjson') results.write({ [positionKey]: record.at, ok: false, error: record.error })
    progress.update(tally.signed + tally.failed, tally.failed)
  }
  return { tally, deliver, deliverUnreadable }
}

/**
 * Runs sign-batch and returns its exit status. Writes nothing but the output files (or stdout
 * with `--out -`) and messages on stderr; never a password or the token on stderr.
 */
export async function runSignBatch (options: SignBatchOptions, io: Io): Promise<number> {
  const started = performance.now()
  const say = (line: string): void => { io.stderr.write(`${line}\n`) }
  const writers: RowWriter[] = []
  let progress: Progress | undefined
  try {
    const url = parseUrl(options.url)
    const format = inputFormatOf(options.in, options.format)
    const outFormat = outputFormatOf(options.out, options.outFormat)
    checkPaths(options)
    const inputName = options.in === '-' ? 'standard input' : options.in
    // Whatever stops the input (bad content, a read error) is told with the input's name.
    const named = (err: unknown): UsageError => new UsageError(`${inputName}: ${err instanceof UsageError ? err.message : `cannot be read (${String((err as NodeJS.ErrnoException).code ?? err)})`}`)
    const input = await openInput(options.in, io.stdin)
    const source = readInput(input.stream, format)
    // The first batch is read before anything else: a bad CSV header is a usage error, with no output created.
    const first = await abortable(source.next(), io.signal).catch((err: unknown) => { throw named(err) })
    const results = await openRows(options.out, io.stdout, outFormat, CREDENTIAL_COLUMNS)
    writers.push(results)
    const errors = options.errors === undefined ? undefined : await openRows(options.errors, io.stdout, 'csv', ERROR_COLUMNS)
    if (errors !== undefined) writers.push(errors)
    progress = createProgress(progressMode(options.quiet, io.stderr.isTTY), io.stderr)
    const shown = progress
    // Counted alongside the run, which does not wait for it.
    if (input.isFile) countItems(options.in, format).then((total) => { if (total !== undefined) shown.setTotal(total) })
    const sink = createSink(format, outFormat, results, errors, progress)
    const feed = new Feed(startingWith(first, source), MAX_UNANSWERED, sink.deliver, sink.deliverUnreadable)
    const target: BatchTarget = { url, token: options.token, timeoutMs: options.timeout * 1000 }
    const end = await signAll(feed, target, writers, sink.tally, progress, options, io.signal)
    if (feed.failure !== undefined) throw named(feed.failure)
    if (end.kind !== 'complete') {
      say(`${NAME}: ${end.reason}`)
      return await giveUp(writers, say, options)
    }
    progress.stop()
    for (const writer of writers) await writer.commit()
    report(sink.tally, options, end.broker, (performance.now() - started) / 1000, say)
    return sink.tally.failed > 0 ? 1 : 0
  } catch (err) {
    progress?.stop()
    if (io.signal.aborted) {
      say(`${NAME}: interrupted`)
      await giveUp(writers, say, options)
      return 128 + (constants.signals[io.signal.reason as NodeJS.Signals] ?? constants.signals.SIGINT)
    }
    /* c8 ignore next 4 -- a bug: every failure the run expects is a UsageError or an OutputError by now */
    if (!(err instanceof UsageError) && !(err instanceof OutputError)) {
      await giveUp(writers, say, options)
      throw err
    }
    say(`${NAME}: ${err.message}`)
    return await giveUp(writers, say, options)
  }
}

/**
 * Sends the feed until every device is answered, one request after another: a request that fails
 * is followed, after a backoff, by one that resends what was left unanswered and goes on with
 * the input. Ends `complete`, or with the reason to give up (`fatal`, or too many attempts in a
 * row without a new result). Stops early when the input fails (`feed.failure`) or `signal` aborts.
 */
async function signAll (feed: Feed, target: BatchTarget, writers: RowWriter[], tally: Tally, progress: Progress, options: SignBatchOptions, signal: AbortSignal): Promise<Outcome> {
  const backoff = { ...DEFAULT_BACKOFF, maxMs: options.maxDelay * 1000 }
  const drained = async (): Promise<void> => {
    for (const writer of writers) await writer.drained()
  }
  // False also when the input failed (the only way feed.hasWork fails): the caller finds that in feed.failure.
  const hasWork = async (): Promise<boolean> => abortable(feed.hasWork().catch(() => false), signal)
  let failuresInARow = 0
  for (;;) {
    const before = tally.served
    const attempt = feed.startAttempt()
    let outcome: Outcome = await postBatch(target, feed.body(attempt), (result) => {
      feed.answer(attempt, result)
      if (writers.some((writer) => writer.isFull)) return drained()
    }, signal)
    if (feed.failure !== undefined) return outcome
    signal.throwIfAborted()
    if (outcome.kind === 'complete') {
      if (feed.isDone) return outcome
      outcome = { kind: 'retry', reason: 'the service ended its answer before answering every device' }
    }
    if (outcome.kind === 'fatal') return outcome
    // Every device has its result and only the summary line was lost: nothing is left to ask.
    if (tally.served > 0 && !(await hasWork())) return { kind: 'complete', broker: undefined }
    failuresInARow = tally.served > before ? 1 : failuresInARow + 1
    if (failuresInARow > options.retries) {
      return { kind: 'fatal', reason: `giving up after ${failuresInARow} ${failuresInARow === 1 ? 'attempt' : 'attempts in a row'} without progress; the last: ${outcome.reason} (${describeUrl(target.url)})` }
    }
    const delay = retryDelay(failuresInARow - 1, outcome.retryAfterMs, backoff)
    progress.notice(`${NAME}: ${outcome.reason}; retry ${failuresInARow} of ${options.retries} in ${(delay / 1000).toFixed(1)} s`)
    await sleep(delay, undefined, { signal })
    // Open the next request only once there is something to send (a slow standard input).
    await hasWork()
    if (feed.failure !== undefined) return outcome
  }
}

/** A run that cannot complete leaves no output file behind. */
async function giveUp (writers: RowWriter[], say: (line: string) => void, options: SignBatchOptions): Promise<number> {
  await Promise.all(writers.map(async (writer) => writer.abort()))
  if (writers.length > 0 && options.out !== '-') say(`${NAME}: ${options.out} was not written`)
  return 2
}

/** The input and the outputs must be different files: the output replaces its file at the end. */
function checkPaths (options: SignBatchOptions): void {
  const files = [['--in', options.in], ['--out', options.out], ['--errors', options.errors]] as const
  const seen = new Map<string, string>()
  for (const [flag, path] of files) {
    if (path === undefined || (path === '-' && flag === '--in')) continue
    const key = path === '-' ? '-' : resolve(path)
    const other = seen.get(key)
    if (other !== undefined) throw new UsageError(`${other} and ${flag} name the same ${path === '-' ? 'standard output' : 'file'}`)
    seen.set(key, flag)
  }
}

/** A row of the credentials CSV. */
function credentialRow (record: Device, result: ResultLine): Record<string, unknown> {
  const { clientId, timestamp, signMethod, mqttClientId, mqttUsername, mqttPassword } = result as Record<string, unknown>
  return { productKey: record.productKey, deviceKey: record.deviceKey, reference: record.reference, clientId, timestamp, signMethod, mqttClientId, mqttUsername, mqttPassword }
}

/** A result as the service sent it, placed by its input position (`line` or `index`) and naming its device. */
function resultObject (positionKey: string, record: Device, result: ResultLine): Record<string, unknown> {
  const { line: _line, reference: _reference, ...rest } = result as Record<string, unknown>
  return {
    [positionKey]: record.at,
    ...(record.reference !== '' && { reference: record.reference }),
    productKey: record.productKey,
    deviceKey: record.deviceKey,
    ...rest
  }
}

function report (tally: Tally, options: SignBatchOptions, broker: unknown, seconds: number, say: (line: string) => void): void {
  const total = tally.signed + tally.failed
  const rate = Math.round(total / Math.max(seconds, 0.001))
  const where = options.out === '-' ? 'standard output' : options.out
  say(`${NAME}: ${tally.signed} signed, ${tally.failed} failed, ${total} devices in ${seconds.toFixed(1)} s (${rate} devices/s); credentials in ${where}`)
  const uri = (broker as { uri?: unknown } | undefined)?.uri
  if (typeof uri === 'string') say(`${NAME}: the broker for these credentials: ${uri}`)
  if (tally.failed === 0) return
  say(`${NAME}: failed devices${tally.failed > tally.listed.length ? ` (the first ${tally.listed.length} of ${tally.failed})` : ''}:`)
  for (const line of tally.listed) say(line)
  if (options.errors !== undefined) say(`${NAME}: every failure is in ${options.errors === '-' ? 'standard output' : options.errors}`)
  else if (tally.failed > tally.listed.length) say(`${NAME}: add --errors FILE to get every failure`)
}
