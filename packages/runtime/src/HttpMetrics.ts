/**
 * The HTTP metrics Service Weaver records for instrumented handlers, under
 * the names its users already chart. `Weaver.serve` instruments every app it
 * serves, labelled with the listener's name; {@link instrument} does the same
 * for HTTP apps served some other way (Service Weaver's
 * `weaver.InstrumentHandler`).
 *
 * @since 0.1.0
 */
import type * as HttpApp from "@effect/platform/HttpApp"
import type * as HttpBody from "@effect/platform/HttpBody"
import * as HttpServerError from "@effect/platform/HttpServerError"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import type * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as MetricLabel from "effect/MetricLabel"
import * as Http from "node:http"
import * as Metrics from "./Metrics.js"

const boundaries = MetricBoundaries.fromIterable(Metrics.nonNegativeBoundaries)

const generated = <M>(name: string, metric: M): M => {
  Metrics.reserve(name, { generated: true })
  return metric
}

/**
 * HTTP requests received, labelled `label` and `host`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const requestCount = generated(
  "serviceweaver_http_request_count",
  Metric.counter("serviceweaver_http_request_count", {
    description: "Count of HTTP requests received",
    incremental: true
  })
)

/**
 * HTTP replies with a 4XX or 5XX status, labelled `label`, `host` and `code`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const errorCount = generated(
  "serviceweaver_http_error_count",
  Metric.counter("serviceweaver_http_error_count", {
    description: "Count of HTTP replies with a 4XX or 5XX status code",
    incremental: true
  })
)

/**
 * Time from receiving a request to having its response, in microseconds.
 *
 * @since 0.1.0
 * @category metrics
 */
export const latencyMicros = generated(
  "serviceweaver_http_request_latency_micros",
  Metric.histogram(
    "serviceweaver_http_request_latency_micros",
    boundaries,
    "Duration, in microseconds, of HTTP request execution"
  )
)

/**
 * Estimated size of a request on the wire (request line, headers and body),
 * for requests whose body size is known up front.
 *
 * @since 0.1.0
 * @category metrics
 */
export const bytesReceived = generated(
  "serviceweaver_http_request_bytes_received",
  Metric.histogram(
    "serviceweaver_http_request_bytes_received",
    boundaries,
    "Number of bytes received by HTTP request handlers"
  )
)

/**
 * Estimated size of a response on the wire (status line, headers and body).
 *
 * @since 0.1.0
 * @category metrics
 */
export const bytesReturned = generated(
  "serviceweaver_http_request_bytes_returned",
  Metric.histogram(
    "serviceweaver_http_request_bytes_returned",
    boundaries,
    "Number of bytes returned by HTTP request handlers"
  )
)

/**
 * How many distinct `host` label values one instrumented app records; the
 * requests of further hosts are labelled `host="other"`. The Host header
 * comes from the client, and every distinct value is a new series held for
 * the life of the process.
 *
 * @since 0.1.0
 * @category constants
 */
export const maxHosts = 64

type Labels = ReadonlyArray<MetricLabel.MetricLabel>

interface Series {
  readonly labels: Labels
  readonly errors: Map<number, Labels>
}

const protocolLength = "HTTP/1.1".length

/** Estimates the request's size as Service Weaver does; undefined when the body size is unknown. */
const requestSize = (request: HttpServerRequest.HttpServerRequest): number | undefined => {
  const headers = request.headers
  let body = 0
  const contentLength = headers["content-length"]
  if (contentLength !== undefined) body = Number(contentLength)
  else if (headers["transfer-encoding"] !== undefined) return undefined
  if (!Number.isFinite(body)) return undefined
  let size = request.method.length + protocolLength + request.url.length + body
  for (const name in headers) size += name.length + headers[name]!.length
  return size
}

const bodyLength = (body: HttpBody.HttpBody): number => body._tag === "Empty" ? 0 : body.contentLength ?? 0

/** Estimates the response's size as Service Weaver does: status line, headers, body. */
const responseSize = (response: HttpServerResponse.HttpServerResponse): number => {
  const headers = response.headers
  const body = bodyLength(response.body)
  let size = protocolLength + 3 + (response.statusText ?? Http.STATUS_CODES[response.status] ?? "").length + body
  for (const name in headers) size += name.length + headers[name]!.length
  const contentType = response.body.contentType
  if (contentType !== undefined) size += "content-type".length + contentType.length
  if (response.body._tag !== "Empty") size += "content-length".length + String(body).length
  return size
}

/**
 * Records the HTTP metrics for every request `app` handles, labelled with
 * `label` and the request's Host header. The status of a failure is the one
 * the server replies with (a route that does not match is a 404, a defect a
 * 500). Recording costs a few map lookups and two clock reads per request.
 *
 * @example
 * ```ts
 * const app = HttpMetrics.instrument("api", HttpRouter.empty.pipe(HttpRouter.get("/", handler)))
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const instrument = <E, R>(label: string, app: HttpApp.Default<E, R>): HttpApp.Default<E, R> => {
  const makeSeries = (host: string): Series => ({
    labels: [MetricLabel.make("host", host), MetricLabel.make("label", label)],
    errors: new Map()
  })
  const hosts = new Map<string, Series>()
  let other: Series | undefined
  const seriesOf = (host: string): Series => {
    let series = hosts.get(host)
    if (series === undefined) {
      if (hosts.size >= maxHosts) return other ??= makeSeries("other")
      series = makeSeries(host)
      hosts.set(host, series)
    }
    return series
  }
  const errorLabels = (series: Series, code: number): Labels => {
    let labels = series.errors.get(code)
    if (labels === undefined) {
      labels = [...series.labels, MetricLabel.make("code", String(code))]
      series.errors.set(code, labels)
    }
    return labels
  }
  const done = (series: Series, start: number, response: HttpServerResponse.HttpServerResponse) => {
    latencyMicros.unsafeUpdate(Math.round((performance.now() - start) * 1000), series.labels)
    if (response.status >= 400 && response.status < 600) {
      errorCount.unsafeUpdate(1, errorLabels(series, response.status))
    }
    bytesReturned.unsafeUpdate(responseSize(response), series.labels)
  }
  return Effect.withFiberRuntime((fiber) => {
    const request = Context.unsafeGet(fiber.currentContext, HttpServerRequest.HttpServerRequest)
    const start = performance.now()
    const series = seriesOf(request.headers.host ?? "")
    requestCount.unsafeUpdate(1, series.labels)
    const received = requestSize(request)
    if (received !== undefined) bytesReceived.unsafeUpdate(received, series.labels)
    // Cheaper than Effect.onExit, at the price of not timing requests interrupted mid-flight (they are counted).
    return Effect.matchCauseEffect(app, {
      onSuccess: (response) => {
        done(series, start, response)
        return Effect.succeed(response)
      },
      onFailure: (cause) =>
        Effect.flatMap(HttpServerError.causeResponse(cause), ([response]) => {
          done(series, start, response)
          return Effect.failCause(cause)
        })
    })
  })
}
