/**
 * The status server of a single-process deployment: a small HTTP server on
 * loopback that `weaver single metrics` (and Prometheus) reads. Its address
 * is recorded in the deployment's registry entry.
 *
 * | Path | Serves |
 * |---|---|
 * | `/debug/weaver/prometheus` | this process's metrics in the Prometheus text format |
 * | `/debug/weaver/metrics` | the same metrics as JSON `MetricSnapshot`s, for tools that merge deployments |
 * | `/debug/weaver/healthz` | `OK` |
 * | `/debug/weaver/traces?lat_low=&lat_hi=&errs=` | recent traces as JSON summaries, newest first; see `Tracing` |
 * | `/debug/weaver/tracefetch?trace_id=` | one trace as Chrome trace-event JSON, for Perfetto |
 * | `/debug/weaver/profile?type=cpu\|heap&duration=30s` | a gzipped pprof profile of this process; see `Profiling` |
 *
 * @since 0.1.0
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import type { ServeError } from "@effect/platform/HttpServerError"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Http from "node:http"
import * as Perfetto from "./Perfetto.js"
import * as Profiling from "./Profiling.js"
import * as Prometheus from "./Prometheus.js"
import * as Tracing from "./Tracing.js"

/**
 * The path of the JSON snapshots.
 *
 * @since 0.1.0
 * @category constants
 */
export const metricsPath = "/debug/weaver/metrics"

/**
 * The path of the health check.
 *
 * @since 0.1.0
 * @category constants
 */
export const healthzPath = "/debug/weaver/healthz"

/**
 * What `/debug/weaver/metrics` returns: this process's snapshots, labelled
 * with its app, deployment and replica.
 *
 * @since 0.1.0
 * @category schemas
 */
export const MetricsResponse = Schema.Array(Prometheus.MetricSnapshot)

/**
 * Who the status server reports for.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly app: string
  readonly deploymentId: string
  readonly replicaId: string
  /** The trace store served at `/debug/weaver/traces`; without one, trace paths answer 404. */
  readonly traces?: Tracing.Store | undefined
  /**
   * Where the served metrics come from, already labelled (a deployer merging
   * those of its replicas, say); by default this process's, see {@link metrics}.
   */
  readonly snapshots?: Effect.Effect<ReadonlyArray<Prometheus.MetricSnapshot>> | undefined
  /** Takes the profiles served at `/debug/weaver/profile`; by default `Profiling.collect` of this process. */
  readonly profile?:
    | ((options: Profiling.CollectOptions) => Effect.Effect<Uint8Array, Profiling.ProfilingError>)
    | undefined
}

/**
 * A running status server: the service {@link make} starts and
 * {@link layer} provides.
 *
 * @since 0.1.0
 * @category tags
 */
export class StatusServer extends Context.Tag("@effect-weaver/runtime/StatusServer")<StatusServer, {
  /** `127.0.0.1:port`. */
  readonly address: string
}>() {}

const encodeMetrics = Schema.encodeSync(MetricsResponse)

/**
 * This process's metrics, labelled as one replica of the deployment.
 *
 * @since 0.1.0
 * @category accessors
 */
export const metrics = (options: Options): Array<Prometheus.MetricSnapshot> =>
  Prometheus.merge([{ ...options, metrics: Prometheus.snapshot() }])

/**
 * Starts the status server on `127.0.0.1` with a free port, for the
 * lifetime of the scope: bind, then serve {@link router}.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (options: Options) => Effect.Effect<StatusServer["Type"], ServeError, Scope.Scope> = Effect
  .fnUntraced(function*(options: Options) {
    const server = yield* NodeHttpServer.make(() => Http.createServer(), { host: "127.0.0.1", port: 0 })
    const address = server.address._tag === "TcpAddress" ? `127.0.0.1:${server.address.port}` : ""
    yield* HttpServer.serveEffect()(router(options, address)).pipe(Effect.provideService(HttpServer.HttpServer, server))
    return { address }
  })

/**
 * The status server as a Layer: started when the layer is built, stopped
 * when its scope closes.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<StatusServer, ServeError> =>
  Layer.scoped(StatusServer, make(options))

/** The routes of the status server at `address`: the paths in the table above. */
const router = (options: Options, address: string) => {
  const snapshots = options.snapshots ?? Effect.sync(() => metrics(options))
  return HttpRouter.empty.pipe(
    HttpRouter.get(
      Prometheus.path,
      Effect.map(
        snapshots,
        (snapshots) =>
          HttpServerResponse.text(Prometheus.encode(snapshots, { targets: [address] }), {
            contentType: "text/plain; version=0.0.4; charset=utf-8"
          })
      )
    ),
    HttpRouter.get(
      metricsPath,
      Effect.map(snapshots, (snapshots) => HttpServerResponse.unsafeJson(encodeMetrics(snapshots)))
    ),
    HttpRouter.get(healthzPath, HttpServerResponse.text("OK")),
    HttpRouter.get(Tracing.tracesPath, tracesHandler(options.traces)),
    HttpRouter.get(Tracing.traceFetchPath, traceFetchHandler(options.traces)),
    HttpRouter.get(
      Profiling.path,
      options.profile === undefined ? Profiling.httpHandler : Profiling.makeHttpHandler(options.profile)
    )
  )
}

const searchParams = Effect.map(
  HttpServerRequest.HttpServerRequest,
  (request) => new URL(request.url, "http://status").searchParams
)

const noTraces = HttpServerResponse.text("tracing is not enabled in this process", { status: 404 })

const tracesHandler = (store: Tracing.Store | undefined) =>
  store === undefined ? noTraces : Effect.map(searchParams, (params) => {
    const query = Tracing.queryFromParams(params)
    return typeof query === "string"
      ? HttpServerResponse.text(query, { status: 400 })
      : HttpServerResponse.unsafeJson(store.traces(query))
  })

const traceFetchHandler = (store: Tracing.Store | undefined) =>
  store === undefined ? noTraces : Effect.map(searchParams, (params) => {
    const traceId = params.get("trace_id")
    if (traceId === null || traceId === "") return HttpServerResponse.text("missing trace_id", { status: 400 })
    const spans = store.trace(traceId)
    return spans.length === 0
      ? HttpServerResponse.text(`trace ${traceId} is not stored (unknown, or dropped as too old)`, { status: 404 })
      : HttpServerResponse.unsafeJson(Perfetto.encode(spans))
  })
