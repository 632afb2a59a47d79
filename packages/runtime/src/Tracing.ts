/**
 * Tracing: an OpenTelemetry tracer for Effect spans, a bounded in-memory
 * trace store for the status server and dashboard, optional OTLP/HTTP export
 * to an external collector, and a sink through which a weavelet hands its
 * finished spans to its deployer.
 *
 * Tracing is opt-in per request, as in Service Weaver: HTTP requests served
 * with `Weaver.serve` are sampled (about one trace per second per listener,
 * or as `WEAVER_TRACE_SAMPLE` says, and always when the request carries a
 * sampled `traceparent`); component calls create spans only when the calling
 * fiber already has a sampled one; `Effect.withSpan` in application code just
 * works, and records nothing inside an unsampled request.
 *
 * | Setting | Effect |
 * |---|---|
 * | `WEAVER_TRACE_SAMPLE` | `always`, `never`, a fraction in `[0, 1]` of requests, or unset for about one per second |
 * | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` | export spans with OTLP/HTTP to this URL (e.g. `http://localhost:4318/v1/traces`) |
 * | `OTEL_EXPORTER_OTLP_ENDPOINT` | the same, with `/v1/traces` appended |
 *
 * @since 0.1.0
 */
import type * as OtelResourceModule from "@effect/opentelemetry/Resource"
import type * as OtelTracerModule from "@effect/opentelemetry/Tracer"
import type * as OtelApi from "@opentelemetry/api"
import type * as ResourcesModule from "@opentelemetry/resources"
import type { ReadableSpan, SpanProcessor } from "@opentelemetry/sdk-trace-base"
import type * as TraceBaseModule from "@opentelemetry/sdk-trace-base"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Equal from "effect/Equal"
import type * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import type * as FiberId from "effect/FiberId"
import * as FiberRef from "effect/FiberRef"
import * as FiberRefs from "effect/FiberRefs"
import { dual } from "effect/Function"
import * as GlobalValue from "effect/GlobalValue"
import * as HashMap from "effect/HashMap"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Tracer from "effect/Tracer"
import { settled } from "./internal/settled.js"

/**
 * A finished span, in a form that crosses process boundaries (JSON, msgpack)
 * and is stored by the trace store. Times are microseconds since the epoch.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Span = Schema.Struct({
  traceId: Schema.String,
  spanId: Schema.String,
  parentSpanId: Schema.optional(Schema.String),
  name: Schema.String,
  kind: Schema.Literal("internal", "server", "client", "producer", "consumer"),
  startMicros: Schema.Number,
  endMicros: Schema.Number,
  status: Schema.Literal("unset", "ok", "error"),
  statusMessage: Schema.optional(Schema.String),
  attributes: Schema.Record({ key: Schema.String, value: Schema.Union(Schema.String, Schema.Number, Schema.Boolean) }),
  /** The application (OpenTelemetry service name). */
  app: Schema.String,
  /** The replica (weavelet) that recorded the span. */
  replicaId: Schema.String,
  pid: Schema.Number
})

/**
 * @since 0.1.0
 * @category models
 */
export type Span = typeof Span.Type

const spanKinds: ReadonlySet<unknown> = new Set(["internal", "server", "client", "producer", "consumer"])
const spanStatuses: ReadonlySet<unknown> = new Set(["unset", "ok", "error"])

/**
 * Whether `u` is a {@link Span}: what `Schema.is(Span)` says, in a loop
 * instead of a walk of the schema.
 *
 * @since 0.1.0
 * @category guards
 */
export const isSpan = (u: unknown): u is Span => {
  if (typeof u !== "object" || u === null) return false
  const span = u as Record<string, unknown>
  if (
    typeof span.traceId !== "string" || typeof span.spanId !== "string" || typeof span.name !== "string" ||
    typeof span.startMicros !== "number" || typeof span.endMicros !== "number" || typeof span.app !== "string" ||
    typeof span.replicaId !== "string" || typeof span.pid !== "number" || !spanKinds.has(span.kind) ||
    !spanStatuses.has(span.status) ||
    (span.parentSpanId !== undefined && typeof span.parentSpanId !== "string") ||
    (span.statusMessage !== undefined && typeof span.statusMessage !== "string")
  ) return false
  const attributes = span.attributes
  if (typeof attributes !== "object" || attributes === null || Array.isArray(attributes)) return false
  for (const key in attributes) {
    const type = typeof (attributes as Record<string, unknown>)[key]
    if (type !== "string" && type !== "number" && type !== "boolean") return false
  }
  return true
}

/**
 * A batch of spans, as sent from a weavelet to its deployer: an array of
 * {@link Span}s, checked by {@link isSpan} rather than decoded field by
 * field, because a sampled request can send thousands of spans.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Spans: Schema.Schema<ReadonlyArray<Span>> = Schema.declare(
  (u: unknown): u is ReadonlyArray<Span> => Array.isArray(u) && u.every(isSpan),
  {
    identifier: "Spans",
    description: "an array of spans (traceId, spanId, name, kind, startMicros, endMicros, status, attributes, …)"
  }
)

/**
 * One trace in a listing: its root (or earliest) span and its extent.
 *
 * @since 0.1.0
 * @category schemas
 */
export const TraceSummary = Schema.Struct({
  traceId: Schema.String,
  /** The name of the root span, or of the earliest span if the root is not stored. */
  name: Schema.String,
  app: Schema.String,
  startMicros: Schema.Number,
  durationMicros: Schema.Number,
  spans: Schema.Number,
  /** Whether any span of the trace ended with an error. */
  error: Schema.Boolean
})

/**
 * @since 0.1.0
 * @category models
 */
export type TraceSummary = typeof TraceSummary.Type

/**
 * Which traces to list, as the dashboard asks: a latency bucket and/or
 * errors only. Newest first, at most `limit` (default 100).
 *
 * @since 0.1.0
 * @category models
 */
export interface Query {
  /** Inclusive lower bound of the trace duration, in microseconds. */
  readonly latencyLowMicros?: number | undefined
  /** Exclusive upper bound of the trace duration, in microseconds. */
  readonly latencyHighMicros?: number | undefined
  readonly errorsOnly?: boolean | undefined
  readonly limit?: number | undefined
}

