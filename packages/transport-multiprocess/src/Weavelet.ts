/**
 * The weavelet side of a multiprocess deployment: what `Weaver.run(app)`
 * becomes in a process the multi deployer started (its bootstrap is in the
 * `WEAVER_WEAVELET` environment variable).
 *
 * The process hosts the components of its colocation group and serves them
 * over the RPC transport on the internal address its deployer gives it
 * (`internalAddress` in the bootstrap); calls to other components go to
 * their replicas, found through the control plane. Co-located components
 * call each other directly. Listeners bind `127.0.0.1:0` and are exported to
 * the deployer's proxy. Log entries travel to the deployer on stderr. The
 * process exits when its deployer is gone (its parent changes or the
 * control socket stops answering), so no replica outlives a killed deployer.
 * Finished spans go to the deployer's trace store about once a second.
 *
 * @since 0.1.0
 */
import type { Component } from "@effect-weaver/runtime"
import {
  Address,
  App,
  Logging,
  Profiling,
  Prometheus,
  Runtime,
  Tracing,
  Weavelet as CoreWeavelet,
  WeaverConfig
} from "@effect-weaver/runtime"
import * as Control from "@effect-weaver/runtime/Control"
import * as LogFile from "@effect-weaver/runtime/LogFile"
import * as Server from "@effect-weaver/transport-rpc/Server"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import * as NodeSocketServer from "@effect/platform-node/NodeSocketServer"
import * as RpcClient from "@effect/rpc/RpcClient"
import * as RpcServer from "@effect/rpc/RpcServer"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as HashSet from "effect/HashSet"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as EffectRuntime from "effect/Runtime"
import * as Schedule from "effect/Schedule"
import * as TransportMultiprocess from "./TransportMultiprocess.js"

/**
 * The weavelet could not start: a bad bootstrap, an unreachable control
 * socket, or an application module without the expected app.
 *
 * @since 0.1.0
 * @category errors
 */
export class WeaveletError extends Data.TaggedError("WeaveletError")<{
  readonly reason: string
}> {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return this.reason
  }
}

/**
 * Whether this process was started by the multi deployer.
 *
 * @since 0.1.0
 * @category accessors
 */
export const isWeavelet = (): boolean => process.env[Control.bootstrapEnv] !== undefined

/**
 * The bootstrap of this process.
 *
 * @since 0.1.0
 * @category accessors
 */
export const bootstrap: Effect.Effect<Control.Bootstrap, WeaveletError> = Effect.suspend(() => {
  const text = process.env[Control.bootstrapEnv]
  if (text === undefined) {
    return Effect.fail(new WeaveletError({ reason: `${Control.bootstrapEnv} is not set: not started by a deployer` }))
  }
  return Either.match(Control.decodeBootstrap(text), {
    onLeft: (reason) => Effect.fail(new WeaveletError({ reason })),
    onRight: Effect.succeed
  })
})

/**
 * A logger that ships entries to the deployer on stderr.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeLogger = (origin: Logging.Origin): Logger.Logger<unknown, void> =>
  Logger.make((options) => {
    process.stderr.write(Control.logMarker + LogFile.encode(Logging.toEntry(origin, options)) + "\n")
  })

const exitWhenOrphaned = (reason: string) => {
  process.stderr.write(`weavelet ${process.pid}: ${reason}; exiting\n`)
  // A graceful stop first (NodeRuntime interrupts main on SIGTERM), then a hard one.
  setTimeout(() => process.exit(1), 2_000).unref()
  process.kill(process.pid, "SIGTERM")
}

/**
 * Exits the process when the deployer is gone: the parent process changed
 * (the deployer died, even by SIGKILL) or the control socket stopped
 * answering.
 */
const watchDeployer = (health: Effect.Effect<unknown, unknown>) =>
  Effect.gen(function*() {
    const parent = process.ppid
    const timer = setInterval(() => {
      if (process.ppid !== parent) exitWhenOrphaned(`the deployer (pid ${parent}) is gone`)
    }, 250)
    yield* Effect.addFinalizer(() => Effect.sync(() => clearInterval(timer)))
    yield* health.pipe(
      Effect.timeout("5 seconds"),
      Effect.retry(Schedule.recurs(2)),
      Effect.repeat(Schedule.spaced("1 second")),
      Effect.catchAllCause(() => Effect.sync(() => exitWhenOrphaned("the control socket stopped answering"))),
      Effect.forkScoped
    )
  })

/**
 * Serves the calls of the envelope ({@link Control.WeaveletRpcs}) on the
 * Unix socket `path` for the lifetime of the scope.
 */
