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
 *
 * @since 0.1.0
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import type { ServeError } from "@effect/platform/HttpServerError"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Http from "node:http"
import * as Prometheus from "./Prometheus.js"

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
}

/**
 * A running status server.
 *
 * @since 0.1.0
 * @category models
 */
export interface StatusServer {
  /** `127.0.0.1:port`. */
  readonly address: string
}

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
 * lifetime of the scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<StatusServer, ServeError, Scope.Scope> =>
  Effect.gen(function*() {
    const server = yield* NodeHttpServer.make(() => Http.createServer(), { host: "127.0.0.1", port: 0 })
    const address = server.address._tag === "TcpAddress" ? `127.0.0.1:${server.address.port}` : ""
    const router = HttpRouter.empty.pipe(
      HttpRouter.get(
        Prometheus.path,
        Effect.sync(() =>
          HttpServerResponse.text(Prometheus.encode(metrics(options), { targets: [address] }), {
            contentType: "text/plain; version=0.0.4; charset=utf-8"
          })
        )
      ),
      HttpRouter.get(metricsPath, Effect.sync(() => HttpServerResponse.unsafeJson(encodeMetrics(metrics(options))))),
      HttpRouter.get(healthzPath, HttpServerResponse.text("OK"))
    )
    yield* HttpServer.serveEffect()(router).pipe(Effect.provideService(HttpServer.HttpServer, server))
    return { address }
  })