/**
 * A bounded in-memory store of recent traces, grouped by trace id. When it
 * holds more than `maxTraces` traces or `maxSpans` spans, the traces that
 * started arriving first are dropped.
 *
 * @since 0.1.0
 * @category models
 */
export interface Store {
  readonly add: (spans: ReadonlyArray<Span>) => void
  readonly traces: (query?: Query) => Array<TraceSummary>
  /** The spans of one trace, by start time; empty if it is unknown or was dropped. */
  readonly trace: (traceId: string) => Array<Span>
  /** How many traces and spans are held. */
  readonly size: () => { readonly traces: number; readonly spans: number }
}

/**
 * The trace store of this process, provided by {@link layer}.
 *
 * @since 0.1.0
 * @category tags
 */
export class TraceStore extends Context.Tag("@effect-weaver/runtime/Tracing/TraceStore")<TraceStore, Store>() {}

/**
 * Default bounds of a store.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultStoreBounds = { maxTraces: 100, maxSpans: 1000 } as const

/**
 * Makes an empty store.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeStore = (options?: {
  readonly maxTraces?: number | undefined
  readonly maxSpans?: number | undefined
}): Store => {
  const maxTraces = Math.max(1, options?.maxTraces ?? defaultStoreBounds.maxTraces)
  const maxSpans = Math.max(1, options?.maxSpans ?? defaultStoreBounds.maxSpans)
  // Map iteration order is insertion order: the first key is the oldest trace. A trace's spans are those of its
  // array from `start` on: dropping the oldest spans of a trace larger than the store, one per span added, moves
  // `start`, and the array is compacted once half of it is dropped.
  const traces = new Map<string, { readonly spans: Array<Span>; start: number }>()
  let spanCount = 0
  const live = (list: { readonly spans: Array<Span>; readonly start: number }) =>
    list.start === 0 ? list.spans : list.spans.slice(list.start)
  const evict = () => {
    if (traces.size <= maxTraces && spanCount <= maxSpans) return
    for (const [traceId, list] of traces) {
      if (traces.size <= maxTraces && spanCount <= maxSpans) return
      if (traces.size === 1) {
        // One trace larger than the store: keep its newest spans.
        const drop = spanCount - maxSpans
        list.start += drop
        spanCount -= drop
        if (list.start * 2 > list.spans.length) {
          list.spans.splice(0, list.start)
          list.start = 0
        }
        return
      }
      traces.delete(traceId)
      spanCount -= list.spans.length - list.start
    }
  }
  const summarize = (traceId: string, spans: ReadonlyArray<Span>): TraceSummary => {
    let start = Infinity
    let end = -Infinity
    let error = false
    let root: Span | undefined
    let earliest: Span | undefined
    const ids = new Set(spans.map((span) => span.spanId))
    for (const span of spans) {
      if (span.startMicros < start) start = span.startMicros
      if (span.endMicros > end) end = span.endMicros
      if (span.status === "error") error = true
      if (earliest === undefined || span.startMicros < earliest.startMicros) earliest = span
      if (
        (span.parentSpanId === undefined || !ids.has(span.parentSpanId)) &&
        (root === undefined || span.startMicros < root.startMicros)
      ) root = span
    }
    const first = root ?? earliest!
    return {
      traceId,
      name: first.name,
      app: first.app,
      startMicros: start,
      durationMicros: end - start,
      spans: spans.length,
      error
    }
  }
  return {
    add: (spans) => {
      for (const span of spans) {
        let list = traces.get(span.traceId)
        if (list === undefined) {
          list = { spans: [], start: 0 }
          traces.set(span.traceId, list)
        }
        list.spans.push(span)
        spanCount++
      }
      evict()
    },
    traces: (query) => {
      const limit = query?.limit ?? 100
      const low = query?.latencyLowMicros ?? 0
      const high = query?.latencyHighMicros ?? Infinity
      const out: Array<TraceSummary> = []
      for (const [traceId, list] of traces) {
        const summary = summarize(traceId, live(list))
        if (summary.durationMicros < low || summary.durationMicros >= high) continue
        if (query?.errorsOnly && !summary.error) continue
        out.push(summary)
      }
      out.sort((a, b) => b.startMicros - a.startMicros)
      return out.slice(0, limit)
    },
    trace: (traceId) => {
      const list = traces.get(traceId)
      return list === undefined ? [] : [...live(list)].sort((a, b) => a.startMicros - b.startMicros)
    },
    size: () => ({ traces: traces.size, spans: spanCount })
  }
}

const kinds: ReadonlyArray<Span["kind"]> = ["internal", "server", "client", "producer", "consumer"]

// `SpanStatusCode.OK` and `.ERROR`, without loading @opentelemetry/api at import time.
const statusOk: OtelApi.SpanStatusCode = 1
const statusError: OtelApi.SpanStatusCode = 2

const micros = (time: OtelApi.HrTime): number => time[0] * 1e6 + Math.floor(time[1] / 1e3)

/**
 * Who records spans: resource attributes of every span of this process.
 *
 * @since 0.1.0
 * @category models
 */
export interface Origin {
  readonly app: string
  readonly deploymentId: string
  readonly replicaId: string
}

