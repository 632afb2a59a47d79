/**
 * What runs in every pod of a `weaver kube deploy`ment (weaver-kube's
 * babysitter): the envelope of the pod's one weavelet, built on the
 * runtime's deployer API (`Envelope.make`).
 *
 * - The weavelet serves its components on the pod's IP (port
 *   `Manifests.ports.weavelet`) and its listeners on their fixed ports.
 * - Routing: for a component of another group, the weavelet gets the ready
 *   pods of that group's headless Service, followed through the API server
 *   (EndpointSlices), so routing follows pods as they come and go. Only the
 *   Services of its own version are ever watched: versions never talk to
 *   each other (and could not: each version has its own certificate
 *   authority).
 * - Health: `/readyz` answers 200 once the weavelet is ready and until the
 *   pod is told to stop; `/livez` while the weavelet answers the envelope's
 *   health probe; `/metrics` the weavelet's metrics in Prometheus' text
 *   format. All on port `Manifests.ports.health`.
 * - Stopping (SIGTERM): `/readyz` turns 503, so the pod leaves its group's
 *   EndpointSlices and callers stop picking it; the pod keeps serving for
 *   {@link drainDelay}, which lets calls in flight finish, then stops its
 *   weavelet and exits.
 * - Telemetry goes through {@link Plugins}: by default log entries are
 *   printed on stdout as JSON lines (`kubectl logs`), metrics are scraped
 *   from `/metrics`, and spans are dropped unless the weavelet exports them
 *   itself with OTLP (`OTEL_EXPORTER_OTLP_ENDPOINT` in `[serviceweaver] env`).
 *
 * @since 0.1.0
 */
import type { Logging, Tracing } from "@effect-weaver/runtime"
import { Certificates, Control, Envelope, Prometheus, WeaverConfig } from "@effect-weaver/runtime"
import { NodeRuntime } from "@effect/platform-node"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as Fs from "node:fs"
import * as Http from "node:http"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Endpoints from "./internal/endpoints.js"
import * as Manifests from "./Manifests.js"

/**
 * Where a pod's telemetry goes (Service Weaver's kube `Plugins`). Each is
 * optional; see the module's doc for the defaults.
 *
 * @since 0.1.0
 * @category models
 */
export interface Plugins {
  /** Every log entry of the weavelet (its own and each line it printed). Default: a JSON line on stdout. */
  readonly logs?: ((entry: Logging.Entry) => Effect.Effect<void>) | undefined
  /** Finished spans of the weavelet, about once a second. Default: dropped. */
  readonly traces?: ((spans: ReadonlyArray<Tracing.Span>) => Effect.Effect<void>) | undefined
  /** The weavelet's metrics, every {@link metricsInterval}. Default: none pushed (`/metrics` is scraped). */
  readonly metrics?: ((snapshots: ReadonlyArray<Prometheus.MetricSnapshot>) => Effect.Effect<void>) | undefined
}

/**
 * How long a stopping pod keeps serving after it stopped being ready.
 *
 * @since 0.1.0
 * @category constants
 */
export const drainDelay = Duration.seconds(5)

/**
 * How often the `metrics` plugin receives the weavelet's metrics.
 *
 * @since 0.1.0
 * @category constants
 */
export const metricsInterval = Duration.seconds(15)

/**
 * The pod cannot run: its environment is not what the deployer gave it.
 *
 * @since 0.1.0
 * @category errors
 */
export class BabysitterError extends Data.TaggedError("BabysitterError")<{ readonly reason: string }> {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return this.reason
  }
}

const fail = (reason: string) => new BabysitterError({ reason })

const readFile = (path: string, what: string) =>
  Effect.try({ try: () => Fs.readFileSync(path, "utf8"), catch: (e) => fail(`cannot read ${what} ${path}: ${e}`) })

const decodeCredentials = Schema.decodeUnknown(Schema.parseJson(Certificates.Credentials))

/**
 * Whether this process was started as a pod of a deployment (its
 * environment has `Manifests.podEnv`).
 *
 * @since 0.1.0
 * @category runtime
 */
export const requested = (): boolean => process.env[Manifests.podEnv] !== undefined

