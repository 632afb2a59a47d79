/**
 * `weaver <tool> purge [--force]`: deletes a tool's log files and data
 * directory (which holds the registry of deployments), after asking.
 *
 * @since 0.1.0
 */
import * as LogFile from "@effect-weaver/runtime/LogFile"
import * as Registry from "@effect-weaver/runtime/Registry"
import * as Prompt from "@effect/cli/Prompt"
import type * as Terminal from "@effect/platform/Terminal"
import * as Console from "effect/Console"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"

/**
 * Why `purge` removed nothing.
 *
 * @since 0.1.0
 * @category errors
 */
export class PurgeError extends Data.TaggedError("PurgeError")<{
  readonly reason: string
  readonly cause?: unknown
}> {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return this.cause instanceof Error ? `${this.reason}: ${this.cause.message}` : this.reason
  }
}

/**
 * The directories `purge` deletes: the tool's log directory and its data
 * directory, the parent of its registry (`$XDG_DATA_HOME/serviceweaver/<tool>`).
 *
 * @since 0.1.0
 * @category accessors
 */
export const directories = (tool: Registry.Tool): ReadonlyArray<string> => [
  LogFile.directory(tool),
  Path.dirname(Registry.directory(tool))
]

/**
 * Deletes {@link directories}. Without `force` it asks for confirmation on
 * the terminal, and refuses when standard input is not a terminal. While
 * deployments of the tool are running it warns and requires `force`.
 *
 * @since 0.1.0
 * @category runtime
 */
export const purge: (
  tool: Registry.Tool,
  force: boolean
) => Effect.Effect<void, PurgeError, Terminal.Terminal> = Effect.fnUntraced(
  function*(tool: Registry.Tool, force: boolean) {
    const dirs = directories(tool)
    const live = yield* Registry.list(tool)
    if (live.length > 0) {
      const list = live.map((d) => `  ${d.app} ${d.deploymentId} (pid ${d.pid})`).join("\n")
      yield* Console.error(`weaver ${tool} purge: ${live.length} deployment(s) still running:\n${list}`)
      if (!force) {
        return yield* new PurgeError({
          reason: `refusing to purge while deployments are running; stop them, or pass --force`
        })
      }
    }
    if (!force) {
      if (process.stdin.isTTY !== true) {
        return yield* new PurgeError({
          reason: `refusing to delete ${dirs.join(" and ")} without confirmation: ` +
            `standard input is not a terminal; pass --force`
        })
      }
      const confirmed = yield* Prompt.confirm({
        message: `Delete ${dirs.join(" and ")}?`,
        initial: false
      }).pipe(Effect.catchTag("QuitException", () => Effect.succeed(false)))
      if (!confirmed) return yield* Console.log("Nothing deleted.")
    }
    for (const dir of dirs) {
      yield* Effect.tryPromise({
        try: () => Fs.rm(dir, { recursive: true, force: true }),
        catch: (cause) => new PurgeError({ reason: `cannot delete ${dir}`, cause })
      })
      yield* Console.log(`Deleted ${dir}`)
    }
  }
)