/**
 * Converts a finished OpenTelemetry span.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromReadableSpan = (span: ReadableSpan, origin: Origin): Span => {
  const context = span.spanContext()
  const attributes: Record<string, string | number | boolean> = {}
  const source = span.attributes
  for (const key in source) {
    const value = source[key]
    if (value === undefined || value === null) continue
    attributes[key] = typeof value === "object" ? JSON.stringify(value) : value
  }
  const code = span.status.code
  // Built in one shape (optional fields last) and without OtelApi.isSpanContextValid's regexes: this runs per span.
  const converted: Mutable<Span> = {
    traceId: context.traceId,
    spanId: context.spanId,
    name: span.name,
    kind: kinds[span.kind] ?? "internal",
    startMicros: micros(span.startTime),
    endMicros: micros(span.endTime),
    status: code === statusError ? "error" : code === statusOk ? "ok" : "unset",
    attributes,
    app: origin.app,
    replicaId: origin.replicaId,
    pid: process.pid
  }
  const parent = span.parentSpanContext
  if (parent !== undefined && parent.spanId !== "" && parent.spanId !== invalidSpanId) {
    converted.parentSpanId = parent.spanId
  }
  const message = span.status.message
  if (message !== undefined && message !== "") converted.statusMessage = message
  return converted
}

const invalidSpanId = "0000000000000000"

type Mutable<A> = { -readonly [K in keyof A]: A[K] }

/**
 * Options of {@link layer}.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends Origin {
  /** The store finished spans go to; a new one (see {@link makeStore}) by default. */
  readonly store?: Store | undefined
  readonly maxTraces?: number | undefined
  readonly maxSpans?: number | undefined
  /**
   * An OTLP/HTTP traces URL to export to as well, e.g.
   * `http://localhost:4318/v1/traces`. Defaults to {@link otlpEndpointFromEnv};
   * `false` turns export off whatever the environment says.
   */
  readonly otlpEndpoint?: string | false | undefined
  /**
   * Receives finished spans in batches, every `exportInterval` (default one
   * second) and when the layer closes: how a weavelet hands its spans to the
   * deployer. Spans still go to the local store.
   */
  readonly onSpans?: ((spans: ReadonlyArray<Span>) => Effect.Effect<void>) | undefined
  readonly exportInterval?: Duration.DurationInput | undefined
  /** Further OpenTelemetry span processors (tests use an `InMemorySpanExporter`). */
  readonly spanProcessors?: ReadonlyArray<SpanProcessor> | undefined
}

/**
 * The OTLP/HTTP traces URL from the standard OpenTelemetry environment:
 * `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as is, else `OTEL_EXPORTER_OTLP_ENDPOINT`
 * with `/v1/traces` appended.
 *
 * @since 0.1.0
 * @category accessors
 */
export const otlpEndpointFromEnv = (env: Record<string, string | undefined> = process.env): string | undefined => {
  const traces = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
  if (traces !== undefined && traces !== "") return traces
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT
  if (base !== undefined && base !== "") return `${base.replace(/\/+$/, "")}/v1/traces`
  return undefined
}

// Loaded on use: the SDK costs a few hundred milliseconds of startup that untraced processes need not pay.
// The tracer alone: @effect/opentelemetry's NodeSdk would also load the metrics and logs SDKs (~100 ms more).
let sdk:
  | Promise<
    [
      typeof OtelTracerModule,
      typeof OtelResourceModule,
      typeof ResourcesModule,
      typeof TraceBaseModule,
      typeof OtelApi
    ]
  >
  | undefined
const loadSdk = () =>
  sdk ??= Promise.all([
    import("@effect/opentelemetry/Tracer"),
    import("@effect/opentelemetry/Resource"),
    import("@opentelemetry/resources"),
    import("@opentelemetry/sdk-trace-base"),
    import("@opentelemetry/api")
  ])

/**
 * Starts loading the OpenTelemetry SDK that {@link layer} needs, without
 * waiting for it: a process that will install tracing calls this first, so
 * the loading overlaps its other startup work.
 *
 * @since 0.1.0
 * @category layers
 */
export const preload: Effect.Effect<void> = Effect.sync(() => {
  loadSdk().catch(() => undefined)
})

const emptyAttributes: ReadonlyMap<string, unknown> = new Map()
const noLinks: ReadonlyArray<Tracer.SpanLink> = []

/** Random lowercase hex of `bytes` bytes, as OpenTelemetry's id generator makes ids (not for secrets). */
const randomHex = (bytes: number): string => {
  let out = ""
  for (let i = 0; i < bytes; i++) out += hexBytes[(Math.random() * 256) | 0]
  return out
}
const hexBytes = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"))

/**
 * A span that records nothing and is never exported (`sampled` is false):
 * what an unsampled request served by `Weaver.serve` runs under, and every
 * span started inside one. With it, `Effect.annotateCurrentSpan` and
 * `Effect.currentSpan` find a span (without one, each builds and drops an
 * `Error` with its stack), while component calls, which trace only inside
 * sampled spans, stay untraced. Its trace id is its parent's, its ids are
 * made only when read.
 *
 * @since 0.1.0
 * @category models
 */
export class NonRecordingSpan implements Tracer.Span {
  readonly _tag = "Span"
  readonly sampled = false
  readonly context: Context.Context<never> = Context.empty()
  readonly attributes: ReadonlyMap<string, unknown> = emptyAttributes
  readonly links: ReadonlyArray<Tracer.SpanLink> = noLinks
  status: Tracer.SpanStatus
  private ids: { readonly traceId: string; readonly spanId: string } | undefined = undefined
  constructor(
    readonly name: string,
    readonly parent: Option.Option<Tracer.AnySpan>,
    readonly kind: Tracer.SpanKind,
    startTime: bigint
  ) {
    this.status = { _tag: "Started", startTime }
  }
  get traceId(): string {
    return (this.ids ??= this.makeIds()).traceId
  }
  get spanId(): string {
    return (this.ids ??= this.makeIds()).spanId
  }
  private makeIds() {
    return {
      traceId: this.parent._tag === "Some" ? this.parent.value.traceId : randomHex(16),
      spanId: randomHex(8)
    }
  }
  end(endTime: bigint, exit: Exit.Exit<unknown, unknown>): void {
    if (this.status._tag === "Started") this.status = { _tag: "Ended", startTime: this.status.startTime, endTime, exit }
  }
  attribute(_key: string, _value: unknown): void {}
  event(_name: string, _startTime: bigint, _attributes?: Record<string, unknown>): void {}
  addLinks(_links: ReadonlyArray<Tracer.SpanLink>): void {}
}

/**
 * A sampled span recorded without OpenTelemetry's SDK, straight into the
 * form the store keeps ({@link Span}): what {@link layer} makes when no
 * OpenTelemetry exporter or span processor would see the span. Ids are
 * random, as the SDK makes them.
 */
