/**
 * How a process runs an application: the runtime its launcher chose. A
 * process started by hand runs the single-process runtime; a process a
 * deployer started (its bootstrap in {@link weaveletEnv}) runs as a weavelet
 * of that deployment. Each is a Layer for the one {@link Runtime} tag, which
 * `Weaver.run` provides from how the process was launched.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Crypto from "node:crypto"
import * as Path from "node:path"
import * as App from "./App.js"
import * as Logging from "./Logging.js"
import * as Registry from "./Registry.js"
import * as StatusServer from "./StatusServer.js"
import * as Tracing from "./Tracing.js"
import type { Transport } from "./Transport.js"
import * as WeaverConfig from "./WeaverConfig.js"

/**
 * The runtime of this process.
 *
 * @since 0.1.0
 * @category runtime
 */
export class Runtime extends Context.Tag("@effect-weaver/runtime/Runtime")<Runtime, {
  /** `"single"`, `"weavelet"`, or a runtime of your own. */
  readonly name: string
  /**
   * Runs the application's main until it ends or the process is interrupted.
   * Fails with the main's error, or with what kept the runtime from starting
   * (a config error, a deployer that cannot be reached).
   */
  readonly run: <E>(app: App.App<never, E>) => Effect.Effect<void, unknown>
}>() {}

/**
 * The environment variable through which a deployer hands a process its
 * weavelet bootstrap (`Control.Bootstrap`): with it, the process runs as a
 * weavelet and hosts only what the deployer assigns it.
 *
 * @since 0.1.0
 * @category constants
 */
export const weaveletEnv = "WEAVER_WEAVELET"

/**
 * Whether a deployer launched this process (its bootstrap is in
 * {@link weaveletEnv}).
 *
 * @since 0.1.0
 * @category runtime
 */
export const launchedByDeployer = (): boolean => process.env[weaveletEnv] !== undefined

/**
 * The environment variable through which a deployer that runs the
 * application as its own child process (`weaver single deploy`) gives its
 * pid: the single-process runtime then exits when that process is gone, even
 * killed with SIGKILL, so that no application outlives its deployer.
 * (Weavelets watch their deployer through their control socket too.)
 *
 * @since 0.1.0
 * @category constants
 */
export const deployerPidEnv = "WEAVER_DEPLOYER_PID"

/**
 * The single-process runtime, as Service Weaver's `weaver.Run` without a
 * deployer: the config comes from the file named by `SERVICEWEAVER_CONFIG`
 * (if set), every component is hosted here over `transport` and constructed
 * on first use, and the deployment appears in `weaver single status`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerSingle = (transport: Layer.Layer<Transport> | SingleTransport): Layer.Layer<Runtime> =>
  Layer.succeed(Runtime, { name: "single", run: (app) => runSingle(app, transport) })

/**
 * A transport for the single-process runtime chosen once the config is
 * loaded (`[single] workers` picks worker threads).
 * @since 0.1.0
 * @category models
 */
export type SingleTransport = (options: {
  readonly app: App.App<any, any>
  readonly config: WeaverConfig.WeaverConfig
  readonly deploymentId: string
}) => Layer.Layer<Transport>

const runSingle = <E>(
  app: App.App<never, E>,
  transportOf: Layer.Layer<Transport> | SingleTransport
): Effect.Effect<void, E | WeaverConfig.WeaverConfigError> =>
  Effect.gen(function*() {
    yield* exitWithDeployer
    yield* Tracing.preload
    const configFile = process.env.SERVICEWEAVER_CONFIG
    const config = configFile ? yield* WeaverConfig.load(configFile) : WeaverConfig.empty()
    Object.assign(process.env, WeaverConfig.environment(config))
    const deploymentId = Crypto.randomUUID()
    const replicaId = Crypto.randomUUID()
    const name = App.name(config)
    const components = [App.mainName, ...app.implementations.map((impl) => impl.component.componentName)]
    const traces = Tracing.makeStore()
    const statusAddress = yield* startStatusServer({ app: name, deploymentId, replicaId, traces })
    const update = yield* Registry.register({
      app: name,
      deploymentId,
      tool: "single",
      pid: process.pid,
      startedAt: Date.now(),
      configFile: configFile ? Path.resolve(configFile) : undefined,
      components: components.map((component) => ({ name: component, pids: [process.pid] })),
      listeners: [],
      statusAddress
    })
    const origin = { app: name, deploymentId, replicaId }
    const transport = typeof transportOf === "function" ? transportOf({ app, config, deploymentId }) : transportOf
    yield* Effect.gen(function*() {
      const weavelet = yield* App.makeWeavelet(app, {
        config,
        deploymentId,
        replicaId,
        listeners: {
          declared: app.listeners,
          address: (listener) => config.single.listeners[listener]?.address ?? "localhost:0",
          onListening: (listener, address, kind) =>
            Effect.zipRight(
              Effect.sync(() => process.stdout.write(`${listener} listener available on ${address}\n`)),
              update((d) => ({ ...d, listeners: [...d.listeners, { name: listener, address, kind }] }))
            )
        }
      })
      process.stdout.write(`${Logging.banner(name, deploymentId)}\n`)
      yield* App.runMain(app, weavelet)
    }).pipe(
      Effect.provide(
        Layer.mergeAll(transport, Logging.layerPretty(origin), Tracing.layer({ ...origin, store: traces }))
      )
    )
  }).pipe(Effect.scoped)

/**
 * For the lifetime of the scope, exits this process once the deployer named
 * by {@link deployerPidEnv} is gone, if one is named.
 *
 * Node has no `PR_SET_PDEATHSIG`, so the process watches for itself: every
 * 250 ms it reads its parent pid (`process.ppid`, one `getppid()` call).
 * When the deployer dies, by SIGKILL too, the kernel gives its children
 * another parent (init or a subreaper), and the parent pid no longer is the
 * deployer's. The deployer's pid comes from the deployer, not from the parent
 * pid at start-up, so a deployer that died before the watch began is noticed
 * too. (A pipe whose end-of-file tells the same, at once, needs a file
 * descriptor of the application's own; this deployer gives the application
 * its terminal.) The stop is graceful, SIGTERM (`NodeRuntime.runMain`
 * interrupts main and closes the listeners), then forced after 2 s.
 */
const exitWithDeployer: Effect.Effect<void, never, Scope.Scope> = Effect.suspend(() => {
  const deployer = Number(process.env[deployerPidEnv])
  if (!(deployer > 0)) return Effect.void
  return Effect.asVoid(Effect.acquireRelease(
    Effect.sync(() => {
      const timer = setInterval(() => {
        if (process.ppid === deployer) return
        clearInterval(timer)
        process.stderr.write(`the deployer (pid ${deployer}) is gone; the application stops\n`)
        setTimeout(() => process.exit(1), 2_000).unref()
        process.kill(process.pid, "SIGTERM")
      }, 250)
      timer.unref()
      return timer
    }),
    (timer) => Effect.sync(() => clearInterval(timer))
  ))
})

/** The status server, if it can bind: without one the app still runs, only `weaver single metrics` misses it. */
const startStatusServer = (options: StatusServer.Options): Effect.Effect<string | undefined, never, Scope.Scope> =>
  StatusServer.make(options).pipe(
    Effect.map((server) => server.address),
    Effect.catchAll((error) => Effect.as(Effect.logWarning("status server not started", error), undefined))
  )