const serveControl = (path: string) =>
  Effect.gen(function*() {
    const handlers = Control.WeaveletRpcs.toLayer({
      // Answered on this process's one event loop, like every call: a blocked loop leaves the probe unanswered.
      GetHealth: () => Effect.succeed("ok" as const),
      GetMetrics: () => Effect.sync(() => Prometheus.snapshot()),
      GetProfile: ({ durationMs, type }) =>
        Profiling.collect({ type, duration: Duration.millis(durationMs) }).pipe(
          Effect.mapError((error) => new Control.ProfileFailed({ reason: error.reason, message: error.message }))
        )
    })
    const runFork = EffectRuntime.runFork(yield* Effect.runtime<never>())
    const badInput = Logging.makeRateLimiter({
      lines: 10,
      interval: "10 seconds",
      about: "bad input on the weavelet socket",
      write: (message) => runFork(Effect.logWarning(message))
    })
    const server = RpcServer.layer(Control.WeaveletRpcs, { disableTracing: true }).pipe(
      Layer.provide(handlers),
      Layer.provide(RpcServer.layerProtocolSocketServer),
      Layer.provide(Control.layerSerialization({
        onBadInput: (reason) => badInput.log(`weavelet socket ${path}: closing a connection: ${reason}`)
      })),
      Layer.provide(NodeSocketServer.layer({ path }))
    )
    yield* Layer.buildWithScope(server, yield* Effect.scope).pipe(
      Effect.mapError((error) => new WeaveletError({ reason: `cannot serve the weavelet socket ${path}: ${error}` }))
    )
  })

/**
 * Runs `app` as the weavelet described by the bootstrap in the environment,
 * until the process is stopped. The main component runs if the process
 * belongs to the main group; if main returns, the process keeps serving its
 * components.
 *
 * @since 0.1.0
 * @category running
 */
export const run = <E>(
  app: App.App<any, E>,
  options?: { readonly extraComponents?: ReadonlyArray<Component.Any> | undefined }
): Effect.Effect<void, E | WeaverConfig.WeaverConfigError | WeaveletError> =>
  Effect.gen(function*() {
    const boot = yield* bootstrap
    yield* Tracing.preload
    const config = boot.config.text !== undefined
      ? yield* WeaverConfig.parse(boot.config.text, boot.config.file, boot.config.dir)
      : yield* WeaverConfig.load(boot.config.file)
    const origin: Logging.Origin = { app: boot.app, deploymentId: boot.deploymentId, replicaId: boot.replicaId }
    yield* Effect.locallyScoped(FiberRef.currentLoggers, HashSet.make(makeLogger(origin)))

    // Built in this scope: the control connection must outlive the construction of the client.
    const protocol = yield* Layer.build(
      RpcClient.layerProtocolSocket({ retryTransientErrors: false }).pipe(
        Layer.provide(NodeSocket.layerNet({ path: boot.controlSocket })),
        Layer.provide(Control.layerSerialization())
      )
    ).pipe(
      Effect.mapError((error) =>
        new WeaveletError({ reason: `cannot reach the deployer on ${boot.controlSocket}: ${error.message}` })
      )
    )
    const client = yield* RpcClient.make(Control.ControlRpcs, { disableTracing: true }).pipe(Effect.provide(protocol))
    yield* client.Health().pipe(
      Effect.timeout("10 seconds"),
      Effect.mapError((error) =>
        new WeaveletError({ reason: `cannot reach the deployer on ${boot.controlSocket}: ${String(error)}` })
      )
    )
    yield* watchDeployer(client.Health())
    if (boot.weaveletSocket !== undefined) yield* serveControl(boot.weaveletSocket)
    if (boot.runMain) {
      // Main's replicas ask for every group at once, as Service Weaver's main activates the components it
      // references when it starts: the groups boot while main does. Components are still constructed on first call.
      yield* Effect.forEach(
        app.implementations.filter((impl) => !boot.components.includes(impl.component.componentName)),
        (impl) => client.Activate({ component: impl.component.componentName }),
        { concurrency: "unbounded", discard: true }
      ).pipe(Effect.ignore, Effect.forkScoped)
    }

    const credentials = boot.mtls
      ? yield* client.Certificate().pipe(
        Effect.mapError((error) =>
          new WeaveletError({ reason: `mutual TLS: cannot get this process's certificate: ${error.message}` })
        )
      )
      : undefined
    const edges = yield* reportEdges((caller, component) => client.Requires({ caller, component }))
    const transport = TransportMultiprocess.layer({
      deploymentId: boot.deploymentId,
      // A callee authorizes this process's calls by the edges it reported: they reach the deployer first.
      activate: (component) => Effect.zipRight(edges.reported, client.Activate({ component })),
      routing: (component) => client.Routing({ component }),
      tls: credentials
    })
    const implemented = new Set(app.implementations.map((impl) => impl.component.componentName))
    const extraComponents = (options?.extraComponents ?? []).filter((c) => !implemented.has(c.componentName))
    yield* Effect.gen(function*() {
      const weavelet = yield* App.makeWeavelet(app, {
        config,
        deploymentId: boot.deploymentId,
        replicaId: boot.replicaId,
        hosted: new Set(boot.components),
        extraComponents,
        onRequire: edges.report,
        listeners: {
          declared: app.listeners,
          address: (name) => boot.listeners[name] ?? "127.0.0.1:0",
          onListening: (name, address, kind) =>
            client.ExportListener({ listener: name, address, kind }).pipe(
              Effect.tap((proxy) =>
                Effect.sync(() => process.stdout.write(`${name} listener available on ${proxy}\n`))
              ),
              Effect.orDie
            )
        }
      })
      const { host, port } = Address.split(boot.internalAddress, "0.0.0.0")
      // Its warnings about bad connections are attributed to this process's group, not to main.
      const server = yield* Server.serve({
        host,
        port,
        component: boot.group,
        tls: credentials === undefined ? undefined : {
          credentials,
          authorize: (peer) => client.Authorize({ group: peer.group }).pipe(Effect.orElseSucceed(() => []))
        }
      }).pipe(
        Effect.provideService(CoreWeavelet.Weavelet, weavelet),
        Effect.mapError((error) =>
          new WeaveletError({
            reason: `cannot serve components on the internal address ${boot.internalAddress} given by the deployer: ${
              error.cause instanceof Error ? error.cause.message : String(error.cause)
            }`
          })
        )
      )
      yield* client.Ready({ address: server.address, pid: process.pid }).pipe(Effect.orDie)
      if (boot.runMain) yield* App.runMain(app, weavelet)
      return yield* Effect.never
    }).pipe(
      Effect.provide(transport),
      Effect.provide(Tracing.layer({
        ...origin,
        onSpans: (spans) => client.TraceSpans({ spans }).pipe(Effect.ignore)
      }))
    )
  }).pipe(Effect.scoped)