class RecordingSpan implements Tracer.Span {
  readonly _tag = "Span"
  readonly sampled = true
  readonly traceId: string
  readonly spanId: string
  status: Tracer.SpanStatus
  /**
   * Attributes set after the start, as key, value, key, value… (a later value of a key wins); those given at the
   * start are `fixed`, shared and never written. An array, not a Map: most spans get one or two.
   */
  private added: Array<unknown> | undefined = undefined
  constructor(
    readonly name: string,
    readonly parent: Option.Option<Tracer.AnySpan>,
    readonly context: Context.Context<never>,
    public links: ReadonlyArray<Tracer.SpanLink>,
    startTime: bigint,
    readonly kind: Tracer.SpanKind,
    private readonly sink: Sink,
    private readonly fixed: Readonly<Record<string, unknown>> | undefined
  ) {
    this.traceId = parent._tag === "Some" ? parent.value.traceId : randomHex(16)
    this.spanId = nextSpanId()
    this.status = { _tag: "Started", startTime }
  }
  get attributes(): ReadonlyMap<string, unknown> {
    const all = new Map<string, unknown>(this.fixed === undefined ? [] : Object.entries(this.fixed))
    const added = this.added
    if (added !== undefined) { for (let i = 0; i < added.length; i += 2) all.set(added[i] as string, added[i + 1]) }
    return all
  }
  attribute(key: string, value: unknown): void {
    if (this.added === undefined) this.added = [key, value]
    else this.added.push(key, value)
  }
  event(_name: string, _startTime: bigint, _attributes?: Record<string, unknown>): void {
    // The store keeps no events.
  }
  addLinks(links: ReadonlyArray<Tracer.SpanLink>): void {
    // A new array: a child span starts with the shared empty one.
    this.links = [...this.links, ...links]
  }
  end(endTime: bigint, exit: Exit.Exit<unknown, unknown>): void {
    if (this.status._tag !== "Started") return
    const startTime = this.status.startTime
    this.status = { _tag: "Ended", startTime, endTime, exit }
    const added = this.added
    const interrupted = exit._tag === "Failure" && Cause.isInterruptedOnly(exit.cause)
    const fixed = this.fixed === undefined ? noAttributes : convertedAttributes(this.fixed)
    // Nothing to add: the start attributes' stored form itself, shared (frozen). Otherwise a copy made with
    // Object.assign, not a spread: a spread's copy takes ~1 µs to get one more key (V8 leaves it no room to grow).
    const attributes: Record<string, string | number | boolean> = added === undefined && !interrupted
      ? fixed as Record<string, string | number | boolean>
      : Object.assign({}, fixed)
    if (added !== undefined) {
      for (let i = 0; i < added.length; i += 2) {
        const converted = attributeValue(added[i + 1])
        // As OpenTelemetry's spans: an attribute set to no value (undefined, null) keeps the one it had.
        if (converted !== undefined) attributes[added[i] as string] = converted
      }
    }
    let status: Span["status"] = "ok"
    let statusMessage: string | undefined
    if (exit._tag === "Failure") {
      if (interrupted) {
        attributes["status.interrupted"] = true
      } else {
        const error = Cause.prettyErrors(exit.cause)[0]
        if (error !== undefined) {
          status = "error"
          statusMessage = error.message
        }
      }
    }
    const span: Mutable<Span> = {
      traceId: this.traceId,
      spanId: this.spanId,
      name: this.name,
      kind: this.kind,
      startMicros: Math.floor(Number(startTime) / 1000),
      endMicros: Math.floor(Number(endTime) / 1000),
      status,
      attributes,
      app: this.sink.origin.app,
      replicaId: this.sink.origin.replicaId,
      pid
    }
    if (this.parent._tag === "Some") span.parentSpanId = this.parent.value.spanId
    if (statusMessage !== undefined && statusMessage !== "") span.statusMessage = statusMessage
    this.sink.onEnd(span)
  }
}

// Read once: `process` is an object in dictionary mode, where a property read is a hash lookup, per span.
const pid = process.pid
const noAttributes: Readonly<Record<string, string | number | boolean>> = Object.freeze({})

/**
 * Start attributes as the store keeps them, converted once per attributes object (a stub's are per method), frozen:
 * spans with no other attributes share it.
 */
const convertedAttributes = (
  fixed: Readonly<Record<string, unknown>>
): Readonly<Record<string, string | number | boolean>> => {
  let converted = convertedCache.get(fixed)
  if (converted === undefined) {
    const made: Record<string, string | number | boolean> = {}
    for (const key in fixed) {
      const value = attributeValue(fixed[key])
      if (value !== undefined) made[key] = value
    }
    convertedCache.set(fixed, converted = Object.freeze(made))
  }
  return converted
}
const convertedCache = new WeakMap<object, Readonly<Record<string, string | number | boolean>>>()

interface Sink {
  readonly onEnd: (span: Span) => void
  readonly origin: Origin
}

// Span ids as a random per-process prefix and a counter: unique within a trace as random ids are, cheaper to make.
const spanIdPrefix = randomHex(4)
let spanCounter = Math.floor(Math.random() * 0x1_0000_0000)
const nextSpanId = (): string => {
  const n = spanCounter = (spanCounter + 1) >>> 0
  return spanIdPrefix + hexBytes[n >>> 24]! + hexBytes[(n >>> 16) & 255]! + hexBytes[(n >>> 8) & 255]! +
    hexBytes[n & 255]!
}

/**
 * Where {@link withChildSpan} finds a tracer's shortcut for starting a span
 * with its attributes: the tracer of {@link layer} has one.
 */
const childSpanKey = Symbol.for("@effect-weaver/core/Tracing/childSpan")
type ChildSpan = (
  name: string,
  parent: Tracer.AnySpan,
  startTime: bigint,
  kind: Tracer.SpanKind,
  attributes: Readonly<Record<string, unknown>> | undefined
) => Tracer.Span

const attributeValue = (value: unknown): string | number | boolean | undefined => {
  switch (typeof value) {
    case "string":
    case "number":
    case "boolean":
      return value
    case "bigint":
      return String(value)
    case "undefined":
      return undefined
    default:
      if (value === null) return undefined
      try {
        return JSON.stringify(value)
      } catch {
        return String(value)
      }
  }
}

