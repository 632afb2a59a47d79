/**
 * Log storage for deployments, as Service Weaver keeps it: every process of a
 * deployment appends its entries to its own file under
 * `$TMPDIR/serviceweaver/logs/<tool>`, named
 * `<app>#<deployment id>#<replica id>#<kind>.jsonl`, one JSON
 * {@link Logging.Entry} per line. `weaver multi logs` reads them all back,
 * merged in time order, and can follow them as they grow.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as HashSet from "effect/HashSet"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Readline from "node:readline"
import * as Logging from "./Logging.js"

/**
 * The deployers that keep log files.
 *
 * @since 0.1.0
 * @category models
 */
export type Tool = "single" | "multi"

/**
 * The directory holding a tool's log files:
 * `${os.tmpdir()}/serviceweaver/logs/<tool>`. When the environment variable
 * `SERVICEWEAVER_LOG_DIR` is set, it replaces `${os.tmpdir()}/serviceweaver/logs`.
 *
 * @since 0.1.0
 * @category accessors
 */
export const directory = (tool: Tool): string =>
  Path.join(process.env.SERVICEWEAVER_LOG_DIR || Path.join(Os.tmpdir(), "serviceweaver", "logs"), tool)

/**
 * A log entry as stored: one JSON object per line with the fields of
 * {@link Logging.Entry}; `attrs` is an array of `[key, value]` pairs.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Entry: Schema.Schema<Logging.Entry> = Schema.Struct({
  app: Schema.String,
  version: Schema.String,
  component: Schema.String,
  node: Schema.String,
  timeMicros: Schema.Number,
  level: Schema.String,
  source: Schema.String,
  msg: Schema.String,
  attrs: Schema.Array(Schema.Tuple(Schema.String, Schema.String))
})

const decodeLine = Schema.decodeUnknownOption(Schema.parseJson(Entry))

/**
 * One entry as a JSON line, without the trailing newline.
 *
 * @since 0.1.0
 * @category formatting
 */
export const encode = (entry: Logging.Entry): string =>
  JSON.stringify({
    app: entry.app,
    version: entry.version,
    component: entry.component,
    node: entry.node,
    timeMicros: entry.timeMicros,
    level: entry.level,
    source: entry.source,
    msg: entry.msg,
    attrs: entry.attrs
  })

/**
 * Decodes one line of a log file; `None` for a line that is not an entry.
 *
 * @since 0.1.0
 * @category formatting
 */
export const decode = (line: string): Option.Option<Logging.Entry> => decodeLine(line)

/**
 * A failure to open, write or read a log file.
 *
 * @since 0.1.0
 * @category errors
 */
export class LogFileError extends Data.TaggedError("LogFileError")<{
  readonly path: string
  readonly reason: string
  readonly cause?: unknown
}> {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    const detail = this.cause instanceof Error ? `: ${this.cause.message}` : ""
    return `${this.path}: ${this.reason}${detail}`
  }
}

/**
 * What a log file name says about its entries.
 *
 * @since 0.1.0
 * @category models
 */
export interface FileInfo {
  readonly app: string
  readonly deploymentId: string
  readonly node: string
  readonly kind: string
}

