/**
 * The config check: how a deployer refuses, before it starts any process
 * that serves, a config that the application itself would refuse.
 *
 * Most mistakes in weaver.toml are visible to the deployer alone (malformed
 * TOML, an unknown key in `[serviceweaver]`, `[single]` or `[multi]`, a bad
 * address, a missing binary): `WeaverConfig.load` and {@link binary} catch
 * them. The others need the application, which a deployer cannot import: a
 * listener it does not declare, a colocation group naming a component it does
 * not have, a section for a component that takes no config, a bad key in a
 * component's section. So the deployer asks the application's own binary:
 *
 * 1. it runs the binary once, as it would run it, with {@link env} set to the
 *    config file's path ({@link run} does it);
 * 2. `Weaver.run(app)` sees the variable ({@link requested}) and, instead of
 *    running the application, checks the config against it ({@link answer}:
 *    `WeaverConfig.validate`, the very check every process of the deployment
 *    makes when it starts), writes one line on stdout, {@link marker}
 *    followed by the {@link Result} as JSON, and exits. Nothing is
 *    constructed, main does not run, nothing is bound;
 * 3. the deployer starts the deployment if the config was accepted, and
 *    otherwise fails with the application's `WeaverConfigError`, which names
 *    the file, the section and the key.
 *
 * A binary that exits without answering (it does not call `Weaver.run`, or
 * it fails while loading) is refused with a {@link CheckError} quoting its
 * output. Any program can answer the check by hand: print the line and exit.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import * as WeaverConfig from "./WeaverConfig.js"

/**
 * The environment variable that asks an application's binary to check a
 * config instead of running: its value is the path of the config file.
 *
 * @since 0.1.0
 * @category constants
 */
export const env = "WEAVER_CHECK_CONFIG"

/**
 * What starts the line on stdout that carries the {@link Result} (JSON).
 * Every other line the binary prints is ignored.
 *
 * @since 0.1.0
 * @category constants
 */
export const marker = "\u001eweaver:check "

/**
 * The config is valid for the application: the answer also tells what the
 * application declares.
 *
 * @since 0.1.0
 * @category models
 */
export class Accepted extends Schema.TaggedClass<Accepted>()("ConfigAccepted", {
  /** The full names of the components the application implements (main not included). */
  components: Schema.Array(Schema.String),
  /** The listeners the application declares. */
  listeners: Schema.Array(Schema.String),
  /**
   * Which component serves each listener it declares (`main` for the main
   * component's): a deployer that exposes listeners per colocation group
   * (`weaver kube deploy`) routes each to the group of its component.
   */
  serves: Schema.optionalWith(Schema.Record({ key: Schema.String, value: Schema.Array(Schema.String) }), {
    default: () => ({})
  }),
  /**
   * The singletons (`main` among them if it is one): every deployer runs the
   * colocation group of each as exactly one replica (see
   * {@link singletonsIn}).
   *
   * @since 0.2.0
   */
  singletons: Schema.optionalWith(Schema.Array(Schema.String), { default: () => [] })
}) {}

/**
 * The singletons among a colocation group's components: the group runs
 * exactly one replica when there is any, and its other components (not
 * singletons themselves) then run once too. How every deployer decides a
 * group's replica count from the check's {@link Accepted} answer.
 *
 * @since 0.2.0
 * @category runtime
 */
export const singletonsIn = (
  accepted: { readonly singletons: ReadonlyArray<string> },
  group: ReadonlyArray<string>
): ReadonlyArray<string> => group.filter((component) => accepted.singletons.includes(component))

/**
 * A line for the deployer's output about a group that runs one replica
 * because it holds singletons, naming the co-located components that are not
 * singletons but run once too; `undefined` for a group without singletons.
 *
 * @since 0.2.0
 * @category runtime
 */
export const singletonNote = (
  accepted: { readonly singletons: ReadonlyArray<string> },
  group: { readonly name: string; readonly components: ReadonlyArray<string> }
): string | undefined => {
  const singletons = singletonsIn(accepted, group.components)
  if (singletons.length === 0) return undefined
  const others = group.components.filter((component) => !singletons.includes(component))
  return `group ${group.name} runs exactly 1 replica: it holds the singleton${singletons.length > 1 ? "s" : ""} ` +
    `${singletons.join(", ")}` +
    (others.length === 0
      ? ""
      : ` (${others.join(", ")}, co-located with it, ${others.length > 1 ? "run" : "runs"} once too)`)
}