// Where @opentelemetry/api 1.x keeps its registered globals: a context manager is there once one is registered.
const otelGlobalKey = Symbol.for("opentelemetry.js.api.1")
const otelSpanTypeId = Symbol.for("@effect/opentelemetry/Tracer/OtelSpan")

/**
 * Wraps @effect/opentelemetry's tracer `otel`:
 *
 * - a span whose parent is not sampled is a {@link NonRecordingSpan}, as
 *   OpenTelemetry's parent-based sampling does, without asking the SDK;
 * - a sampled span is a `RecordingSpan` when only the store and `onSpans`
 *   would see it (`record`) and no OpenTelemetry context manager is
 *   registered: the SDK's span costs several times the call it traces;
 * - the OpenTelemetry context of a fiber's sampled span (for OpenTelemetry
 *   instrumentation of the libraries it calls) is installed around each
 *   run-loop step only when a context manager is registered, which this
 *   package never does, and is made once per span, not once per step.
 */
const makeTracer = (
  otel: Tracer.Tracer,
  api: typeof OtelApi,
  /** Records sampled spans without the SDK, when no OpenTelemetry exporter or processor needs them. */
  record: Sink | undefined
): Tracer.Tracer => {
  const contexts = new WeakMap<Tracer.AnySpan, OtelApi.Context>()
  const otelContext = (span: Tracer.AnySpan): OtelApi.Context | undefined => {
    let context = contexts.get(span)
    if (context === undefined) {
      const source = propagated(span)
      if (source === undefined) return undefined
      const active = api.context.active()
      context = otelSpanTypeId in source
        ? api.trace.setSpan(active, (source as unknown as { readonly span: OtelApi.Span }).span)
        : api.trace.setSpanContext(active, {
          traceId: source.traceId,
          spanId: source.spanId,
          traceFlags: source.sampled ? 1 : 0,
          isRemote: source._tag === "ExternalSpan"
        })
      contexts.set(span, context)
    }
    return context
  }
  // Whether an OpenTelemetry context manager is registered, as of the last span started: read per span, not per step.
  let managed = (globalThis as any)[otelGlobalKey]?.context !== undefined
  const childSpan: ChildSpan = (name, parent, startTime, kind, attributes) => {
    managed = (globalThis as any)[otelGlobalKey]?.context !== undefined
    if (!parent.sampled) return new NonRecordingSpan(name, someParent(parent), kind, startTime)
    if (record !== undefined && !managed) {
      return new RecordingSpan(name, someParent(parent), Context.empty(), noLinks, startTime, kind, record, attributes)
    }
    const span = otel.span(name, someParent(parent), Context.empty(), [], startTime, kind, undefined)
    if (attributes !== undefined) { for (const key in attributes) span.attribute(key, attributes[key]) }
    return span
  }
  const tracer = Tracer.make({
    span: (name, parent, context, links, startTime, kind, options) => {
      managed = (globalThis as any)[otelGlobalKey]?.context !== undefined
      if (parent._tag === "Some" && !parent.value.sampled) return new NonRecordingSpan(name, parent, kind, startTime)
      // With a context manager registered, OpenTelemetry instrumentation may look the span up (and a root span may
      // have an OpenTelemetry parent): the SDK makes it.
      if (record !== undefined && !managed) {
        return new RecordingSpan(name, parent, context, links, startTime, kind, record, undefined)
      }
      return otel.span(name, parent, context, links, startTime, kind, options)
    },
    context: (execution, fiber) => {
      if (!managed) return execution()
      const span = fiber.currentSpan
      // Unsampled spans are left out: OpenTelemetry instrumentation would not record under them either.
      if (span === undefined || !span.sampled || span instanceof RecordingSpan) return execution()
      const context = otelContext(span)
      return context === undefined ? execution() : api.context.with(context, execution)
    }
  })
  return Object.assign(tracer, { [childSpanKey]: childSpan })
}

/**
 * `Option.some(parent)`, the same one for the same parent as the last call: the calls a request makes one after
 * another start their spans under one parent (an Option is immutable, so sharing it is safe).
 */
const someParent = (parent: Tracer.AnySpan): Option.Option<Tracer.AnySpan> => {
  if (parent !== lastParent) {
    lastParent = parent
    lastSomeParent = Option.some(parent)
  }
  return lastSomeParent!
}
let lastParent: Tracer.AnySpan | undefined
let lastSomeParent: Option.Option<Tracer.AnySpan> | undefined

/** The span itself or its nearest ancestor without `DisablePropagation`, as @effect/opentelemetry propagates. */
const propagated = (span: Tracer.AnySpan): Tracer.AnySpan | undefined => {
  let current: Tracer.AnySpan | undefined = span
  while (current !== undefined && Context.get(current.context, Tracer.DisablePropagation)) {
    current = current._tag === "Span" ? Option.getOrUndefined(current.parent) : undefined
  }
  return current
}

/**
 * At most this many spans, the newest, go to `onSpans` per batch: as many as
 * the deployer's store keeps ({@link defaultStoreBounds}), so that a sampled
 * request of thousands of calls does not ship spans only to have them
 * dropped there. Spans beyond it are dropped here, oldest first.
 */
const maxPending = defaultStoreBounds.maxSpans

