/**
 * Logging in Service Weaver's shape. `Effect.log*` inside a component carries
 * the component name, the deployment id and the replica id:
 *
 * ```text
 * I1103 08:55:15.650149 hello.Reverser 73ddcd04 Reverser.ts:12 │ reversing name="Weaver"
 * ```
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as FiberRefs from "effect/FiberRefs"
import * as HashMap from "effect/HashMap"
import * as HashSet from "effect/HashSet"
import * as Inspectable from "effect/Inspectable"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import type * as LogLevel from "effect/LogLevel"
import { componentBox, currentComponent } from "./internal/fiberRefs.js"

/**
 * One log entry, with Service Weaver's fields.
 *
 * @since 0.1.0
 * @category models
 */
export interface Entry {
  readonly app: string
  /** The deployment id. */
  readonly version: string
  readonly component: string
  /** The replica (weavelet) id. */
  readonly node: string
  readonly timeMicros: number
  readonly level: string
  /** `file:line`. */
  readonly source: string
  readonly msg: string
  readonly attrs: ReadonlyArray<readonly [string, string]>
}

/**
 * Who is logging: the fields every entry of this process shares.
 *
 * @since 0.1.0
 * @category models
 */
export interface Origin {
  readonly app: string
  readonly deploymentId: string
  readonly replicaId: string
}

const levelName = (level: LogLevel.LogLevel): string => {
  switch (level._tag) {
    case "Fatal":
    case "Error":
      return "error"
    case "Warning":
      return "warn"
    case "Debug":
    case "Trace":
      return "debug"
    default:
      return "info"
  }
}

const render = (value: unknown): string => typeof value === "string" ? value : Inspectable.toStringUnknown(value, 0)

// Microseconds since the epoch: Date has only milliseconds.
const nowMicros = (): number => Math.round((performance.timeOrigin + performance.now()) * 1000)

/**
 * Builds an {@link Entry} from what Effect hands a logger.
 *
 * @since 0.1.0
 * @category constructors
 */
export const toEntry = (origin: Origin, options: Logger.Logger.Options<unknown>): Entry => {
  const component = FiberRefs.getOrDefault(options.context, currentComponent).value
  const parts = Array.isArray(options.message) ? options.message : [options.message]
  let msg = parts.map(render).join(" ")
  if (!Cause.isEmpty(options.cause)) msg += `\n${Cause.pretty(options.cause, { renderErrorCause: true })}`
  const attrs: Array<readonly [string, string]> = []
  for (const [key, value] of HashMap.toEntries(options.annotations)) attrs.push([key, render(value)])
  attrs.sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)
  return {
    app: origin.app,
    version: origin.deploymentId,
    component: component?.name ?? "main",
    node: origin.replicaId,
    timeMicros: nowMicros(),
    level: levelName(options.logLevel),
    source: component?.source ?? "",
    msg,
    attrs
  }
}

/**
 * Runs `effect` with its log entries attributed to `component`, as if it
 * were that component's code: for runtime code that logs on behalf of the
 * components of its process, such as the RPC server about the connections to
 * them. Without it, such entries are attributed to `main`.
 *
 * @since 0.1.0
 * @category combinators
 */
export const withComponent = (component: string) => <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.locally(effect, currentComponent, componentBox({ name: component, source: "" }))

/**
 * Options of {@link makeRateLimiter}.
 *
 * @since 0.1.0
 * @category models
 */
export interface RateLimiterOptions {
  /** Lines written per interval; the others are counted. */
  readonly lines: number
  readonly interval: Duration.DurationInput
  /** What the lines are about, for the summary: e.g. `"bad connections"`. */
  readonly about: string
  /** Writes one line (`peer` is absent from summaries), e.g. with `Effect.logWarning`. */
  readonly write: (message: string, peer: string | undefined) => void
}

/**
 * Warnings written at most `lines` per `interval`, then one line counting
 * the others (`suppressed K more warnings about …`).
 *
 * @since 0.1.0
 * @category models
 */
export interface RateLimiter {
  readonly log: (message: string, peer?: string | undefined) => void
  /** Writes the count of the lines suppressed so far, if any (e.g. when the server stops). */
  readonly flush: () => void
}

