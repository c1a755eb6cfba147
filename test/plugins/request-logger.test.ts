// request.log made lazily: the same lines as a pino child logger, and no child until one is needed.
import { Writable } from 'node:stream'
import t from 'tap'
import { pino, type Logger } from 'pino'
import { REDACT_PATHS, serializeError } from '../../src/plugins/request-log.js'
import { RequestLogger, directLine, requestLoggerFactory } from '../../src/plugins/request-logger.js'

/** A pino logger at `level` without time, pid or hostname, so lines compare exactly; and the lines it wrote. */
function logger (level = 'info'): { root: Logger, lines: () => string[] } {
  const lines: string[] = []
  const stream = new Writable({ write (chunk: Buffer, _encoding, done) { lines.push(chunk.toString()); done() } })
  return { root: pino({ level, base: null, timestamp: false }, stream), lines: () => lines }
}

const BINDINGS = { reqId: 'req-1' }

t.test('every level writes what a pino child writes, bound to the request', async (t) => {
  const lazy = logger('trace')
  const eager = logger('trace')
  const log = new RequestLogger(lazy.root, BINDINGS)
  const child = eager.root.child(BINDINGS)
  for (const level of ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const) {
    log[level]({ n: 1 }, `a ${level} line`)
    child[level]({ n: 1 }, `a ${level} line`)
  }
  log.info('a plain message with %s', 'an argument')
  child.info('a plain message with %s', 'an argument')
  log.error(new Error('boom'), 'failed')
  child.error(new Error('boom'), 'failed')
  // The stacks differ by the line they were made on; everything else is the same.
  const withoutStacks = (lines: string[]): string[] => lines.map((line) => line.replace(/"stack":"[^"]*"/, '"stack":"…"'))
  t.same(withoutStacks(lazy.lines()), withoutStacks(eager.lines()))
  t.equal(lazy.lines().length, 8)
  t.match(lazy.lines()[0], /^\{"level":60,"reqId":"req-1","n":1,"msg":"a fatal line"\}\n$/)
})

t.test('the completion line is the line a child would write, with or without a child made before', async (t) => {
  const lazy = logger()
  const eager = logger()
  new RequestLogger(lazy.root, BINDINGS).completed({ route: '/sign', statusCode: 200 }, 'request completed')
  eager.root.child(BINDINGS).info({ route: '/sign', statusCode: 200 }, 'request completed')
  const used = new RequestLogger(lazy.root, BINDINGS)
  used.warn('first')
  used.completed({ route: '/sign', statusCode: 200 }, 'request completed')
  t.same(lazy.lines(), [eager.lines()[0], '{"level":40,"reqId":"req-1","msg":"first"}\n', eager.lines()[0]])
})

t.test('levels: nothing below the level is written, and the level can be read and changed', async (t) => {
  const { root, lines } = logger('warn')
  const log = new RequestLogger(root, BINDINGS)
  log.info('not written')
  log.debug('not written')
  t.equal(log.level, 'warn')
  t.notOk(log.isLevelEnabled('info'))
  t.ok(log.isLevelEnabled('warn'))
  log.level = 'debug'
  t.equal(log.level, 'debug', 'the request, not the app, logs at debug now')
  t.equal(root.level, 'warn')
  t.ok(log.isLevelEnabled('debug'))
  log.debug('written')
  log.silent('never written')
  t.same(lines(), ['{"level":20,"reqId":"req-1","msg":"written"}\n'])
})

t.test('a child of it carries both bindings; route options make the child at once', async (t) => {
  const { root, lines } = logger()
  new RequestLogger(root, BINDINGS).child({ part: 'x' }).info('from a child')
  const quiet = requestLoggerFactory(root, BINDINGS, { level: 'error' }) as RequestLogger
  quiet.warn('below the route level')
  quiet.error('at the route level')
  t.equal(quiet.level, 'error')
  const plain = requestLoggerFactory(root, BINDINGS, {})
  t.ok(plain instanceof RequestLogger)
  t.same(lines(), [
    '{"level":30,"reqId":"req-1","part":"x","msg":"from a child"}\n',
    '{"level":50,"reqId":"req-1","msg":"at the route level"}\n'
  ])
})

/** The app's logger settings (app.ts): redaction, the err serializer, pid, hostname and time. */
function appLogger (extra: Record<string, unknown> = {}): { root: Logger, lines: () => string[] } {
  const lines: string[] = []
  const stream = new Writable({ write (chunk: Buffer, _encoding, done) { lines.push(chunk.toString()); done() } })
  const root = pino({ level: 'info', redact: { paths: REDACT_PATHS, censor: '[redacted]' }, serializers: { err: serializeError }, ...extra }, stream)
  return { root, lines: () => lines }
}

/** A line without its time, which differs between two writes. */
const untimed = (line: string | undefined): string => String(line).replace(/,"time":\d+/, ',"time":0')

t.test('the completion line written directly is byte for byte the line pino writes', async (t) => {
  const direct = appLogger()
  const through = appLogger()
  const cases: Array<Record<string, unknown>> = [
    { audit: true, caller: 'factory-line-1', clientAddress: '127.0.0.1', method: 'POST', route: '/sign', statusCode: 200, durationMs: 1.23, productKey: 'Ab12', deviceKey: 'dev-1', clientId: 'c', outcome: 'signed' },
    { caller: null, route: '/x?a="b"\\c', statusCode: 404, durationMs: 0.5, outcome: 'ROUTE_NOT_FOUND', reason: 'line\nbreak\ttab \u0001 é 漢 \u2028 😀' },
    { n: Number.NaN, inf: Number.POSITIVE_INFINITY, neg: -0.25, big: 1e21, skipped: undefined, no: false, long: 'x'.repeat(150) + '"' }
  ]
  for (const fields of cases) {
    new RequestLogger(direct.root, BINDINGS).completed(fields, 'request completed')
    through.root.info({ ...BINDINGS, ...fields }, 'request completed')
    t.ok(directLine(direct.root, BINDINGS, fields, 'request completed') !== undefined)
  }
  t.same(direct.lines().map(untimed), through.lines().map(untimed))
  t.match(direct.lines()[0], /^\{"level":30,"time":\d+,"pid":\d+,"hostname":"[^"]*","reqId":"req-1","audit":true,/)
  // A lone surrogate, which pino writes raw (not valid UTF-8 once written), comes out escaped: the same string once parsed.
  const lone = directLine(direct.root, BINDINGS, { reason: 'half \ud800 of a pair' }, 'm') as string
  t.equal((JSON.parse(lone) as { reason: string }).reason, 'half \ud800 of a pair')
  t.match(lone, /"half \\ud800 of a pair"/)
})

t.test('fields pino serializes or redacts, objects and other loggers go through pino', async (t) => {
  const { root, lines } = appLogger()
  const log = new RequestLogger(root, BINDINGS)
  const through = [
    { deviceSecret: 'leak-1' },
    { body: { deviceSecret: 'leak-2' } },
    { err: new Error('boom') },
    { batch: { size: 2, signed: 1, failed: 1, failures: [{ index: 1, code: 'DEVICE_NOT_FOUND' }] } },
    { fn: () => 1 },
    { 'a key': 1 }
  ]
  for (const fields of through) {
    t.equal(directLine(root, BINDINGS, fields, 'request completed'), undefined, String(Object.keys(fields)[0]))
    log.completed(fields, 'request completed')
  }
  t.equal(directLine(root, { 'bad key': 1 }, {}, 'm'), undefined, 'bindings are checked too')
  const parsed = lines().map((line) => JSON.parse(line) as Record<string, unknown>)
  t.equal(parsed[0]?.deviceSecret, '[redacted]')
  t.same(parsed[1]?.body, { deviceSecret: '[redacted]' })
  t.match(parsed[2]?.err, { type: 'Error', message: 'boom' })
  t.same(parsed[3]?.batch, through[3]?.batch)
  t.notMatch(lines().join(''), /leak-/)
  const mixed = appLogger({ mixin: () => ({ extra: 1 }) })
  t.equal(directLine(mixed.root, BINDINGS, { a: 1 }, 'm'), undefined, 'a logger with a mixin')
  new RequestLogger(mixed.root, BINDINGS).completed({ a: 1 }, 'm')
  t.match(JSON.parse(mixed.lines()[0] as string), { reqId: 'req-1', a: 1, extra: 1 })
})
