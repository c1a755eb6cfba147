// The hot-path metric cells write exactly what prom-client's own Counter and Histogram write for the same observations.
import t from 'tap'
import { Counter, Histogram, Registry } from 'prom-client'
import { CounterCells, HistogramCells } from '../../src/plugins/metric-cells.js'

const BOUNDS = [0.001, 0.01, 0.1]
const OBSERVATIONS: Array<[[string, number], number]> = [
  [['/sign', 200], 0.0005], [['/sign', 200], 0.001], [['/sign', 200], 0.002], [['/sign', 200], 0.1],
  [['/sign', 200], 7], [['/sign', 404], 0.01], [['unmatched', 404], 0]
]

t.test('a histogram: the same buckets (a value on a bound counts in it), sum and count as prom-client\'s', async (t) => {
  const ours = new Registry()
  const theirs = new Registry()
  const cells = new HistogramCells('h_seconds', 'help', ['route', 'status_code'], BOUNDS, ours)
  const reference = new Histogram({ name: 'h_seconds', help: 'help', labelNames: ['route', 'status_code'], buckets: BOUNDS, registers: [theirs] })
  for (const [[route, status], value] of OBSERVATIONS) {
    cells.observe([route, status], value)
    reference.observe({ route, status_code: status }, value)
  }
  t.equal(await ours.metrics(), await theirs.metrics())
  t.match(await ours.metrics(), /^h_seconds_bucket\{le="0\.001",route="\/sign",status_code="200"\} 2$/m, 'a value equal to a bound is in its bucket')
})

t.test('a counter: the same series as prom-client\'s, increments by 1 or by a count', async (t) => {
  const ours = new Registry()
  const theirs = new Registry()
  const cells = new CounterCells('c_total', 'help', ['outcome'], ours)
  const reference = new Counter({ name: 'c_total', help: 'help', labelNames: ['outcome'], registers: [theirs] })
  for (const [outcome, by] of [['signed', 1], ['signed', 5], ['failed', 0], ['DEVICE_NOT_FOUND', 1]] as const) {
    cells.inc([outcome], by)
    reference.inc({ outcome }, by)
  }
  cells.inc(['signed'])
  reference.inc({ outcome: 'signed' })
  t.equal(await ours.metrics(), await theirs.metrics())
})

t.test('resetMetrics() empties them, as it does prom-client\'s', async (t) => {
  const registry = new Registry()
  const counter = new CounterCells('c_total', 'help', ['outcome'], registry)
  const histogram = new HistogramCells('h_seconds', 'help', ['route'], BOUNDS, registry)
  counter.inc(['signed'])
  histogram.observe(['/sign'], 0.5)
  registry.resetMetrics()
  t.equal(await registry.metrics(), '# HELP c_total help\n# TYPE c_total counter\n\n# HELP h_seconds help\n# TYPE h_seconds histogram\n')
})

t.test('label values are told apart one by one, whatever characters they hold', async (t) => {
  const registry = new Registry()
  const cells = new CounterCells('c_total', 'help', ['a', 'b'], registry)
  cells.inc(['x\u0001y', 'z'])
  cells.inc(['x', 'y\u0001z'])
  cells.inc(['x', 'y\u0001z'])
  cells.inc([200, 'z'])
  const { values } = await cells.get()
  t.same(values, [
    { labels: { a: 'x\u0001y', b: 'z' }, value: 1 },
    { labels: { a: 'x', b: 'y\u0001z' }, value: 2 },
    { labels: { a: 200, b: 'z' }, value: 1 }
  ])
})
