/**
 * `weaver single deploy`: runs an application's binary in one process with
 * its config, as Service Weaver's single-process deployer does.
 *
 * @since 0.1.0
 */
import * as WeaverConfig from "@effect-weaver/runtime/WeaverConfig"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"

/**
 * A deployment that could not be started: the binary is missing or the
 * process could not be spawned.
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
 * What {@link single} runs: the node arguments and the environment.
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
export const launch = (config: WeaverConfig.WeaverConfig): Effect.Effect<Launch, WeaverConfig.WeaverConfigError> =>
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
    const env: Record<string, string> = {}
    for (const entry of config.serviceweaver.env) {
      const eq = entry.indexOf("=")
      env[entry.slice(0, eq)] = entry.slice(eq + 1)
    }
    env.SERVICEWEAVER_CONFIG = Path.resolve(config.file)
    return {
      binary: resolved,
      args: ["--enable-source-maps", resolved, ...config.serviceweaver.args],
      env
    }
  })

const checkBinary = (config: WeaverConfig.WeaverConfig, binary: string): Effect.Effect<void, DeployError> =>
  Effect.tryPromise({
    try: () => Fs.stat(binary),
    catch: (e) => (e as NodeJS.ErrnoException).code ?? String(e)
  }).pipe(
    Effect.matchEffect({
      onFailure: (code) =>
        new DeployError({
          reason: code === "ENOENT"
            ? `${config.file}: [serviceweaver] binary ${binary} does not exist; run "npm run build" to build it`
            : `${config.file}: [serviceweaver] binary ${binary} cannot be read: ${code}`
        }),
      onSuccess: (stat) =>
        stat.isFile()
          ? Effect.void
          : new DeployError({ reason: `${config.file}: [serviceweaver] binary ${binary} is not a file` })
    })
  )

/**
 * Loads the config file at `configFile` and checks that the application can
 * be launched: the config is valid, `binary` is set and the file exists.
 *
 * @since 0.1.0
 * @category constructors
 */
export const prepare = (
  configFile: string
): Effect.Effect<Launch, WeaverConfig.WeaverConfigError | DeployError> =>
  Effect.gen(function*() {
    const config = yield* WeaverConfig.load(configFile)
    const result = yield* launch(config)
    yield* checkBinary(config, result.binary)
    return result
  })

const forwarded: ReadonlyArray<NodeJS.Signals> = ["SIGINT", "SIGTERM", "SIGHUP"]

/**
 * Spawns `node` with the launch's arguments and stdio inherited, forwards
 * SIGINT, SIGTERM and SIGHUP to it, and waits for it to exit. Succeeds with
 * its exit code (128 + the signal number when it was killed by a signal).
 *
 * The child runs in its own process group, so a Ctrl-C in the terminal
 * reaches it once, through this process, and it can shut down cleanly.
 * Waiting is uninterruptible: interrupting the caller waits for the child.
 *
 * @since 0.1.0
 * @category runtime
 */
export const spawn = (launch: Launch): Effect.Effect<number, DeployError> =>
  Effect.async<number, DeployError>((resume) => {
    const child = ChildProcess.spawn(process.execPath, launch.args, {
      env: { ...process.env, ...launch.env },
      stdio: "inherit",
      detached: true
    })
    const forward = (signal: NodeJS.Signals) => {
      child.kill(signal)
    }
    for (const signal of forwarded) process.on(signal, forward)
    let done = false
    const finish = (result: Effect.Effect<number, DeployError>) => {
      if (done) return
      done = true
      for (const signal of forwarded) process.off(signal, forward)
      resume(result)
    }
    child.once(
      "error",
      (cause) => finish(Effect.fail(new DeployError({ reason: `cannot start ${process.execPath}: ${cause.message}` })))
    )
    child.once(
      "exit",
      (code, signal) => finish(Effect.succeed(code ?? 128 + (signal === null ? 0 : Os.constants.signals[signal] ?? 0)))
    )
  }).pipe(Effect.uninterruptible)

/**
 * Deploys the application of the config file at `configFile` in a single
 * process and waits for it to end. Succeeds with the application's exit
 * code; fails, before starting anything, if the config is bad or the binary
 * is missing.
 *
 * @since 0.1.0
 * @category runtime
 */
export const single = (
  configFile: string
): Effect.Effect<number, WeaverConfig.WeaverConfigError | DeployError> => Effect.flatMap(prepare(configFile), spawn)
