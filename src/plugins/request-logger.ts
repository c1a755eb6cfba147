// request.log: the request's child logger, made only when the request logs something of its own.
import type { FastifyBaseLogger } from 'fastify'
import { symbols, type Bindings, type ChildLoggerOptions, type Level, type LogFn, type Logger } from 'pino'

const LEVELS: readonly Level[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace']

/**
 * Fastify makes a pino child logger, bound to the request id, for every request: about 1.5% of
 * the CPU of POST /sign (measured with perf), though a request rarely logs anything but its one
 * completion line. This stands in for that child and makes it the first time a message at an
 * enabled level is logged through it. The completion line ({@link RequestLogger.completed}) needs
 * no child at all: it goes through the parent with the bindings as its first fields, which is
 * where pino writes a child's bindings, so the line is the same.
 */
export class RequestLogger implements FastifyBaseLogger {
  declare fatal: LogFn
  declare error: LogFn
  declare warn: LogFn
  declare info: LogFn
  declare debug: LogFn
  declare trace: LogFn

  private made: FastifyBaseLogger | undefined
  private readonly parent: Logger
  private readonly bindings: Bindings

  /** `options`: a route's own log level or serializers (none here has them) need the real child at once. */
  constructor (parent: Logger, bindings: Bindings, options: ChildLoggerOptions = {}) {
    this.parent = parent
    this.bindings = bindings
    if (options.level !== undefined || options.serializers !== undefined) this.made = parent.child(bindings, options)
  }

  /** The real child logger, made now if it was not yet. */
  real (): FastifyBaseLogger {
    this.made ??= this.parent.child(this.bindings)
    return this.made
  }

  get level (): string {
    return (this.made ?? this.parent).level
  }

  set level (level: string) {
    this.real().level = level
  }

  isLevelEnabled (level: string): boolean {
    return this.made === undefined ? this.parent.isLevelEnabled(level) : (this.made as Logger).isLevelEnabled(level)
  }

  silent (..._args: unknown[]): void {}

  child (bindings: Bindings, options?: ChildLoggerOptions): FastifyBaseLogger {
    return this.real().child(bindings, options)
  }

  /**
   * Logs `fields` at info as the request's own line, bound to the request like any of its lines.
   * The line is written straight to the logger's stream when pino would write exactly that line
   * (see {@link directLine}), else through pino.
   */
  completed (fields: Record<string, unknown>, msg: string): void {
    if (this.made !== undefined) {
      this.made.info(fields, msg)
      return
    }
    const line = directLine(this.parent, this.bindings, fields, msg)
    if (line === undefined) this.parent.info({ ...this.bindings, ...fields }, msg)
    else (this.parent as unknown as PinoInternals)[symbols.streamSym].write(line)
  }
}

for (const level of LEVELS) {
  RequestLogger.prototype[level] = function (this: RequestLogger, ...args: unknown[]): void {
    if (!this.isLevelEnabled(level)) return
    const child = this.real()
    ;(child[level] as (...args: unknown[]) => void).apply(child, args)
  } as LogFn
}

/** Fastify's `childLoggerFactory`: `logger` is the app's pino logger. */
export function requestLoggerFactory (logger: FastifyBaseLogger, bindings: Bindings, options: ChildLoggerOptions): FastifyBaseLogger {
  return new RequestLogger(logger as Logger, bindings, options)
}

/** The parts of a pino logger that its own serializer reads (pino.symbols, public). */
interface PinoInternals {
  [symbols.streamSym]: { write: (line: string) => void, [symbols.needsMetadataGsym]?: boolean }
  [symbols.lsCacheSym]: Record<number, string>
  [symbols.timeSym]: () => string
  [symbols.chindingsSym]: string
  [symbols.endSym]: string
  [symbols.messageKeySym]: string
  [symbols.errorKeySym]: string
  [symbols.serializersSym]: Record<string, unknown>
  [symbols.stringifiersSym]: Record<string | symbol, unknown>
  [symbols.formattersSym]: { log?: unknown }
  [symbols.mixinSym]?: unknown
  [symbols.hooksSym]: { streamWrite?: unknown }
  [symbols.nestedKeySym]?: string | null
}

/** pino's number of `info`. */
const INFO = 30

/** Keys written as they are (`,"key":`): made of these only, they need no escaping. */
const PLAIN_KEY = /^[A-Za-z0-9_]{1,64}$/

/** Field names remembered per logger: the few of the code's own lines; bounded all the same. */
const MAX_KEYS = 256

/**
 * How a logger writes its lines directly: for each field name seen, its `,"key":` (null: pino
 * writes it, as it has a serializer or a redaction, or needs escaping), decided once per name.
 */
interface Plan {
  pino: PinoInternals
  prefixes: Map<string, string | null>
}

/** The plan of each logger, or null when it is configured beyond a level, serializers and redaction (mixin, formatter, hook, nesting, metadata). */
const plans = new WeakMap<Logger, Plan | null>()

function planOf (logger: Logger): Plan | null {
  let plan = plans.get(logger)
  if (plan === undefined) {
    const pino = logger as unknown as PinoInternals
    const plain = pino[symbols.formattersSym].log === undefined && pino[symbols.mixinSym] == null &&
      pino[symbols.hooksSym].streamWrite == null && pino[symbols.nestedKeySym] == null &&
      pino[symbols.stringifiersSym][symbols.wildcardFirstSym] === undefined &&
      pino[symbols.streamSym][symbols.needsMetadataGsym] !== true && PLAIN_KEY.test(pino[symbols.messageKeySym])
    plan = plain ? { pino, prefixes: new Map() } : null
    plans.set(logger, plan)
  }
  return plan
}

/** `,"key":` when pino would write the key's value plainly, else null. */
function prefixOf (plan: Plan, key: string): string | null {
  let prefix = plan.prefixes.get(key)
  if (prefix === undefined) {
    const { pino } = plan
    prefix = pino[symbols.serializersSym][key] !== undefined || pino[symbols.stringifiersSym][key] !== undefined ||
      key === pino[symbols.errorKeySym] || !PLAIN_KEY.test(key)
      ? null
      : `,"${key}":`
    if (plan.prefixes.size < MAX_KEYS) plan.prefixes.set(key, prefix)
  }
  return prefix
}

/** A character JSON.stringify escapes, or a surrogate (escaped when it is alone). */
// eslint-disable-next-line no-control-regex -- the control characters are what it looks for
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/

/** JSON.stringify of a string, without calling it for the plain strings of a log line (about a third cheaper, measured). */
function jsonString (value: string): string {
  return NEEDS_ESCAPE.test(value) ? JSON.stringify(value) : `"${value}"`
}

/**
 * `,"key":value` for each field of `object`, as pino writes them; undefined when pino must write
 * the line: a key with a serializer or a redaction, or a value that is an object (pino bounds
 * their depth and breadth) or not a JSON value.
 */
function plainFields (plan: Plan, object: Record<string, unknown>): string | undefined {
  let out = ''
  for (const key in object) {
    const value = object[key]
    if (value === undefined) continue
    const prefix = prefixOf(plan, key)
    if (prefix === null) return undefined
    switch (typeof value) {
      case 'string':
        out += prefix + jsonString(value)
        break
      case 'number':
        out += prefix + (Number.isFinite(value) ? String(value) : 'null')
        break
      case 'boolean':
        out += prefix + (value ? 'true' : 'false')
        break
      default:
        if (value !== null) return undefined
        out += prefix + 'null'
    }
  }
  return out
}

/**
 * The line pino writes for `info({ ...bindings, ...fields }, msg)`, without going through pino's
 * serializer: its key-by-key escaping cost about 2 µs of each audit line (measured), and every
 * POST /sign writes one at LOG_LEVEL=info. Made from the parts pino makes its line from (its
 * level and time strings, the logger's own bindings, its message key and line end), so the line
 * is pino's (strings escaped by JSON.stringify, as pino escapes any but short plain ones; only a
 * lone surrogate, which pino writes raw, comes out escaped). Undefined, and pino writes the line,
 * when a field has a serializer or a redaction (`err`, `req`, `deviceSecret`, ...: never
 * bypassed), a value is an object (a batch's audit), or the logger is configured beyond a level,
 * serializers and redaction.
 */
export function directLine (logger: Logger, bindings: Bindings, fields: Record<string, unknown>, msg: string): string | undefined {
  const plan = planOf(logger)
  if (plan === null) return undefined
  const bound = plainFields(plan, bindings)
  const own = bound === undefined ? undefined : plainFields(plan, fields)
  if (own === undefined) return undefined
  const { pino } = plan
  return `${pino[symbols.lsCacheSym][INFO] as string}${pino[symbols.timeSym]()}${pino[symbols.chindingsSym]}${bound as string}${own}` +
    `,"${pino[symbols.messageKeySym]}":${JSON.stringify(msg)}${pino[symbols.endSym]}`
}