/**
 * Installs an OpenTelemetry tracer for Effect spans in this process, whose
 * finished spans go to the trace store (also provided as {@link TraceStore}),
 * to `onSpans` in batches, and to an OTLP/HTTP collector when one is
 * configured. Spans are flushed when the layer's scope closes.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<TraceStore> =>
  Layer.unwrapScoped(Effect.gen(function*() {
    const store = options.store ?? makeStore(options)
    const origin: Origin = { app: options.app, deploymentId: options.deploymentId, replicaId: options.replicaId }
    let pending: Array<Span> = []
    const onSpans = options.onSpans
    const ended = (converted: Span) => {
      store.add([converted])
      if (onSpans !== undefined) {
        pending.push(converted)
        // Trimmed once it holds twice the batch, not once per span past it.
        if (pending.length >= 2 * maxPending) pending = pending.slice(pending.length - maxPending)
      }
    }
    const local: SpanProcessor = {
      onStart: () => {},
      onEnd: (span) => ended(fromReadableSpan(span, origin)),
      forceFlush: () => Promise.resolve(),
      shutdown: () => Promise.resolve()
    }
    const processors: Array<SpanProcessor> = [local, ...(options.spanProcessors ?? [])]
    const endpoint = options.otlpEndpoint === false ? undefined : options.otlpEndpoint ?? otlpEndpointFromEnv()
    const modules = yield* Effect.promise(loadSdk)
    const [OtelTracer, OtelResource, Resources, { AlwaysOnSampler, BasicTracerProvider, BatchSpanProcessor }, api] =
      modules
    if (endpoint !== undefined) {
      const { OTLPTraceExporter } = yield* Effect.promise(() => import("@opentelemetry/exporter-trace-otlp-http"))
      processors.push(new BatchSpanProcessor(new OTLPTraceExporter({ url: endpoint })))
    }
    if (onSpans !== undefined) {
      const flush = Effect.suspend(() => {
        if (pending.length === 0) return Effect.void
        const batch = pending.length > maxPending ? pending.slice(pending.length - maxPending) : pending
        pending = []
        return onSpans(batch)
      })
      const interval = options.exportInterval ?? Duration.seconds(1)
      yield* Effect.addFinalizer(() => flush)
      yield* flush.pipe(Effect.delay(interval), Effect.forever, Effect.forkScoped)
    }
    const resource = Resources.resourceFromAttributes(OtelResource.configToAttributes({
      serviceName: options.app,
      attributes: {
        "service.instance.id": options.replicaId,
        "serviceweaver.app": options.app,
        "serviceweaver.deployment_id": options.deploymentId,
        "serviceweaver.replica_id": options.replicaId,
        "process.pid": process.pid
      }
    }))
    // Ends the provider (flushing spans into `pending`) before the finalizer above sends the last batch.
    const provider = yield* Effect.acquireRelease(
      Effect.sync(() =>
        new BasicTracerProvider({
          resource,
          spanProcessors: processors,
          // Whether to trace is decided before a span starts (HTTP sampling, or a parent span for calls).
          sampler: new AlwaysOnSampler()
        })
      ),
      (provider) =>
        // An unreachable collector must not fail or hold up the scope's close.
        Effect.tryPromise(() => provider.forceFlush().then(() => provider.shutdown())).pipe(
          Effect.timeoutOption(Duration.seconds(3)),
          Effect.ignore
        )
    )
    const otel = yield* OtelTracer.make.pipe(
      Effect.provideService(OtelTracer.OtelTracer, provider.getTracer(options.app))
    )
    // Spans that only the store and onSpans see skip the SDK: it costs several times what the span's work does.
    const record = processors.length === 1 ? { onEnd: ended, origin } : undefined
    return Layer.merge(Layer.succeed(TraceStore, store), Layer.setTracer(makeTracer(otel, api, record)))
  }))

/**
 * How HTTP requests served by `Weaver.serve` are sampled: `"always"`,
 * `"never"`, a fraction of requests in `[0, 1]`, or `"default"`: about one
 * request per second per listener, at a random time (Service Weaver's
 * `InstrumentHandler`). Requests with a sampled `traceparent` are traced
 * whatever this says.
 *
 * @since 0.1.0
 * @category models
 */
export type Sampling = "always" | "never" | "default" | number

/**
 * Reads {@link Sampling} from `WEAVER_TRACE_SAMPLE`; anything unrecognised is
 * `"default"`.
 *
 * @since 0.1.0
 * @category accessors
 */
export const samplingFromEnv = (env: Record<string, string | undefined> = process.env): Sampling => {
  const value = env.WEAVER_TRACE_SAMPLE?.trim().toLowerCase()
  if (value === undefined || value === "" || value === "default") return "default"
  if (value === "always") return "always"
  if (value === "never") return "never"
  const fraction = Number(value)
  return Number.isFinite(fraction) && fraction >= 0 && fraction <= 1 ? fraction : "default"
}

/**
 * The sampling of listeners started by fibers that see it set; unset means
 * {@link samplingFromEnv}.
 *
 * @since 0.1.0
 * @category fiber refs
 */
export const currentSampling: FiberRef.FiberRef<Sampling | undefined> = GlobalValue.globalValue(
  Symbol.for("@effect-weaver/core/Tracing/currentSampling"),
  () => FiberRef.unsafeMake<Sampling | undefined>(undefined)
)

/**
 * Runs `self` with listeners it starts sampled as `sampling` says.
 *
 * @since 0.1.0
 * @category combinators
 */
export const withSampling: {
  (sampling: Sampling): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  <A, E, R>(self: Effect.Effect<A, E, R>, sampling: Sampling): Effect.Effect<A, E, R>
} = dual(
  2,
  <A, E, R>(self: Effect.Effect<A, E, R>, sampling: Sampling): Effect.Effect<A, E, R> =>
    Effect.locally(self, currentSampling, sampling)
)

const sampledParent = (headers: Readonly<Record<string, string | undefined>>): boolean => {
  const traceparent = headers["traceparent"]
  if (traceparent !== undefined) {
    return /^[\da-f]{2}-[\da-f]{32}-[\da-f]{16}-[\da-f]{2}$/i.test(traceparent.trim()) &&
      (parseInt(traceparent.trim().slice(-2), 16) & 1) === 1
  }
  const b3 = headers["b3"]
  if (b3 !== undefined) return b3.split("-")[2] === "1" || b3.split("-")[2] === "d"
  return headers["x-b3-sampled"] === "1"
}

/**
 * A sampler for one listener: given a request's headers, whether to trace
 * it. `ended` is told when a request it sampled has ended.
 *
 * @since 0.1.0
 * @category models
 */
export interface Sampler {
  (headers: Readonly<Record<string, string | undefined>>): boolean
  /**
   * A sampled request has ended. With `"default"` sampling, the next sample
   * is then at least a fresh random interval away: a sampled request that
   * lasts longer than the interval does not make the next request sampled
   * too (with requests one after another, every request would be).
   */
  readonly ended: () => void
}

