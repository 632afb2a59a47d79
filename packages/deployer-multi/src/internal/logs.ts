/**
 * Where the logs of a multiprocess deployment go: every entry and output
 * line of a replica (and of the deployer itself) to the node's JSON-lines
 * log file and to the terminal, or to the deployer's `output` instead of
 * the terminal.
 *
 * @internal
 */
import * as Envelope from "@effect-weaver/runtime/Envelope"
import * as LogFile from "@effect-weaver/runtime/LogFile"
import * as Logging from "@effect-weaver/runtime/Logging"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as HashSet from "effect/HashSet"
import * as Logger from "effect/Logger"
import * as Scope from "effect/Scope"

/** @internal */
export interface Logs {
  /**
   * The log file of `node`, opened on first use and closed with the
   * deployment; undefined when log files are off or it cannot be opened (said
   * on stderr).
   */
  readonly writerFor: (node: string) => Effect.Effect<LogFile.Writer | undefined>
  /** Writes `entry` to `writer`, if any, and prints it. */
  readonly emit: (writer: LogFile.Writer | undefined, entry: Logging.Entry) => void
}

/** @internal */
export const make = Effect.fnUntraced(function*(options: {
  readonly app: string
  readonly deploymentId: string
  readonly logFiles?: boolean | undefined
  readonly output?: ((entry: Logging.Entry) => void) | undefined
}) {
  const scope = yield* Effect.scope
  const dir = LogFile.directory("multi")
  const writers = new Map<string, LogFile.Writer>()
  const writerFor = (node: string): Effect.Effect<LogFile.Writer | undefined> => {
    if (options.logFiles === false) return Effect.succeed(undefined)
    const found = writers.get(node)
    if (found !== undefined) return Effect.succeed(found)
    return LogFile.writer(dir, options.app, options.deploymentId, node).pipe(
      Scope.extend(scope),
      Effect.tap((w) => Effect.sync(() => writers.set(node, w))),
      Effect.catchAll((error) =>
        Effect.as(Effect.sync(() => process.stderr.write(`weaver: ${error.message}\n`)), undefined)
      )
    )
  }
  const color = process.stderr.isTTY === true
  const print = options.output ?? ((entry: Logging.Entry) => {
    const line = Logging.pretty(entry, { color }) + "\n"
    if (entry.level === "stdout") process.stdout.write(line)
    else process.stderr.write(line)
  })
  const emit = (writer: LogFile.Writer | undefined, entry: Logging.Entry) => {
    writer?.unsafeWrite(entry)
    print(entry)
  }
  return { writerFor, emit } satisfies Logs
})

/**
 * For the rest of the scope, the current fiber (and the fibers it forks)
 * logs as the deployer: to its own log file, `deployer-<id>`, and the
 * terminal.
 *
 * @internal
 */
export const logAsDeployer = Effect.fnUntraced(function*(logs: Logs, app: string, deploymentId: string) {
  const writer = yield* logs.writerFor(`deployer-${deploymentId.slice(0, 8)}`)
  const origin: Logging.Origin = { app, deploymentId, replicaId: "deployer" }
  const logger = Logger.make<unknown, void>((options) => logs.emit(writer, Logging.toEntry(origin, options)))
  yield* Effect.locallyScoped(FiberRef.currentLoggers, HashSet.make(logger))
})

/**
 * What the envelope of a replica does with each line its process writes:
 * the entry it carries, to the replica's log file and the terminal.
 *
 * @internal
 */
export const replicaOutput = (
  logs: Logs,
  origin: LogFile.OutputOrigin,
  writer: LogFile.Writer | undefined
) =>
(stream: "stdout" | "stderr", line: string): void => logs.emit(writer, Envelope.logEntry(origin, stream, line))
