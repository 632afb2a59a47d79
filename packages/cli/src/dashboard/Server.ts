/**
 * `weaver <tool> dashboard`: a web dashboard of the tool's live deployments,
 * served on loopback by an `@effect/platform` router. Its scripts (cytoscape,
 * cytoscape-dagre with its bundled dagre, uPlot) are served from
 * `node_modules`, so it works offline.
 *
 * | Path | Shows |
 * |---|---|
 * | `/` | live deployments (app, id, age) |
 * | `/deployment?id=` | summary, components, methods, traffic graph, commands, config |
 * | `/metrics?id=` | the deployment's metrics as Prometheus text |
 * | `/traces?id=&lat_low=&lat_hi=&errs=` | recent traces, each downloadable for Perfetto |
 * | `/tracefetch?id=&trace_id=` | one trace as Chrome trace-event JSON, from the deployment's status server |
 *
 * @since 0.1.0
 */
import * as Prometheus from "@effect-weaver/runtime/Prometheus"
import * as Registry from "@effect-weaver/runtime/Registry"
import * as Tracing from "@effect-weaver/runtime/Tracing"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import type { ServeError } from "@effect/platform/HttpServerError"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Fs from "node:fs/promises"
import * as Http from "node:http"
import { createRequire } from "node:module"
import * as Path from "node:path"
import * as Metrics from "../Metrics.js"
import * as Profile from "../Profile.js"
import type { Html } from "./Html.js"
import * as Stats from "./Stats.js"
import * as Templates from "./Templates.js"

const require = createRequire(import.meta.url)

const distOf = (pkg: string) => Path.dirname(require.resolve(pkg))

/**
 * The files served under `/assets/`, by name.
 *
 * @since 0.1.0
 * @category constants
 */
export const assets: Readonly<Record<string, { readonly file: () => string; readonly type: string }>> = {
  "cytoscape.min.js": { file: () => Path.join(distOf("cytoscape"), "cytoscape.min.js"), type: "text/javascript" },
  "cytoscape-dagre.min.js": {
    file: () => Path.join(distOf("cytoscape-dagre"), "cytoscape-dagre.min.js"),
    type: "text/javascript"
  },
  "uPlot.iife.min.js": { file: () => Path.join(distOf("uplot"), "uPlot.iife.min.js"), type: "text/javascript" },
  "uPlot.min.css": { file: () => Path.join(distOf("uplot"), "uPlot.min.css"), type: "text/css" }
}

/**
 * Where the dashboard listens.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Default `127.0.0.1`. */
  readonly host?: string
  /** Default 0: a free port. */
  readonly port?: number
}

/**
 * A running dashboard.
 *
 * @since 0.1.0
 * @category models
 */
export interface Dashboard {
  /** `http://host:port`. */
  readonly url: string
}

const page = (content: Html, status = 200) =>
  HttpServerResponse.text(content.value, { status, contentType: "text/html; charset=utf-8" })

const params = Effect.map(
  HttpServerRequest.HttpServerRequest,
  (request) => new URL(request.url, "http://dashboard").searchParams
)

const fetchTimeout = 5_000

const getText = (url: string) =>
  Effect.tryPromise({
    try: async (signal) => {
      const response = await fetch(url, { signal: AbortSignal.any([signal, AbortSignal.timeout(fetchTimeout)]) })
      return { status: response.status, text: await response.text() }
    },
    catch: (cause) => cause instanceof Error ? cause.message : String(cause)
  })

const decodeTraces = Schema.decodeUnknownEither(Schema.parseJson(Schema.Array(Tracing.TraceSummary)))