/**
 * Reports the edges of the call graph this process sees to its deployer, in
 * order, in the background (a component's code resolves a client
 * synchronously); `reported` waits until those reported so far are in.
 */
const reportEdges = Effect.fnUntraced(function*(
  send: (caller: string, component: string) => Effect.Effect<void, unknown>
) {
  const runtime = yield* Effect.runtime<never>()
  let last: Fiber.RuntimeFiber<void> | undefined
  const report = (caller: string, component: string) => {
    const previous = last
    last = EffectRuntime.runFork(runtime)(
      Effect.zipRight(
        previous === undefined ? Effect.void : Fiber.await(previous),
        send(caller, component).pipe(Effect.ignore)
      )
    )
  }
  const reported = Effect.suspend(() => last === undefined ? Effect.void : Fiber.await(last)).pipe(Effect.asVoid)
  return { report, reported }
})

/**
 * The runtime of a process a deployer launched: runs the application as the
 * weavelet its bootstrap describes (see {@link run}). `Weaver.run` provides
 * it when the bootstrap is in the environment.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<Runtime.Runtime> = Layer.succeed(Runtime.Runtime, {
  name: "weavelet",
  run: (app) => run(app)
})

/**
 * The entry point of weavelets whose application is named by module (the
 * `weavertest` Multi runner): imports the module, picks the exported app
 * whose components are the ones the bootstrap lists, and runs it. Other
 * exported component declarations are known to the weavelet, so that calls
 * to faked components reach the test process.
 *
 * @since 0.1.0
 * @category running
 */
export const runModule: Effect.Effect<void, unknown> = Effect.gen(function*() {
  const boot = yield* bootstrap
  const appModule = boot.appModule
  if (appModule === undefined) return yield* new WeaveletError({ reason: "the bootstrap names no application module" })
  const { app, exported } = yield* App.importFrom(appModule.url, appModule.components).pipe(
    Effect.mapError((reason) => new WeaveletError({ reason }))
  )
  return yield* run(app, { extraComponents: exported })
})

/**
 * Runs {@link runModule} as the process's program.
 *
 * @since 0.1.0
 * @category running
 */
export const main = (): void => NodeRuntime.runMain(runModule)
