// request.log made lazily: the same lines as a pino child logger, and no child until one is needed.
import { Writable } from 'node:stream'
import t from 'tap'
import { pino, type Logger } from 'pino'
import { RequestLogger, requestLoggerFactory } from '../../src/plugins/request-logger.js'

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