const part = (s: string) => s.replace(/[#/\\\0]/g, "_")

/**
 * The name of a log file: `<app>#<deploymentId>#<node>#<kind>.jsonl`, with
 * `#` and path separators in the parts replaced by `_`.
 *
 * @since 0.1.0
 * @category formatting
 */
export const fileName = (info: FileInfo): string =>
  `${part(info.app)}#${part(info.deploymentId)}#${part(info.node)}#${part(info.kind)}.jsonl`

/**
 * Parses a log file name written by {@link fileName}.
 *
 * @since 0.1.0
 * @category formatting
 */
export const parseFileName = (name: string): Option.Option<FileInfo> => {
  if (!name.endsWith(".jsonl")) return Option.none()
  const parts = name.slice(0, -".jsonl".length).split("#")
  if (parts.length !== 4) return Option.none()
  const [app, deploymentId, node, kind] = parts as [string, string, string, string]
  return Option.some({ app, deploymentId, node, kind })
}

/**
 * Appends entries to one log file. Entries are buffered and written in
 * batches, at least every flush interval and when the writer's scope closes.
 *
 * @since 0.1.0
 * @category models
 */
export interface Writer {
  readonly path: string
  /** Queues an entry; it reaches the file within the flush interval. */
  readonly write: (entry: Logging.Entry) => Effect.Effect<void>
  /** {@link Writer.write} outside Effect, for loggers and stream callbacks. */
  readonly unsafeWrite: (entry: Logging.Entry) => void
  /** Writes the queued entries now. */
  readonly flush: Effect.Effect<void>
}

/**
 * Options of {@link writer}.
 *
 * @since 0.1.0
 * @category models
 */
export interface WriterOptions {
  /**
   * The last part of the file name, so that two writers of the same process
   * (the weavelet's own logger and the deployer capturing its output) use two
   * files. Defaults to `"log"`.
   */
  readonly kind?: string | undefined
  /** How often queued entries are written. Defaults to 100 ms. */
  readonly flushInterval?: Duration.DurationInput | undefined
}

// When the file cannot be written, entries go to stderr rather than being lost, as Service Weaver does.
const fallback = (lines: ReadonlyArray<string>, path: string, cause: unknown) => {
  const reason = cause instanceof Error ? cause.message : String(cause)
  for (const line of lines) {
    const entry = decode(line)
    if (Option.isNone(entry)) continue
    const attrs = [...entry.value.attrs, ["serviceweaver/logerror", `${path}: ${reason}`] as const]
    process.stderr.write(Logging.pretty({ ...entry.value, attrs }) + "\n")
  }
}

/**
 * Opens `<dir>/<app>#<deploymentId>#<node>#<kind>.jsonl` for appending,
 * creating `dir` if needed, for as long as the scope lasts. Closing the scope
 * writes what is queued. If a write fails, the entries are printed on
 * standard error with the attribute `serviceweaver/logerror`; so are entries
 * written after the scope closed.
 *
 * @since 0.1.0
 * @category constructors
 */
export const writer: (
  dir: string,
  app: string,
  deploymentId: string,
  node: string,
  options?: WriterOptions
) => Effect.Effect<Writer, LogFileError, Scope.Scope> = Effect.fnUntraced(
  function*(dir: string, app: string, deploymentId: string, node: string, options?: WriterOptions) {
    const path = Path.join(dir, fileName({ app, deploymentId, node, kind: options?.kind ?? "log" }))
    const handle = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () => Fs.mkdir(dir, { recursive: true }).then(() => Fs.open(path, "a")),
        catch: (cause) => new LogFileError({ path, reason: "cannot open the log file", cause })
      }),
      (handle) => Effect.promise(() => handle.close().catch(() => undefined))
    )
    let pending: Array<string> = []
    let closed = false
    const lock = yield* Effect.makeSemaphore(1)
    const flush = lock.withPermits(1)(Effect.suspend(() => {
      if (pending.length === 0) return Effect.void
      const batch = pending
      pending = []
      return Effect.tryPromise(() => handle.write(batch.join(""))).pipe(
        Effect.catchAll((cause) => Effect.sync(() => fallback(batch, path, cause)))
      )
    })).pipe(Effect.uninterruptible)
    yield* Effect.addFinalizer(() =>
      Effect.zipRight(
        flush,
        Effect.sync(() => {
          closed = true
        })
      )
    )
    yield* flush.pipe(
      Effect.delay(options?.flushInterval ?? Duration.millis(100)),
      Effect.forever,
      Effect.forkScoped
    )
    const unsafeWrite = (entry: Logging.Entry) => {
      if (closed) fallback([encode(entry)], path, "the log file is closed")
      else pending.push(encode(entry) + "\n")
    }
    return {
      path,
      write: (entry) => Effect.sync(() => unsafeWrite(entry)),
      unsafeWrite,
      flush
    } satisfies Writer
  }
)

/**
 * An Effect logger that turns every log into a {@link Logging.Entry} (with
 * `Logging.toEntry`: component, deployment and replica) and queues it on
 * `writer`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const logger = (writer: Writer, origin: Logging.Origin): Logger.Logger<unknown, void> =>
  Logger.make((options) => writer.unsafeWrite(Logging.toEntry(origin, options)))

/**
 * Opens a {@link writer} for the process described by `origin` in `dir` and
 * replaces every logger with {@link logger} on it: what a weavelet launched
 * by `weaver multi` installs.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  dir: string,
  origin: Logging.Origin,
  options?: WriterOptions
): Layer.Layer<never, LogFileError> =>
  Layer.scopedDiscard(Effect.gen(function*() {
    const w = yield* writer(dir, origin.app, origin.deploymentId, origin.replicaId, options)
    yield* Effect.locallyScoped(FiberRef.currentLoggers, HashSet.make(logger(w, origin)))
  }))

/**
 * Who printed a line of output: the process's deployment, replica and
 * colocation group (shown as the entry's component).
 *
 * @since 0.1.0
 * @category models
 */
export interface OutputOrigin {
  readonly app: string
  readonly deploymentId: string
  readonly node: string
  readonly component: string
}

const nowMicros = (): number => Math.round((performance.timeOrigin + performance.now()) * 1000)

/**
 * Turns a line an application process printed on stdout or stderr into an
 * entry with level `"stdout"` or `"stderr"`, no source and no attributes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const outputEntry = (
  origin: OutputOrigin,
  level: "stdout" | "stderr",
  line: string
): Logging.Entry => ({
  app: origin.app,
  version: origin.deploymentId,
  component: origin.component,
  node: origin.node,
  timeMicros: nowMicros(),
  level,
  source: "",
  msg: line,
  attrs: []
})

/**
 * Writes every line of `output` (a child process's stdout or stderr) to
 * `writer` as an {@link outputEntry}, until the stream ends.
 *
 * @since 0.1.0
 * @category constructors
 */
