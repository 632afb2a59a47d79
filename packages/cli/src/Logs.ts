/**
 * `weaver multi logs [query] [--follow] [--format=pretty|json] [--system]`:
 * prints the entries of a tool's log files that match a query, merged in
 * time order, as Service Weaver's `weaver multi logs` does.
 *
 * @since 0.1.0
 */
import * as LogQuery from "@effect-weaver/deployer-multi/LogQuery"
import * as LogFile from "@effect-weaver/runtime/LogFile"
import * as Logging from "@effect-weaver/runtime/Logging"
import * as Chunk from "effect/Chunk"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"

/**
 * What `logs` prints and how.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** A query in Service Weaver's query language; empty matches everything. */
  readonly query: string
  /** Keep printing new entries until interrupted. */
  readonly follow: boolean
  /** `pretty`: Service Weaver's log lines; `json`: one JSON object per line. */
  readonly format: "pretty" | "json"
  /** Also print system entries (those with the attribute `serviceweaver/system`). */
  readonly system: boolean
}

/**
 * The attribute that marks the entries of weavelet, envelope and deployer
 * internals, hidden unless `--system` is given.
 *
 * @since 0.1.0
 * @category accessors
 */
export const systemAttribute = "serviceweaver/system"

const isSystem = (entry: Logging.Entry) => entry.attrs.some(([key]) => key === systemAttribute)

/**
 * Formats entries as `logs` prints them, one line each, joined by newlines.
 *
 * @since 0.1.0
 * @category combinators
 */
export const format = (
  entries: Iterable<Logging.Entry>,
  options: { readonly format: "pretty" | "json"; readonly color?: boolean }
): string => {
  const lines: Array<string> = []
  for (const entry of entries) {
    lines.push(
      options.format === "json" ? LogFile.encode(entry) : Logging.pretty(entry, { color: options.color ?? false })
    )
  }
  return lines.join("\n")
}

/**
 * Prints the entries of `tool`'s log directory ({@link LogFile.directory})
 * that match `options`. Fails with a `QueryError` (its message quotes the
 * query with a caret) before reading anything if the query is not valid.
 *
 * @since 0.1.0
 * @category runtime
 */
export const logs: (
  tool: LogFile.Tool,
  options: Options
) => Effect.Effect<void, LogQuery.QueryError | LogFile.LogFileError> = Effect.fnUntraced(
  function*(tool: LogFile.Tool, options: Options) {
    const matches = yield* LogQuery.compile(options.query)
    const keep = options.system ? matches : (entry: Logging.Entry) => !isSystem(entry) && matches(entry)
    const color = process.stdout.isTTY === true && !process.env.NO_COLOR
    const dir = LogFile.directory(tool)
    const entries = options.follow ? LogFile.follow(dir) : Stream.fromIterableEffect(LogFile.readAll(dir))
    yield* entries.pipe(
      Stream.filter(keep),
      Stream.runForEachChunk((chunk) =>
        Chunk.isEmpty(chunk) ? Effect.void : Console.log(format(chunk, { format: options.format, color }))
      )
    )
  }
)