/**
 * Makes the {@link Sampler} of one listener.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeSampler = (
  sampling: Sampling,
  options?: { readonly now?: () => number; readonly random?: () => number }
): Sampler => {
  const now = options?.now ?? Date.now
  const random = options?.random ?? Math.random
  let next = 0
  const sample = (headers: Readonly<Record<string, string | undefined>>) => {
    if (sampledParent(headers)) return true
    if (sampling === "always") return true
    if (sampling === "never") return false
    if (typeof sampling === "number") return random() < sampling
    const time = now()
    if (time < next) return false
    next = time + random() * 2000
    return true
  }
  return Object.assign(sample, {
    ended: () => {
      if (sampling !== "default") return
      const after = now() + random() * 2000
      if (after > next) next = after
    }
  })
}

/**
 * Runs `self` in a new span, child of the fiber's current span: what
 * `Effect.withSpan` does, in fewer steps, for the component call path. The
 * span becomes the fiber's current span by one write of its context (not
 * `Effect.provideService`'s scoped region) and ends when `self` exits; if
 * the fiber is interrupted meanwhile, when the fiber ends. Span annotations
 * set with `Effect.annotateSpans` are added; span links and stack traces are
 * not. Component stubs call it when the calling fiber's span is sampled.
 *
 * @since 0.1.0
 * @category combinators
 */
export const withChildSpan = <A, E, R>(
  self: Effect.Effect<A, E, R>,
  name: string,
  options: ChildSpanOptions
): Effect.Effect<A, E, R> =>
  Effect.withFiberRuntime((fiber) => {
    const end = startChildSpan(fiber, name, options)
    return end === undefined ? self : settled(self, end)
  })

/**
 * The options of {@link withChildSpan}.
 *
 * @since 0.2.0
 * @category models
 */
export interface ChildSpanOptions {
  readonly kind: Tracer.SpanKind
  readonly attributes?: Readonly<Record<string, unknown>> | undefined
}

/**
 * What {@link withChildSpan} does before and after its effect, for a caller
 * that already runs in `fiber` (a component stub) and has match handlers of
 * its own to end the span in: starts the span as the fiber's current span and
 * returns the function that ends it and restores the fiber's context; or
 * undefined when the fiber's tracing is off. An interrupted fiber ends the
 * span when it ends.
 *
 * @since 0.2.0
 * @category combinators
 */
export const startChildSpan = (
  fiber: Fiber.RuntimeFiber<unknown, unknown>,
  name: string,
  options: ChildSpanOptions
): ((exit: Exit.Exit<unknown, unknown>) => void) | undefined => {
  if (!fiber.getFiberRef(FiberRef.currentTracerEnabled)) return undefined
  const parent = fiber.currentSpan
  const clock = Context.get(fiber.currentDefaultServices, Clock.Clock)
  const tracer = fiber.currentTracer
  const shortcut = (tracer as { readonly [childSpanKey]?: ChildSpan })[childSpanKey]
  const attributes = options.attributes
  let span: Tracer.Span
  if (shortcut !== undefined && parent !== undefined) {
    span = shortcut(name, parent, clock.unsafeCurrentTimeNanos(), options.kind, attributes)
  } else {
    const start = clock.unsafeCurrentTimeNanos()
    span = tracer.span(name, Option.fromNullable(parent), Context.empty(), [], start, options.kind, undefined)
    if (attributes !== undefined) { for (const key in attributes) span.attribute(key, attributes[key]) }
  }
  const annotations = fiber.getFiberRef(FiberRef.currentTracerSpanAnnotations)
  if (HashMap.size(annotations) > 0) HashMap.forEach(annotations, (value, key) => span.attribute(key, value))
  // The fiber runtime's own fields (public types omit them): one write of the context, undone on exit.
  const runtime = fiber as unknown as FiberInternals
  const before = fiber.currentContext
  const refsBefore = runtime._fiberRefs
  const context = Context.unsafeMake<never>(new Overlay(before.unsafeMap, Tracer.ParentSpan.key, span))
  const refsWithSpan = withContext(refsBefore, fiber.id(), context)
  // What setFiberRefs would do, less its re-reading of the refs it caches that did not change (the services, tracer,
  // supervisor and scheduler): only the context and the span read from it are new.
  runtime._fiberRefs = refsWithSpan
  runtime.currentContext = context
  runtime.currentSpan = span
  // An interrupted fiber skips its match handlers (they cost less than Effect.onExit's uninterruptible region, a
  // good part of a traced call): the span then ends with the fiber.
  const interrupted = (exit: Exit.Exit<unknown, unknown>) => span.end(clock.unsafeCurrentTimeNanos(), exit)
  fiber.addObserver(interrupted)
  return (exit) => {
    // Still the newest observer (the usual case): taken off in place, without the copy removeObserver makes.
    const observers = runtime._observers
    if (observers[observers.length - 1] === interrupted) observers.pop()
    else fiber.removeObserver(interrupted)
    // Nothing else changed the fiber's refs meanwhile (the usual case): put the old ones back as they were, without
    // the copy and comparison a write makes.
    if (runtime._fiberRefs === refsWithSpan) {
      runtime._fiberRefs = refsBefore
      runtime.currentContext = before
      runtime.currentSpan = parent
    } else {
      runtime.setFiberRef(FiberRef.currentContext, before)
    }
    span.end(clock.unsafeCurrentTimeNanos(), exit)
  }
}

/**
 * `refs` with the fiber's context replaced: `FiberRefs.updateAs` without its
 * equality check of the old and new contexts (a walk of every service, and a
 * hash cached on the new context), which a new span always fails, and
 * without its copy of the refs (an {@link Overlay}).
 */
const withContext = (
  refs: FiberRefs.FiberRefs,
  fiberId: FiberId.Runtime,
  context: Context.Context<never>
): FiberRefs.FiberRefs => {
  const stack = refs.locals.get(FiberRef.currentContext)
  const entry = [fiberId, context] as const
  return FiberRefs.unsafeMake(
    new Overlay(
      refs.locals,
      FiberRef.currentContext,
      stack === undefined
        ? [entry]
        : Equal.equals(stack[0][0], fiberId)
        ? replaceHead(stack, entry)
        : [entry, ...stack]
    )
  )
}