/**
 * Runs the pod: starts the weavelet and babysits it until SIGTERM or until
 * it exits (then the pod exits with it, and Kubernetes restarts it).
 *
 * @since 0.1.0
 * @category runtime
 */
export const babysit = Effect.fnUntraced(function*(plugins?: Plugins) {
  const pod = yield* Effect.try({
    try: () => JSON.parse(process.env[Manifests.podEnv] ?? "") as Manifests.PodConfig,
    catch: () => fail(`${Manifests.podEnv} is not the JSON the deployer writes`)
  })
  const podIp = process.env.POD_IP
  if (podIp === undefined) return yield* fail("POD_IP is not set (the Deployment sets it from status.podIP)")
  const replicaId = process.env.POD_NAME ?? Os.hostname()
  const configText = yield* readFile(Manifests.paths.config, "the config")
  const config = yield* Either.mapLeft(
    WeaverConfig.parse(configText, Manifests.paths.config, Manifests.paths.configDir),
    (error) => fail(error.message)
  )
  const credentials = yield* readFile(Manifests.paths.credentials, "the credentials").pipe(
    Effect.flatMap(decodeCredentials),
    Effect.mapError((error) => fail(`credentials: ${error.message}`)),
    Effect.cached
  )
  const api = yield* Effect.mapError(Endpoints.inCluster(), (error) => fail(error.message))
  const origin = { app: pod.app, deploymentId: pod.deploymentId, node: replicaId, component: pod.group }
  const logs = plugins?.logs ??
    ((entry: Logging.Entry) => Effect.sync(() => process.stdout.write(`${JSON.stringify(entry)}\n`)))
  const log = (msg: string, level = "info") =>
    logs({
      ...origin,
      version: pod.deploymentId,
      timeMicros: Date.now() * 1000,
      level,
      source: "babysitter",
      msg,
      attrs: []
    })

  const state = { ready: false, draining: false, healthy: true }
  const socketDir = yield* Effect.acquireRelease(
    Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "weaver-pod-"))),
    (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
  )
  const handler: Envelope.Handler = {
    ready: (address) => Effect.zipRight(Effect.sync(() => state.ready = true), log(`weavelet ready on ${address}`)),
    // Every group of the version runs from the start (its Deployment); nothing to start on demand.
    activate: (component) =>
      pod.services[component] === undefined
        ? Effect.fail(new Control.ControlError({ message: `component ${component} is in no group of this deployment` }))
        : Effect.void,
    routing: (component) => {
      const service = pod.services[component]
      if (service === undefined) return Stream.empty
      return Endpoints.watchAddresses({
        api,
        namespace: pod.namespace,
        service,
        port: Manifests.ports.weavelet,
        onError: (error) => log(`routing of ${component}: ${error.message}; retrying`, "warn")
      }).pipe(
        // An empty set is not sent: callers keep the last replicas (a stopping pod drains) and wait for new ones.
        Stream.filter((addresses) => addresses.length > 0),
        Stream.tap((addresses) => log(`routing of ${component}: ${addresses.join(", ")}`))
      )
    },
    // A listener Service balances connections (layer 4): any kind of listener goes through it as is.
    exportListener: (listener, address, kind) => {
      const exposed = pod.listeners.find((l) => l.name === listener)
      const reachable = exposed === undefined
        ? address
        : `${exposed.service}.${pod.namespace}.svc:${exposed.servicePort}`
      return Effect.as(log(`listener ${listener} (${kind}) serves on ${address}, reached at ${reachable}`), reachable)
    },
    traceSpans: plugins?.traces,
    certificate: Effect.mapError(credentials, (error) => new Control.ControlError({ message: error.message })),
    // Peers are authenticated by this version's authority, which only issued certificates to its own groups.
    authorize: () => Effect.succeed([Control.anyComponent]),
    unhealthy: (reason) =>
      Effect.zipRight(Effect.sync(() => state.healthy = false), log(`weavelet unhealthy: ${reason}`, "error"))
  }

  const listeners = Object.fromEntries(pod.listeners.map((l) => [l.name, `0.0.0.0:${l.port}`]))
  const envelope = yield* Envelope.make({
    bootstrap: {
      app: pod.app,
      deploymentId: pod.deploymentId,
      replicaId,
      group: pod.group,
      components: pod.components,
      runMain: pod.components.includes("main"),
      internalAddress: `${podIp.includes(":") ? `[${podIp}]` : podIp}:${Manifests.ports.weavelet}`,
      listeners,
      config: { file: Manifests.paths.config, dir: Manifests.paths.configDir, text: configText },
      external: [],
      mtls: true
    },
    socketDir,
    command: process.execPath,
    args: ["--enable-source-maps", Manifests.paths.app, ...pod.args],
    env: { ...process.env, [Manifests.podEnv]: undefined, ...WeaverConfig.environment(config) },
    handler,
    output: (stream, line) => Effect.runFork(logs(Envelope.logEntry(origin, stream, line)))
  }).pipe(Effect.mapError((error) => fail(error.message)))

  yield* serveHealth(state, envelope)
  if (plugins?.metrics !== undefined) {
    const push = plugins.metrics
    yield* envelope.metrics.pipe(
      Effect.flatMap(push),
      Effect.ignore,
      Effect.repeat({ schedule: Schedule.spaced(metricsInterval) }),
      Effect.forkScoped
    )
  }
  // Acquired last, so released first: on SIGTERM, leave routing and drain before the envelope stops the weavelet.
  yield* Effect.addFinalizer(() =>
    Effect.zipRight(
      Effect.sync(() => state.draining = true),
      Effect.zipRight(
        log(`stopping: no longer ready, serving for ${Duration.format(drainDelay)} more`),
        Effect.sleep(drainDelay)
      )
    )
  )
  yield* log(`babysitting ${pod.group} (pid ${envelope.pid}) of ${pod.app} version ${pod.version}`)
  const status = yield* envelope.exited
  yield* log(`weavelet exited (${status.unhealthy ?? status.signal ?? `code ${status.code}`})`, "error")
  return yield* Effect.sync(() => {
    process.exitCode = status.code === 0 ? 1 : (status.code ?? 1)
  })
})

