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
 * fiber already has one; `Effect.withSpan` in application code just works.
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
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import { dual } from "effect/Function"
import * as GlobalValue from "effect/GlobalValue"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"

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

/**
 * A batch of spans, as sent from a weavelet to its deployer.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Spans = Schema.Array(Span)

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
export class TraceStore extends Context.Tag("@effect-weaver/core/Tracing/TraceStore")<TraceStore, Store>() {}

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
  // Map iteration order is insertion order: the first key is the oldest trace.
  const traces = new Map<string, Array<Span>>()
  let spanCount = 0
  const evict = () => {
    for (const [traceId, spans] of traces) {
      if (traces.size <= maxTraces && spanCount <= maxSpans) return
      if (traces.size === 1) {
        // One trace larger than the store: keep its newest spans.
        const drop = spanCount - maxSpans
        spans.splice(0, drop)
        spanCount -= drop
        return
      }
      traces.delete(traceId)
      spanCount -= spans.length
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
          list = []
          traces.set(span.traceId, list)
        }
        list.push(span)
        spanCount++
      }
      evict()
    },
    traces: (query) => {
      const limit = query?.limit ?? 100
      const low = query?.latencyLowMicros ?? 0
      const high = query?.latencyHighMicros ?? Infinity
      const out: Array<TraceSummary> = []
      for (const [traceId, spans] of traces) {
        const summary = summarize(traceId, spans)
        if (summary.durationMicros < low || summary.durationMicros >= high) continue
        if (query?.errorsOnly && !summary.error) continue
        out.push(summary)
      }
      out.sort((a, b) => b.startMicros - a.startMicros)
      return out.slice(0, limit)
    },
    trace: (traceId) => [...(traces.get(traceId) ?? [])].sort((a, b) => a.startMicros - b.startMicros),
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
  | Promise<[typeof OtelTracerModule, typeof OtelResourceModule, typeof ResourcesModule, typeof TraceBaseModule]>
  | undefined
const loadSdk = () =>
  sdk ??= Promise.all([
    import("@effect/opentelemetry/Tracer"),
    import("@effect/opentelemetry/Resource"),
    import("@opentelemetry/resources"),
    import("@opentelemetry/sdk-trace-base")
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

/** Spans buffered for `onSpans` beyond this are dropped (oldest first): a slow sink must not grow memory. */
const maxPending = 10_000

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
    const local: SpanProcessor = {
      onStart: () => {},
      onEnd: (span) => {
        const converted = fromReadableSpan(span, origin)
        store.add([converted])
        if (onSpans !== undefined) {
          pending.push(converted)
          if (pending.length > maxPending) pending.splice(0, pending.length - maxPending)
        }
      },
      forceFlush: () => Promise.resolve(),
      shutdown: () => Promise.resolve()
    }
    const processors: Array<SpanProcessor> = [local, ...(options.spanProcessors ?? [])]
    const endpoint = options.otlpEndpoint === false ? undefined : options.otlpEndpoint ?? otlpEndpointFromEnv()
    const modules = yield* Effect.promise(loadSdk)
    const [OtelTracer, OtelResource, Resources, { AlwaysOnSampler, BasicTracerProvider, BatchSpanProcessor }] = modules
    if (endpoint !== undefined) {
      const { OTLPTraceExporter } = yield* Effect.promise(() => import("@opentelemetry/exporter-trace-otlp-http"))
      processors.push(new BatchSpanProcessor(new OTLPTraceExporter({ url: endpoint })))
    }
    if (onSpans !== undefined) {
      const flush = Effect.suspend(() => {
        if (pending.length === 0) return Effect.void
        const batch = pending
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
    const tracer = OtelTracer.layer.pipe(
      Layer.provide(Layer.succeed(OtelResource.Resource, resource)),
      Layer.provide(Layer.succeed(OtelTracer.OtelTracerProvider, provider))
    )
    return Layer.merge(Layer.succeed(TraceStore, store), Layer.discard(tracer))
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
 * A sampler for one listener: given a request's headers, whether to trace it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeSampler = (
  sampling: Sampling,
  options?: { readonly now?: () => number; readonly random?: () => number }
): (headers: Readonly<Record<string, string | undefined>>) => boolean => {
  const now = options?.now ?? Date.now
  const random = options?.random ?? Math.random
  let next = 0
  return (headers) => {
    if (sampledParent(headers)) return true
    if (sampling === "always") return true
    if (sampling === "never") return false
    if (typeof sampling === "number") return random() < sampling
    const time = now()
    if (time < next) return false
    next = time + random() * 2000
    return true
  }
}

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