/**
 * The answer of a check, as the binary prints it after {@link marker}: the
 * config accepted, or the first mistake found.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Result = Schema.Union(Accepted, WeaverConfig.WeaverConfigError)

/**
 * @since 0.1.0
 * @category models
 */
export type Result = typeof Result.Type

const resultJson = Schema.parseJson(Result)
const encodeResult = Schema.encodeSync(resultJson)
const decodeResult = Schema.decodeUnknownEither(resultJson)

/**
 * The binary could not answer the check: it could not be started, it exited
 * without answering (it does not call `Weaver.run`, or failed while loading),
 * or it did not answer in time. The message names the config file, the
 * `binary` key and what happened.
 *
 * @since 0.1.0
 * @category errors
 */
export class CheckError extends Data.TaggedError("ConfigCheckError")<{
  /** The config file, as named on the command line. */
  readonly file: string
  /** The binary's absolute path. */
  readonly binary: string
  readonly reason: string
}> {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `${this.file}: [serviceweaver] key "binary": ${this.binary} ${this.reason}`
  }
}

/**
 * Whether this process was started to check a config ({@link env} is set).
 *
 * @since 0.1.0
 * @category runtime
 */
export const requested = (): boolean => process.env[env] !== undefined

/**
 * Checks a config against what an application declares: the check every
 * process of a deployment makes when it starts (`WeaverConfig.validate`).
 *
 * @since 0.1.0
 * @category runtime
 */
export const validate = (
  config: WeaverConfig.WeaverConfig,
  app: WeaverConfig.AppShape
): Either.Either<Accepted, WeaverConfig.WeaverConfigError> =>
  Either.map(
    WeaverConfig.validate(config, app),
    () =>
      new Accepted({
        components: [...app.components.keys()],
        listeners: [...app.listeners],
        serves: Object.fromEntries(app.serves ?? []),
        singletons: [...(app.singletons ?? [])]
      })
  )

/**
 * The application's side of the check, which `Weaver.run` runs when
 * {@link requested}: loads the config file named by {@link env}, checks it
 * against `app` ({@link validate}), writes the {@link Result} line on stdout
 * and exits the process (code 0 when accepted, 1 when not).
 *
 * @since 0.1.0
 * @category runtime
 */
export const answer = (app: WeaverConfig.AppShape): Effect.Effect<never> =>
  Effect.gen(function*() {
    const result = yield* WeaverConfig.load(process.env[env] ?? "").pipe(
      Effect.flatMap((config) => validate(config, app)),
      Effect.either
    )
    const line = `${marker}${encodeResult(Either.merge(result))}\n`
    const code = Either.isRight(result) ? 0 : 1
    return yield* Effect.async<never>(() => {
      process.stdout.write(line, () => process.exit(code))
    })
  })

/**
 * The absolute path of the config's `[serviceweaver] binary`, resolved
 * against the config file's directory, once it is known to be a file. Fails
 * with a `WeaverConfigError` naming the key when it is missing, does not
 * exist or is not a file.
 *
 * @since 0.1.0
 * @category constructors
 */
export const binary = (config: WeaverConfig.WeaverConfig): Effect.Effect<string, WeaverConfig.WeaverConfigError> =>
  Effect.gen(function*() {
    const fail = (reason: string) =>
      new WeaverConfig.WeaverConfigError({ file: config.file, section: "serviceweaver", key: "binary", reason })
    const name = config.serviceweaver.binary
    if (name === undefined || name === "") {
      return yield* fail(
        `missing required key: the application's entry file, for example binary = "./dist/main.js"`
      )
    }
    const resolved = Path.resolve(config.dir, name)
    const stat = yield* Effect.tryPromise({
      try: () => Fs.stat(resolved),
      catch: (e) => (e as NodeJS.ErrnoException).code ?? String(e)
    }).pipe(
      Effect.mapError((code) =>
        fail(
          code === "ENOENT"
            ? `${resolved} does not exist; build it first (e.g. "npm run build")`
            : `${resolved} cannot be read: ${code}`
        )
      )
    )
    if (!stat.isFile()) return yield* fail(`${resolved} is not a file`)
    return resolved
  })

/**
 * Options of {@link run}: the config, and how the deployer runs the binary.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunOptions {
  /** The loaded config; its `file` is the one checked and named in errors. */
  readonly config: WeaverConfig.WeaverConfig
  /** The program to run, e.g. `process.execPath`. */
  readonly command: string
  /** Its arguments, as for the deployment's processes: the binary and its `args`. */
  readonly args: ReadonlyArray<string>
  /** The whole environment of the process (default: this process's); {@link env} is added. */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined
  readonly cwd?: string | undefined
  /** How long the binary has to answer (default 60 s). */
  readonly timeout?: Duration.DurationInput | undefined
}