/**
 * The dashboard's routes for the live deployments of `tool`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const router = (tool: Registry.Tool) => {
  const withDeployment = (
    f: (
      deployment: Registry.Deployment,
      params: URLSearchParams
    ) => Effect.Effect<HttpServerResponse.HttpServerResponse>
  ) =>
    Effect.gen(function*() {
      const query = yield* params
      const id = query.get("id") ?? ""
      const found = yield* Effect.either(Profile.findDeployment(tool, id))
      if (Either.isLeft(found)) return page(Templates.message(tool, "Deployment not found", found.left.message), 404)
      return yield* f(found.right, query)
    })

  const readConfig = (deployment: Registry.Deployment) =>
    deployment.configFile === undefined
      ? Effect.succeed({ error: "The registry entry names no config file." })
      : Effect.promise(() =>
        Fs.readFile(deployment.configFile!, "utf8").then(
          (text) => ({ text }),
          (error: Error) => ({ error: `Could not read ${deployment.configFile}: ${error.message}` })
        )
      )

  return HttpRouter.empty.pipe(
    HttpRouter.get(
      "/",
      Effect.map(Registry.list(tool), (deployments) => page(Templates.index(tool, deployments, Date.now())))
    ),
    HttpRouter.get(
      "/deployment",
      withDeployment((deployment) =>
        Effect.gen(function*() {
          const [config, metrics] = yield* Effect.all([readConfig(deployment), Metrics.fetchDeployment(deployment)], {
            concurrency: 2
          })
          const snapshots = Either.getOrElse(metrics, () => [])
          return page(Templates.deployment({
            tool,
            deployment,
            now: Date.now(),
            config,
            methods: Stats.methods(snapshots),
            edges: Stats.edges(snapshots),
            metricsError: Either.isLeft(metrics) ? metrics.left : undefined
          }))
        })
      )
    ),
    HttpRouter.get(
      "/metrics",
      withDeployment((deployment) =>
        Effect.map(Metrics.fetchDeployment(deployment), (metrics) =>
          page(Templates.metrics(
            tool,
            deployment,
            Prometheus.encode(Either.getOrElse(metrics, () => []), {
              targets: deployment.statusAddress === undefined ? [] : [deployment.statusAddress]
            }),
            Either.isLeft(metrics) ? metrics.left : undefined
          )))
      )
    ),
    HttpRouter.get(
      "/traces",
      withDeployment((deployment, query) =>
        Effect.gen(function*() {
          const low = query.get("lat_low") ?? ""
          const high = query.get("lat_hi") ?? ""
          const errs = ["true", "1", "on"].includes(query.get("errs") ?? "")
          const view = { tool, deployment, query: { low, high, errs } }
          const address = deployment.statusAddress
          if (address === undefined) {
            return page(Templates.traces({ ...view, traces: [], note: "This deployment has no status server." }))
          }
          const forward = new URLSearchParams()
          if (low !== "") forward.set("lat_low", low)
          if (high !== "") forward.set("lat_hi", high)
          if (errs) forward.set("errs", "true")
          const result = yield* Effect.either(getText(`http://${address}${Tracing.tracesPath}?${forward}`))
          const listed = Either.flatMap(result, ({ status, text }) =>
            status === 200
              ? Either.mapLeft(decodeTraces(text), (e) => `the status server sent bad traces: ${e.message}`)
              : Either.left(
                status === 404
                  ? `Traces are not available for this deployment (${text.trim() || "HTTP 404"}).`
                  : `The status server could not list traces: HTTP ${status}: ${text.trim()}`
              ))
          return Either.match(listed, {
            onLeft: (note) => page(Templates.traces({ ...view, traces: [], note })),
            onRight: (traces) => page(Templates.traces({ ...view, traces }))
          })
        })
      )
    ),
    HttpRouter.get(
      "/tracefetch",
      withDeployment((deployment, query) =>
        Effect.gen(function*() {
          const traceId = query.get("trace_id") ?? ""
          const address = deployment.statusAddress
          if (address === undefined) {
            return HttpServerResponse.text("this deployment has no status server", { status: 404 })
          }
          const forward = new URLSearchParams({ trace_id: traceId })
          const result = yield* Effect.either(getText(`http://${address}${Tracing.traceFetchPath}?${forward}`))
          if (Either.isLeft(result)) {
            return HttpServerResponse.text(`the status server did not answer: ${result.left}`, { status: 502 })
          }
          const { status, text } = result.right
          return status === 200
            ? HttpServerResponse.text(text, {
              contentType: "application/json",
              headers: { "content-disposition": `attachment; filename="trace-${traceId.replace(/[^\w-]/g, "_")}.json"` }
            })
            : HttpServerResponse.text(text, { status })
        })
      )
    ),
    HttpRouter.get(
      "/assets/:name",
      Effect.gen(function*() {
        const { name } = yield* HttpRouter.params
        const asset = name === undefined ? undefined : assets[name]
        if (asset === undefined) return HttpServerResponse.text("no such asset", { status: 404 })
        return yield* Effect.promise(() => Fs.readFile(asset.file())).pipe(
          Effect.map((bytes) =>
            HttpServerResponse.uint8Array(bytes, {
              contentType: asset.type,
              headers: { "cache-control": "max-age=3600" }
            })
          )
        )
      })
    )
  )
}

/**
 * Starts the dashboard for the lifetime of the scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  tool: Registry.Tool,
  options?: Options
): Effect.Effect<Dashboard, ServeError, Scope.Scope> =>
  Effect.gen(function*() {
    const host = options?.host ?? "127.0.0.1"
    const server = yield* NodeHttpServer.make(() => Http.createServer(), { host, port: options?.port ?? 0 })
    const port = server.address._tag === "TcpAddress" ? server.address.port : 0
    yield* HttpServer.serveEffect()(router(tool)).pipe(Effect.provideService(HttpServer.HttpServer, server))
    return { url: `http://${host.includes(":") ? `[${host}]` : host}:${port}` }
  })

/**
 * Runs `weaver <tool> dashboard`: starts the dashboard, prints its URL and
 * serves until interrupted.
 *
 * @since 0.1.0
 * @category runtime
 */
export const serve = (tool: Registry.Tool, options?: Options): Effect.Effect<never, ServeError> =>
  Effect.scoped(
    Effect.gen(function*() {
      const dashboard = yield* make(tool, options)
      yield* Console.log(`Dashboard available at: ${dashboard.url}`)
      return yield* Effect.never
    })
  )