/** A copy of a non-empty stack with its head replaced (one array, where a spread of a slice makes two). */
const replaceHead = <A>(stack: readonly [A, ...Array<A>], head: A): [A, ...Array<A>] => {
  const copy = stack.slice() as [A, ...Array<A>]
  copy[0] = head
  return copy
}

/**
 * `base` with `key` set to `value`, made in constant time: a read-only view
 * that reads `key` here and every other key from `base`. What the traced
 * call path gives a fiber as its new context and fiber refs, instead of a
 * copy of each Map per call (a 12-entry Map costs ~0.6 µs to copy, a good
 * part of a traced call). Effect never writes a context's or fiber refs'
 * Map once made (it copies, then writes the copy); a write here is a bug.
 */
class Overlay<K, V> implements Map<K, V> {
  constructor(private readonly base: ReadonlyMap<K, V>, private readonly key: K, private readonly value: V) {}
  get(key: K): V | undefined {
    return key === this.key ? this.value : this.base.get(key)
  }
  has(key: K): boolean {
    return key === this.key || this.base.has(key)
  }
  get size(): number {
    return this.base.has(this.key) ? this.base.size : this.base.size + 1
  }
  *entries(): MapIterator<[K, V]> {
    for (const entry of this.base) if (entry[0] !== this.key) yield entry
    yield [this.key, this.value]
  }
  [Symbol.iterator](): MapIterator<[K, V]> {
    return this.entries()
  }
  *keys(): MapIterator<K> {
    for (const [key] of this.entries()) yield key
  }
  *values(): MapIterator<V> {
    for (const [, value] of this.entries()) yield value
  }
  forEach(f: (value: V, key: K, map: Map<K, V>) => void, self?: unknown): void {
    for (const [key, value] of this.entries()) f.call(self, value, key, this)
  }
  set(): this {
    throw new Error("Overlay is read-only")
  }
  delete(): boolean {
    throw new Error("Overlay is read-only")
  }
  clear(): void {
    throw new Error("Overlay is read-only")
  }
  get [Symbol.toStringTag](): string {
    return "Map"
  }
}
// A Map to `instanceof`, without the empty hash table a subclass of Map would allocate per overlay (two per traced
// call); a Map method it does not define throws on it rather than read that empty table.
Object.setPrototypeOf(Overlay.prototype, Map.prototype)

/**
 * The fiber runtime's fields and setter that {@link startChildSpan} uses: the refs, the two of the values it caches
 * from them that derive from the context (`refreshRefCache` in effect/internal/fiberRuntime), and its observers.
 */
interface FiberInternals {
  _fiberRefs: FiberRefs.FiberRefs
  currentContext: Context.Context<never>
  currentSpan: Tracer.AnySpan | undefined
  readonly _observers: Array<(exit: Exit.Exit<unknown, unknown>) => void>
  setFiberRef<X>(ref: FiberRef.FiberRef<X>, value: X): void
}

/**
 * The span of an unsampled HTTP request: a {@link NonRecordingSpan} named as
 * the server span would be, in the trace of an incoming `traceparent` if the
 * request has one.
 *
 * @since 0.1.0
 * @category constructors
 */
export const unsampledSpan = (headers: Readonly<Record<string, string | undefined>>): NonRecordingSpan => {
  const traceparent = headers["traceparent"]
  const match = traceparent === undefined ? null : traceparentPattern.exec(traceparent.trim())
  const parent: Option.Option<Tracer.AnySpan> = match === null
    ? Option.none()
    : Option.some(Tracer.externalSpan({ traceId: match[1]!, spanId: match[2]!, sampled: false }))
  return new NonRecordingSpan("http.server", parent, "server", BigInt(Date.now()) * 1_000_000n)
}
const traceparentPattern = /^[\da-f]{2}-([\da-f]{32})-([\da-f]{16})-[\da-f]{2}$/i

/**
 * The status server path listing traces as JSON {@link TraceSummary}s. Query
 * parameters: `lat_low` and `lat_hi` (a latency bucket: `250us`, `10ms`,
 * `1.5s`, or a bare number of microseconds) and `errs` (`true`: errors only).
 *
 * @since 0.1.0
 * @category constants
 */
export const tracesPath = "/debug/weaver/traces"

/**
 * The status server path returning one trace (`?trace_id=`) as Chrome
 * trace-event JSON, which Perfetto opens (see `Perfetto.encode`).
 *
 * @since 0.1.0
 * @category constants
 */
export const traceFetchPath = "/debug/weaver/tracefetch"

const durationUnits: Readonly<Record<string, number>> = {
  ns: 1e-3,
  us: 1,
  "µs": 1,
  ms: 1e3,
  s: 1e6,
  m: 60e6,
  h: 3600e6
}

/**
 * Parses a latency bound: a Go-style duration (`250us`, `10ms`, `1.5s`) or
 * a bare number of microseconds. `undefined` if it is neither.
 *
 * @since 0.1.0
 * @category encoding
 */
export const parseLatencyMicros = (text: string): number | undefined => {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s|m|h)?\s*$/.exec(text)
  if (match === null) return undefined
  return Number(match[1]) * durationUnits[match[2] ?? "us"]!
}

/**
 * Reads a {@link Query} from the status server's query parameters; a bad
 * latency bound is reported by name.
 *
 * @since 0.1.0
 * @category encoding
 */
export const queryFromParams = (params: URLSearchParams): Query | string => {
  const bound = (name: string): number | undefined | string => {
    const value = params.get(name)
    if (value === null || value === "") return undefined
    const parsed = parseLatencyMicros(value)
    return parsed === undefined
      ? `${name}: expected a duration like 10ms or a number of microseconds, got "${value}"`
      : parsed
  }
  const low = bound("lat_low")
  if (typeof low === "string") return low
  const high = bound("lat_hi")
  if (typeof high === "string") return high
  const errs = params.get("errs")
  const limit = Number(params.get("limit") ?? "100")
  return {
    latencyLowMicros: low,
    latencyHighMicros: high,
    errorsOnly: errs !== null && errs !== "false" && errs !== "0",
    limit: Number.isInteger(limit) && limit > 0 ? limit : 100
  }
}
