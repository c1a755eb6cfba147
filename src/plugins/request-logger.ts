// request.log: the request's child logger, made only when the request logs something of its own.
import type { FastifyBaseLogger } from 'fastify'
import type { Bindings, ChildLoggerOptions, Level, LogFn, Logger } from 'pino'

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

  /** Logs `fields` at info as the request's own line, bound to the request like any of its lines. */
  completed (fields: Record<string, unknown>, msg: string): void {
    if (this.made !== undefined) this.made.info(fields, msg)
    else this.parent.info({ ...this.bindings, ...fields }, msg)
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
