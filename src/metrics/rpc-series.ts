import type { Metric } from 'prom-client'

/**
 * Per-method RPC counts and durations, kept for the per-message path.
 * prom-client's labelled children hash their labels on every inc/observe
 * (about 0.6 µs per RPC here, a few percent of an authorized call); these
 * tallies are plain numbers updated in place and turned into Prometheus
 * series only when /metrics is scraped.
 */
export class RpcTally {
  readonly outcomes = new Map<string, number>()
  /** Observations per bucket (not cumulative); the last slot is past the highest bound. */
  readonly buckets: Float64Array
  sum = 0
  count = 0

  constructor (private readonly bounds: readonly number[]) {
    this.buckets = new Float64Array(bounds.length + 1)
  }

  outcome (outcome: string): void {
    this.outcomes.set(outcome, (this.outcomes.get(outcome) ?? 0) + 1)
  }

  observe (seconds: number): void {
    const bounds = this.bounds
    let i = 0
    while (i < bounds.length && seconds > (bounds[i] as number)) i++
    this.buckets[i] = (this.buckets[i] as number) + 1
    this.sum += seconds
    this.count++
  }
}

/** One sample as prom-client's Registry formats it: `labels` first, then `sharedLabels` (as its own histograms do). */
interface SeriesValue {
  value: number
  metricName: string
  labels: Record<string, string | number>
  sharedLabels: Record<string, string>
}

/**
 * A histogram with one label read from RpcTally objects, registered with a
 * prom-client Registry as a custom collector: the registry asks for `get()`
 * and formats what it returns exactly like its own histograms'.
 */
export class TallyHistogram {
  readonly type = 'histogram'
  readonly aggregator = 'sum'

  constructor (
    readonly name: string,
    readonly help: string,
    private readonly labelName: string,
    private readonly bounds: readonly number[],
    private readonly tallies: ReadonlyMap<string, RpcTally>
  ) {}

  /** prom-client's Registry types only its own classes; it reads a collector through name, help, type and get(). */
  asMetric (): Metric {
    return this as unknown as Metric
  }

  async get (): Promise<{ name: string, help: string, type: string, aggregator: string, values: SeriesValue[] }> {
    const values: SeriesValue[] = []
    for (const [label, tally] of this.tallies) {
      if (tally.count === 0) continue
      const sharedLabels = { [this.labelName]: label }
      const bucket = `${this.name}_bucket`
      let cumulative = 0
      this.bounds.forEach((bound, i) => {
        cumulative += tally.buckets[i] as number
        values.push({ metricName: bucket, labels: { le: bound }, sharedLabels, value: cumulative })
      })
      values.push({ metricName: bucket, labels: { le: '+Inf' }, sharedLabels, value: tally.count })
      values.push({ metricName: `${this.name}_sum`, labels: {}, sharedLabels, value: tally.sum })
      values.push({ metricName: `${this.name}_count`, labels: {}, sharedLabels, value: tally.count })
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values }
  }

  /**
   * Registry.resetMetrics() resets every metric it holds. The tallies also
   * feed scopegate_rpc_requests_total (its collect() re-reads them), so its
   * counts are cleared here too, or they would come back on the next scrape.
   */
  reset (): void {
    for (const tally of this.tallies.values()) {
      tally.outcomes.clear()
      tally.buckets.fill(0)
      tally.sum = 0
      tally.count = 0
    }
  }
}
