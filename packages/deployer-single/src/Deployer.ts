/**
 * The single-process deployer (`weaver single deploy`): runs an
 * application's binary as one process with its config, as Service Weaver's
 * single-process deployer does. The process runs `Weaver.run`'s
 * single-process runtime: it hosts every component, serves its own status
 * server and appears in `weaver single status`.
 *
 * A running deployment is the {@link Deployer} service ({@link make},
 * {@link layer}); {@link deploy} is the whole command. The steps: work out
 * the launch from the config and check the config against the application
 * ({@link launchOf}, {@link prepare}: nothing starts with a config the
 * application would refuse), spawn the process, forward this process's
 * signals to it while it runs, and stop it when the scope closes. The
 * process exits by itself if this one dies, even by SIGKILL
 * (`Runtime.deployerPidEnv`).
 *
 * @since 0.1.0
 */
import * as ConfigCheck from "@effect-weaver/runtime/ConfigCheck"
import * as Runtime from "@effect-weaver/runtime/Runtime"
import * as WeaverConfig from "@effect-weaver/runtime/WeaverConfig"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as ChildProcess from "node:child_process"
import * as Os from "node:os"
import * as Path from "node:path"

/**
 * A deployment that could not be started: the process could not be spawned.
 *
 * @since 0.1.0
 * @category errors
 */
