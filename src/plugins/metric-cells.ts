// Counters and histograms for the hot path: one cell per combination of label values, written out by prom-client's registry.
import type { Metric, Registry } from 'prom-client'

/**
 * The label values of one observation, in the order of the metric's label names. prom-client's own
 * metrics turn the labels object into a sorted key on every call (0.4-1 µs per call here, measured);
 * a cell is found by joining the values instead.
 */
export type LabelValues = ReadonlyArray<string | number>

type Labels = Record<string, string | number>

interface Cell<T> { labels: Labels, data: T }

/**
 * One line of the text format; `metricName` when it is not the metric's own name (`_bucket`, `_sum`,
 * `_count`). A bucket's `le` comes first, then the series' labels (`sharedLabels`), as prom-client writes them.
 */
interface Value { labels: Labels, sharedLabels?: Labels, value: number, metricName?: string }

/** What prom-client's registry reads from a metric at scrape time (its type declarations say less than it reads). */
interface Snapshot { name: string, help: string, type: string, aggregator: string, values: Value[] }

abstract class Cells<T> {
  readonly aggregator = 'sum'
  readonly cells = new Map<string, Cell<T>>()

  readonly name: string
  readonly help: string
  readonly labelNames: readonly string[]

  constructor (name: string, help: string, labelNames: readonly string[], registry: Registry) {
    this.name = name
    this.help = help
    this.labelNames = labelNames
    // The registry asks a metric only for its name, get() and reset(), which these classes have; its
    // type declarations name prom-client's own classes instead.
    registry.registerMetric(this as unknown as Metric)
  }

  protected abstract empty (): T

  protected cellOf (values: LabelValues): T {
    const key = values.join('\u0001')
    let cell = this.cells.get(key)
    if (cell === undefined) {
      cell = { labels: Object.fromEntries(this.labelNames.map((name, i) => [name, values[i] as string | number])), data: this.empty() }
      this.cells.set(key, cell)
    }
    return cell.data
  }

  reset (): void {
    this.cells.clear()
  }
}

export class CounterCells extends Cells<{ value: number }> {
  readonly type = 'counter'

  protected empty (): { value: number } {
    return { value: 0 }
  }

  inc (values: LabelValues, by = 1): void {
    this.cellOf(values).value += by
  }

  async get (): Promise<Snapshot> {
    const values = [...this.cells.values()].map(({ labels, data }) => ({ labels, value: data.value }))
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values }
  }
}

interface Buckets { counts: number[], sum: number, count: number }

export class HistogramCells extends Cells<Buckets> {
  readonly type = 'histogram'

  /** The upper bounds of the buckets, ascending; `+Inf` is implied. */
  readonly bounds: readonly number[]

  constructor (name: string, help: string, labelNames: readonly string[], bounds: readonly number[], registry: Registry) {
    super(name, help, labelNames, registry)
    this.bounds = bounds
  }

  protected empty (): Buckets {
    return { counts: this.bounds.map(() => 0), sum: 0, count: 0 }
  }

  observe (values: LabelValues, value: number): void {
    const cell = this.cellOf(values)
    let i = 0
    while (i < this.bounds.length && value > (this.bounds[i] as number)) i++
    if (i < cell.counts.length) cell.counts[i] = (cell.counts[i] as number) + 1
    cell.sum += value
    cell.count++
  }

  /** Prometheus' histogram: cumulative `_bucket` series up to `+Inf`, then `_sum` and `_count`. */
  async get (): Promise<Snapshot> {
    const values: Value[] = []
    for (const { labels, data } of this.cells.values()) {
      let below = 0
      this.bounds.forEach((le, i) => {
        below += data.counts[i] as number
        values.push({ labels: { le }, sharedLabels: labels, value: below, metricName: `${this.name}_bucket` })
      })
      values.push({ labels: { le: '+Inf' }, sharedLabels: labels, value: data.count, metricName: `${this.name}_bucket` })
      values.push({ labels, value: data.sum, metricName: `${this.name}_sum` })
      values.push({ labels, value: data.count, metricName: `${this.name}_count` })
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values }
  }
}