/**
 * The deployer's side of the check: runs the binary once with {@link env}
 * set and reads its answer. Succeeds with {@link Accepted}; fails with the
 * application's `WeaverConfigError` when it refuses the config, or with
 * {@link CheckError} when it does not answer. The process is gone when this
 * completes (it is killed on timeout or interruption).
 *
 * @since 0.1.0
 * @category constructors
 */
export const run = (options: RunOptions): Effect.Effect<Accepted, WeaverConfig.WeaverConfigError | CheckError> => {
  const { config } = options
  const binaryPath = Path.resolve(config.dir, config.serviceweaver.binary ?? "")
  const failure = (reason: string) => new CheckError({ file: config.file, binary: binaryPath, reason })
  const timeout = options.timeout ?? Duration.minutes(1)
  return spawnCheck(options).pipe(
    Effect.mapError((cause) => failure(`cannot be run (${options.command}): ${cause.message}`)),
    Effect.timeoutFail({
      duration: timeout,
      onTimeout: () => failure(`did not answer the config check within ${Duration.format(timeout)}`)
    }),
    Effect.flatMap((outcome): Effect.Effect<Accepted, WeaverConfig.WeaverConfigError | CheckError> => {
      const json = answerOf(outcome.stdout)
      if (json === undefined) return Effect.fail(failure(unanswered(outcome)))
      return Either.match(decodeResult(json), {
        onLeft: (error) => Effect.fail(failure(`answered the config check with a malformed result: ${error.message}`)),
        onRight: (result) =>
          result._tag === "ConfigAccepted"
            ? Effect.succeed(result)
            // The binary names the file by its absolute path; the user named it as they did.
            : Effect.fail(new WeaverConfig.WeaverConfigError({ ...result, file: config.file }))
      })
    })
  )
}

interface Outcome {
  readonly code: number | null
  readonly signal: string | null
  readonly stdout: string
  readonly stderr: string
}

const keep = 64 * 1024

/** The JSON of the answer line in `stdout`, once the whole line is there (even after output left unterminated). */
const answerOf = (stdout: string): string | undefined => {
  const start = stdout.indexOf(marker)
  if (start === -1) return undefined
  const end = stdout.indexOf("\n", start)
  return end === -1 ? undefined : stdout.slice(start + marker.length, end)
}

/** Why a binary that exited without answering did, with the line of its output most likely to say. */
const unanswered = (outcome: Outcome): string => {
  const how = outcome.signal !== null ? `was killed by ${outcome.signal}` : `exited with code ${outcome.code}`
  const lines = outcome.stderr.split("\n").map((l) => l.trim()).filter((l) => l !== "" && !/^Node\.js v/.test(l))
  const said = lines.find((l) => /^([A-Z]\w*)?(Error|Exception)\b/.test(l)) ?? lines.at(-1)
  return outcome.code === 0 && outcome.signal === null
    ? `exited without answering the config check: the entry a deployer runs must call Weaver.run(app), ` +
      `which answers it when ${env} is set`
    : `${how} before answering the config check${said === undefined ? "" : `: ${said}`}`
}

/**
 * Runs the check process: its exit and output, once it has exited and its
 * stdout has ended or carried the answer. Interrupting kills it.
 */
const spawnCheck = (options: RunOptions): Effect.Effect<Outcome, Error> =>
  Effect.async<Outcome, Error>((resume) => {
    const child = ChildProcess.spawn(options.command, [...options.args], {
      cwd: options.cwd,
      env: { ...(options.env ?? process.env), [env]: Path.resolve(options.config.file) },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    let stdoutDone = false
    let exit: { readonly code: number | null; readonly signal: string | null } | undefined
    let settled = false
    const settle = () => {
      if (!settled && exit !== undefined && (stdoutDone || answerOf(stdout) !== undefined)) {
        settled = true
        resume(Effect.succeed({ ...exit, stdout, stderr }))
      }
    }
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout = (stdout + chunk).slice(-keep)
    })
    child.stdout.once("end", () => {
      stdoutDone = true
      settle()
    })
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr = (stderr + chunk).slice(-keep)
    })
    child.once("error", (cause) => {
      if (child.pid === undefined && !settled) {
        settled = true
        resume(Effect.fail(cause))
      }
    })
    child.once("exit", (code, signal) => {
      exit = { code, signal }
      settle()
    })
    return Effect.sync(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
    })
  })
