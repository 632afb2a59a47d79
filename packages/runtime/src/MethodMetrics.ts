/**
 * The metrics Service Weaver generates for every component method call,
 * under the names its users already chart.
 *
 * @since 0.1.0
 */
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import type * as MetricHook from "effect/MetricHook"
import * as MetricKey from "effect/MetricKey"
import * as MetricLabel from "effect/MetricLabel"

// Service Weaver's generated-metric buckets: 1, 2, 5, 10, 20, 50, … up to 5e9.
const bounds = Array.from({ length: 10 }, (_, i) => [1, 2, 5].map((m) => m * 10 ** i)).flat()
const boundaries = MetricBoundaries.fromIterable(bounds)

const countKey = MetricKey.counter("serviceweaver_method_count", {
  description: "Count of Service Weaver component method invocations",
  incremental: true
})

/**
 * Calls of a method.
 *
 * @since 0.1.0
 * @category metrics
 */
export const count = Metric.fromMetricKey(countKey)

const errorCountKey = MetricKey.counter("serviceweaver_method_error_count", {
  description: "Count of Service Weaver component method invocations that result in an error",
  incremental: true
})

/**
 * Calls of a method that failed, whether with a declared error or in the
 * transport.
 *
 * @since 0.1.0
 * @category metrics
 */
export const errorCount = Metric.fromMetricKey(errorCountKey)

const latencyKey = MetricKey.histogram(
  "serviceweaver_method_latency_micros",
  boundaries,
  "Duration, in microseconds, of Service Weaver component method execution"
)

/**
 * Call latency in microseconds. Co-located calls (and calls whose handler
 * completes synchronously, returning an Exit such as `Effect.succeed(x)`)
 * are sampled, one in 16: reading the clock twice costs as much as a plain
 * service call; remote calls are all timed. The
 * histogram's sum and count stay consistent with each other, so mean and
 * percentiles are unbiased; the call count is `serviceweaver_method_count`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const latencyMicros = Metric.fromMetricKey(latencyKey)

const bytesRequestKey = MetricKey.histogram(
  "serviceweaver_method_bytes_request",
  boundaries,
  "Number of bytes in Service Weaver component method requests"
)

/**
 * Bytes of encoded requests, for remote calls only.
 *
 * @since 0.1.0
 * @category metrics
 */
export const bytesRequest = Metric.fromMetricKey(bytesRequestKey)

const bytesReplyKey = MetricKey.histogram(
  "serviceweaver_method_bytes_reply",
  boundaries,
  "Number of bytes in Service Weaver component method replies"
)

/**
 * Bytes of encoded replies, for remote calls only.
 *
 * @since 0.1.0
 * @category metrics
 */
export const bytesReply = Metric.fromMetricKey(bytesReplyKey)

/**
 * The labels of one (caller, component, method, remote) series, as readers
 * of the metrics select it (`Metric.taggedWithLabels`). Callers record
 * through {@link series}, which looks the series up once.
 *
 * @since 0.1.0
 * @category metrics
 */
export const labels = (options: {
  readonly caller: string
  readonly component: string
  readonly method: string
  readonly remote: boolean
}): ReadonlyArray<MetricLabel.MetricLabel> => [
  MetricLabel.make("caller", options.caller),
  MetricLabel.make("component", options.component),
  MetricLabel.make("method", options.method),
  MetricLabel.make("remote", String(options.remote)),
  MetricLabel.make("serviceweaver_generated", "true")
]

/**
 * The metrics of one (caller, component, method, remote) series, looked up
 * once in Effect's metric registry. Updating them directly skips the lookup
 * of the series by its labels that `Metric.unsafeUpdate` makes on every
 * update; the values are those every reader of the metrics sees.
 *
 * @since 0.1.0
 * @category models
 */
export interface Series {
  readonly count: MetricHook.MetricHook.Counter<number>
  readonly errorCount: MetricHook.MetricHook.Counter<number>
  readonly latencyMicros: MetricHook.MetricHook.Histogram
  readonly bytesRequest: MetricHook.MetricHook.Histogram
  readonly bytesReply: MetricHook.MetricHook.Histogram
}

/**
 * The series of a caller's calls of a method.
 *
 * @since 0.1.0
 * @category metrics
 */
export const series = (options: Parameters<typeof labels>[0]): Series => {
  // The registry answers the same hooks for the same labels; remembering them spares the hashing of five keys
  // for every client a weavelet makes (the simulator makes weavelets by the thousand).
  const key = `${options.caller}\u0000${options.component}\u0000${options.method}\u0000${options.remote}`
  let found = known.get(key)
  if (found === undefined) {
    const tags = labels(options)
    const registry = Metric.globalMetricRegistry
    found = {
      count: registry.getCounter(MetricKey.taggedWithLabels(countKey, tags)),
      errorCount: registry.getCounter(MetricKey.taggedWithLabels(errorCountKey, tags)),
      latencyMicros: registry.getHistogram(MetricKey.taggedWithLabels(latencyKey, tags)),
      bytesRequest: registry.getHistogram(MetricKey.taggedWithLabels(bytesRequestKey, tags)),
      bytesReply: registry.getHistogram(MetricKey.taggedWithLabels(bytesReplyKey, tags))
    }
    known.set(key, found)
  }
  return found
}

const known = new Map<string, Series>()

/**
 * Records one completed call of a series: its count, its error if it
 * failed, and its latency if measured.
 *
 * @since 0.1.0
 * @category metrics
 */
export const record = (series: Series, failed: boolean, micros: number | undefined): void => {
  series.count.update(1)
  if (failed) series.errorCount.update(1)
  if (micros !== undefined) series.latencyMicros.update(micros)
}
