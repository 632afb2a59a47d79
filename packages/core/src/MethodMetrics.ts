/**
 * The metrics Service Weaver generates for every component method call,
 * under the names its users already chart.
 *
 * @since 0.1.0
 */
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as MetricLabel from "effect/MetricLabel"

// Service Weaver's generated-metric buckets: 1, 2, 5, 10, 20, 50, … up to 5e9.
const bounds = Array.from({ length: 10 }, (_, i) => [1, 2, 5].map((m) => m * 10 ** i)).flat()
const boundaries = MetricBoundaries.fromIterable(bounds)

/**
 * Calls of a method.
 *
 * @since 0.1.0
 * @category metrics
 */
export const count = Metric.counter("serviceweaver_method_count", {
  description: "Count of Service Weaver component method invocations",
  incremental: true
})

/**
 * Calls of a method that failed, whether with a declared error or in the
 * transport.
 *
 * @since 0.1.0
 * @category metrics
 */
export const errorCount = Metric.counter("serviceweaver_method_error_count", {
  description: "Count of Service Weaver component method invocations that result in an error",
  incremental: true
})

/**
 * Call latency in microseconds. Calls whose handler completes synchronously
 * (returns an Exit, such as `Effect.succeed(x)`) are sampled, one in 16:
 * reading the clock twice would cost more than the call itself. The
 * histogram's sum and count stay consistent with each other, so mean and
 * percentiles are unbiased; the call count is `serviceweaver_method_count`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const latencyMicros = Metric.histogram(
  "serviceweaver_method_latency_micros",
  boundaries,
  "Duration, in microseconds, of Service Weaver component method execution"
)

/**
 * Records one completed call: its count, its error if it failed, and its
 * latency if measured.
 *
 * @since 0.1.0
 * @category metrics
 */
export const record = (
  labels: ReadonlyArray<MetricLabel.MetricLabel>,
  failed: boolean,
  micros: number | undefined
): void => {
  count.unsafeUpdate(1, labels)
  if (failed) errorCount.unsafeUpdate(1, labels)
  if (micros !== undefined) latencyMicros.unsafeUpdate(micros, labels)
}

/**
 * Bytes of encoded requests, for remote calls only.
 *
 * @since 0.1.0
 * @category metrics
 */
export const bytesRequest = Metric.histogram(
  "serviceweaver_method_bytes_request",
  boundaries,
  "Number of bytes in Service Weaver component method requests"
)

/**
 * Bytes of encoded replies, for remote calls only.
 *
 * @since 0.1.0
 * @category metrics
 */
export const bytesReply = Metric.histogram(
  "serviceweaver_method_bytes_reply",
  boundaries,
  "Number of bytes in Service Weaver component method replies"
)

/**
 * The labels of one (caller, component, method, remote) series. Build them
 * once per client method and reuse the array: Effect caches the metric hook
 * per label array.
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