/**
 * A {@link RateLimiter}: for warnings that a peer can cause at will, such as
 * one per bad connection (a connect and a byte are cheap), which would
 * otherwise let any peer fill the deployment's log files. The count of
 * suppressed lines is written when the interval ends, even if nothing else
 * is logged after it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeRateLimiter = (options: RateLimiterOptions): RateLimiter => {
  const intervalMillis = Duration.toMillis(options.interval)
  let windowStart = -Infinity
  let written = 0
  let suppressed = 0
  let timer: ReturnType<typeof setTimeout> | undefined
  const flush = (): void => {
    if (timer !== undefined) {
      clearTimeout(timer)
      timer = undefined
    }
    if (suppressed === 0) return
    const count = suppressed
    suppressed = 0
    options.write(
      `suppressed ${count} more ${count === 1 ? "warning" : "warnings"} about ${options.about} ` +
        `(at most ${options.lines} per ${Duration.format(Duration.millis(intervalMillis))} are written)`,
      undefined
    )
  }
  const log = (message: string, peer?: string | undefined): void => {
    const now = Date.now()
    if (now - windowStart >= intervalMillis) {
      flush()
      windowStart = now
      written = 0
    }
    if (written < options.lines) {
      written++
      options.write(message, peer)
      return
    }
    suppressed++
    if (timer === undefined) {
      timer = setTimeout(flush, Math.max(0, windowStart + intervalMillis - now))
      timer.unref()
    }
  }
  return { log, flush }
}

/**
 * Service Weaver's short name for a component: its last two path segments
 * joined by a dot (`hello/Reverser` → `hello.Reverser`).
 *
 * @since 0.1.0
 * @category formatting
 */
export const shortComponent = (name: string): string => name.split("/").slice(-2).join(".")

const pad = (n: number, width = 2) => String(n).padStart(width, "0")

const colors = [31, 32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96]
const colorOf = (s: string) => {
  let hash = 0
  for (let i = 0; i < s.length; i++) hash = (hash * 31 + s.charCodeAt(i)) | 0
  return colors[Math.abs(hash) % colors.length]!
}
const paint = (color: boolean, code: number, s: string) => color ? `\x1b[${code}m${s}\x1b[0m` : s

/**
 * Formats an entry as Service Weaver's pretty printer does: level initial,
 * `MMDD HH:MM:SS.micros`, short component, 8-character replica id,
 * `file:line`, `│`, the message and the sorted attributes.
 *
 * @since 0.1.0
 * @category formatting
 */
export const pretty = (entry: Entry, options?: { readonly color?: boolean }): string => {
  const color = options?.color ?? false
  const micros = entry.timeMicros
  const date = new Date(Math.floor(micros / 1000))
  const time = `${pad(date.getMonth() + 1)}${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}:${
    pad(date.getSeconds())
  }.${pad(micros % 1_000_000, 6)}`
  const level = entry.level === "stdout" || entry.level === "stderr" ? "S" : entry.level[0]!.toUpperCase()
  const prefix = [
    paint(color && entry.level === "error", 31, `${level}${time}`),
    paint(color, colorOf(entry.component), shortComponent(entry.component)),
    paint(color, colorOf(entry.node), entry.node.slice(0, 8)),
    entry.source === "" ? undefined : paint(color, colorOf(entry.source), entry.source)
  ].filter((s) => s !== undefined).join(" ")
  const attrs = entry.attrs.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(" ")
  return `${prefix} │ ${entry.msg}${attrs === "" ? "" : ` ${attrs}`}`
}

/**
 * A logger that writes pretty lines to standard error.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makePretty = (origin: Origin): Logger.Logger<unknown, void> => {
  const color = process.stderr.isTTY === true
  return Logger.make((options) => {
    process.stderr.write(pretty(toEntry(origin, options), { color }) + "\n")
  })
}

/**
 * Replaces the default logger with {@link makePretty}.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerPretty = (origin: Origin): Layer.Layer<never> =>
  // Replaces every logger, not only the default one: NodeRuntime.runMain installs its own pretty logger.
  Layer.locallyScoped(FiberRef.currentLoggers, HashSet.make(makePretty(origin)))

/**
 * The box printed when a deployment starts, as Service Weaver prints it:
 *
 * ```text
 * ╭───────────────────────────────────────────────────╮
 * │ app        : hello                                │
 * │ deployment : 5c9753e4-c476-4f93-97a0-0ea599184178 │
 * ╰───────────────────────────────────────────────────╯
 * ```
 *
 * @since 0.1.0
 * @category formatting
 */
export const banner = (app: string, deploymentId: string): string => {
  const lines = [`app        : ${app}`, `deployment : ${deploymentId}`]
  const inner = Math.max(...lines.map((l) => l.length)) + 2
  return [
    `╭${"─".repeat(inner)}╮`,
    ...lines.map((l) => `│ ${l.padEnd(inner - 2)} │`),
    `╰${"─".repeat(inner)}╯`
  ].join("\n")
}