export class DeployError extends Data.TaggedError("DeployError")<{
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
 * How the application is launched: the node arguments and the environment.
 *
 * @since 0.1.0
 * @category models
 */
export interface Launch {
  /** The absolute path of the application's entry file. */
  readonly binary: string
  /** The arguments given to `node`, ending with the binary and its own arguments. */
  readonly args: ReadonlyArray<string>
  /** Variables added to this process's environment. */
  readonly env: Readonly<Record<string, string>>
}

/**
 * Works out how to launch the application of a loaded config: `binary` is
 * required and resolved against the config file's directory, and the child
 * gets `SERVICEWEAVER_CONFIG` (absolute) and the `env` entries.
 *
 * @since 0.1.0
 * @category constructors
 */
export const launchOf = (config: WeaverConfig.WeaverConfig): Effect.Effect<Launch, WeaverConfig.WeaverConfigError> =>
  Effect.gen(function*() {
    const binary = config.serviceweaver.binary
    if (binary === undefined || binary === "") {
      return yield* new WeaverConfig.WeaverConfigError({
        file: config.file,
        section: "serviceweaver",
        key: "binary",
        reason: `missing required key: the application's entry file, for example binary = "./dist/main.js"`
      })
    }
    const resolved = Path.resolve(config.dir, binary)
    const env = { ...WeaverConfig.environment(config), SERVICEWEAVER_CONFIG: Path.resolve(config.file) }
    return {
      binary: resolved,
      args: ["--enable-source-maps", resolved, ...config.serviceweaver.args],
      env
    }
  })

/**
 * Loads the config file at `configFile` and checks that the application can
 * be launched with it: the config is valid, `binary` is a file, and the
 * application accepts the config (its binary, run once in check mode,
 * answers: see `ConfigCheck`). Each mistake fails with an error naming the
 * file, the section and the key; nothing else is left running.
 *
 * @since 0.1.0
 * @category constructors
 */
export const prepare = (
  configFile: string
): Effect.Effect<Launch, WeaverConfig.WeaverConfigError | ConfigCheck.CheckError> =>
  Effect.gen(function*() {
    const config = yield* WeaverConfig.load(configFile)
    const result = yield* launchOf(config)
    yield* ConfigCheck.binary(config)
    yield* ConfigCheck.run({
      config,
      command: process.execPath,
      args: result.args,
      env: { ...process.env, ...result.env }
    })
    return result
  })

/**
 * A running single-process deployment: the application's process. The
 * service {@link make} starts and {@link layer} provides.
 *
 * @since 0.1.0
 * @category tags
 */
export class Deployer extends Context.Tag("@effect-weaver/deployer-single/Deployer")<Deployer, {
  readonly launch: Launch
  readonly pid: number
  /** Completes when the process has exited, with its exit code (128 + the signal number when killed by one). */
  readonly exited: Effect.Effect<number>
}>() {}

/**
 * The signals this process forwards to the application while it runs.
 *
 * @since 0.1.0
 * @category constants
 */
export const forwardedSignals: ReadonlyArray<NodeJS.Signals> = ["SIGINT", "SIGTERM", "SIGHUP"]

/**
 * Spawns `node` with the launch's arguments and stdio inherited, and
 * forwards SIGINT, SIGTERM and SIGHUP to it until it exits. Closing the
 * scope while it runs sends it SIGTERM and waits for its exit.
 *
 * The child runs in its own process group, so a Ctrl-C in the terminal
 * reaches it once, through this process, and it can shut down cleanly.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (launch: Launch) => Effect.Effect<Deployer["Type"], DeployError, Scope.Scope> = Effect.fnUntraced(
  function*(launch: Launch) {
    const child = yield* spawnApp(launch)
    yield* Effect.addFinalizer(() => stopApp(child))
    return { launch, pid: child.pid, exited: Deferred.await(child.exited) }
  }
)

/**
 * The deployment of the config file at `configFile` as a Layer: checked
 * ({@link prepare}) and started when the layer is built, stopped when its
 * scope closes.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  configFile: string
): Layer.Layer<Deployer, WeaverConfig.WeaverConfigError | ConfigCheck.CheckError | DeployError> =>
  Layer.scoped(Deployer, Effect.flatMap(prepare(configFile), make))

/**
 * Runs the application to its end: {@link make}, then waits for its exit.
 * Succeeds with its exit code (128 + the signal number when it was killed by
 * a signal). Waiting is uninterruptible: interrupting the caller waits for
 * the child, which the forwarded signals stop.
 *
 * @since 0.1.0
 * @category runtime
 */
export const spawn = (launch: Launch): Effect.Effect<number, DeployError> =>
  Effect.scoped(Effect.flatMap(make(launch), (deployer) => deployer.exited)).pipe(Effect.uninterruptible)

/**
 * Deploys the application of the config file at `configFile` in a single
 * process and waits for it to end. Succeeds with the application's exit
 * code; fails, before starting the application, if the config is bad, the
 * binary is missing or the application refuses the config.
 *
 * @since 0.1.0
 * @category runtime
 */
export const deploy = (
  configFile: string
): Effect.Effect<number, WeaverConfig.WeaverConfigError | ConfigCheck.CheckError | DeployError> =>
  Effect.flatMap(prepare(configFile), spawn)

interface App {
  readonly process: ChildProcess.ChildProcess
  readonly pid: number
  readonly exited: Deferred.Deferred<number>
}

/** Spawns the application; from then until it exits, this process's {@link forwardedSignals} go to it too. */
const spawnApp = Effect.fnUntraced(function*(launch: Launch) {
  const exited = yield* Deferred.make<number>()
  const child = ChildProcess.spawn(process.execPath, launch.args, {
    // With this process's pid, the application exits when this process dies, even by SIGKILL.
    env: { ...process.env, ...launch.env, [Runtime.deployerPidEnv]: String(process.pid) },
    stdio: "inherit",
    detached: true
  })
  const forward = (signal: NodeJS.Signals) => {
    child.kill(signal)
  }
  for (const signal of forwardedSignals) process.on(signal, forward)
  const unforward = () => {
    for (const signal of forwardedSignals) process.off(signal, forward)
  }
  child.once("exit", (code, signal) => {
    unforward()
    Deferred.unsafeDone(exited, Effect.succeed(code ?? 128 + (signal === null ? 0 : Os.constants.signals[signal] ?? 0)))
  })
  const pid = yield* Effect.async<number, DeployError>((resume) => {
    // Only a failed spawn fails the deployment: a later error (a signal that cannot be sent) changes nothing.
    child.on("error", (cause) => {
      if (child.pid !== undefined) return
      unforward()
      resume(Effect.fail(new DeployError({ reason: `cannot start ${process.execPath}: ${cause.message}` })))
    })
    if (child.pid !== undefined) resume(Effect.succeed(child.pid))
  })
  return { process: child, pid, exited } satisfies App
})

/** Stops the application if it still runs: SIGTERM, as a forwarded Ctrl-C would, then waits for its exit. */
const stopApp = (app: App): Effect.Effect<void> =>
  Effect.gen(function*() {
    if (yield* Deferred.isDone(app.exited)) return
    app.process.kill("SIGTERM")
    yield* Deferred.await(app.exited)
  })