const serveHealth = (
  state: { ready: boolean; draining: boolean; healthy: boolean },
  envelope: Envelope.Envelope["Type"]
) =>
  Effect.acquireRelease(
    Effect.async<Http.Server, BabysitterError>((resume) => {
      const server = Http.createServer((req, res) => {
        const reply = (code: number, body: string, type = "text/plain") => {
          res.writeHead(code, { "content-type": type }).end(body)
        }
        const path = (req.url ?? "/").split("?")[0]
        if (path === "/readyz") return state.ready && !state.draining ? reply(200, "ok\n") : reply(503, "not ready\n")
        if (path === "/livez" || path === "/healthz") {
          return state.healthy ? reply(200, "ok\n") : reply(503, "unhealthy\n")
        }
        if (path === "/metrics") {
          return void Effect.runPromise(Effect.either(envelope.metrics)).then((metrics) =>
            Either.isRight(metrics)
              ? reply(200, Prometheus.encode(metrics.right), "text/plain; version=0.0.4")
              : reply(503, `${metrics.left.message}\n`)
          )
        }
        reply(404, "not found\n")
      })
      server.once("error", (e) =>
        resume(Effect.fail(fail(`cannot serve health on port ${Manifests.ports.health}: ${e.message}`))))
      server.listen(Manifests.ports.health, "0.0.0.0", () =>
        resume(Effect.succeed(server)))
    }),
    (server) => Effect.sync(() => server.close())
  )

/**
 * Runs {@link babysit} as the process's main program: errors are printed
 * and exit with code 1; SIGTERM drains and stops the weavelet.
 *
 * @since 0.1.0
 * @category runtime
 */
export const run = (plugins?: Plugins): void =>
  babysit(plugins).pipe(
    Effect.scoped,
    Effect.onExit((exit) =>
      Exit.isFailure(exit) && !Exit.isInterrupted(exit)
        ? Effect.sync(() => {
          process.stderr.write(`babysitter: ${Exit.isFailure(exit) ? String(exit.cause) : ""}\n`)
          process.exitCode = 1
        })
        : Effect.void
    ),
    Effect.ignore,
    NodeRuntime.runMain
  )