export const capture = (
  output: NodeJS.ReadableStream,
  origin: OutputOrigin,
  level: "stdout" | "stderr",
  writer: Writer
): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    const lines = Readline.createInterface({ input: output, crlfDelay: Infinity })
    lines.on("line", (line) => writer.unsafeWrite(outputEntry(origin, level, line)))
    lines.once("close", () => resume(Effect.void))
    return Effect.sync(() => lines.close())
  })

/**
 * Which files to read.
 *
 * @since 0.1.0
 * @category models
 */
export interface ReadOptions {
  /** Only this deployment's files. */
  readonly deploymentId?: string | undefined
}

interface Cursor {
  offset: number
  rest: Buffer
}

const chunkSize = 4 * 1024 * 1024
const newline = 0x0a

const isMissing = (cause: unknown) => (cause as NodeJS.ErrnoException | undefined)?.code === "ENOENT"

const readFrom = async (path: string, cursor: Cursor, out: Array<Logging.Entry>): Promise<void> => {
  const handle = await Fs.open(path, "r")
  try {
    const { size } = await handle.stat()
    if (size < cursor.offset) {
      cursor.offset = 0
      cursor.rest = Buffer.alloc(0)
    }
    while (cursor.offset < size) {
      const buffer = Buffer.allocUnsafe(Math.min(chunkSize, size - cursor.offset))
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, cursor.offset)
      if (bytesRead === 0) break
      cursor.offset += bytesRead
      const data = cursor.rest.length === 0
        ? buffer.subarray(0, bytesRead)
        : Buffer.concat([cursor.rest, buffer.subarray(0, bytesRead)])
      let start = 0
      for (let end = data.indexOf(newline); end !== -1; end = data.indexOf(newline, start)) {
        const entry = decode(data.toString("utf8", start, end))
        if (Option.isSome(entry)) out.push(entry.value)
        start = end + 1
      }
      cursor.rest = Buffer.from(data.subarray(start))
    }
  } finally {
    await handle.close()
  }
}

const readNew = (dir: string, cursors: Map<string, Cursor>, options: ReadOptions | undefined) =>
  Effect.tryPromise({
    try: async () => {
      const names = await Fs.readdir(dir).catch((cause) => isMissing(cause) ? [] : Promise.reject(cause))
      const out: Array<Logging.Entry> = []
      const present = new Set<string>()
      for (const name of names) {
        const info = parseFileName(name)
        if (Option.isNone(info)) continue
        if (options?.deploymentId !== undefined && info.value.deploymentId !== options.deploymentId) continue
        present.add(name)
        let cursor = cursors.get(name)
        if (cursor === undefined) {
          cursor = { offset: 0, rest: Buffer.alloc(0) }
          cursors.set(name, cursor)
        }
        await readFrom(Path.join(dir, name), cursor, out).catch((cause) =>
          isMissing(cause) ? undefined : Promise.reject(cause)
        )
      }
      for (const name of cursors.keys()) if (!present.has(name)) cursors.delete(name)
      // Array.prototype.sort is stable: entries of one file with equal times keep their order.
      return out.sort((a, b) => a.timeMicros - b.timeMicros)
    },
    catch: (cause) => new LogFileError({ path: dir, reason: "cannot read the log files", cause })
  })

/**
 * Reads every entry of every log file in `dir` (optionally of one
 * deployment), merged in time order. Lines that are not entries are skipped,
 * as is an unfinished last line. A missing directory has no entries.
 *
 * @since 0.1.0
 * @category accessors
 */
export const readAll = (
  dir: string,
  options?: ReadOptions
): Effect.Effect<ReadonlyArray<Logging.Entry>, LogFileError> => Effect.suspend(() => readNew(dir, new Map(), options))

/**
 * Options of {@link follow}.
 *
 * @since 0.1.0
 * @category models
 */
export interface FollowOptions extends ReadOptions {
  /** How often the directory is polled for new entries and files. Defaults to 200 ms. */
  readonly interval?: Duration.DurationInput | undefined
}

/**
 * The entries of the log files in `dir`: first those already written, in
 * time order, then new ones as files grow or appear, polling every
 * `interval`, until interrupted. Each poll's new entries are emitted in time
 * order.
 *
 * @since 0.1.0
 * @category accessors
 */
export const follow = (dir: string, options?: FollowOptions): Stream.Stream<Logging.Entry, LogFileError> =>
  Stream.suspend(() => {
    const cursors = new Map<string, Cursor>()
    return Stream.repeatEffectWithSchedule(
      readNew(dir, cursors, options),
      Schedule.spaced(options?.interval ?? Duration.millis(200))
    ).pipe(Stream.flattenIterables)
  })
