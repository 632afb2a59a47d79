/**
 * Application metrics: counters, gauges and histograms, optionally labelled,
 * as Service Weaver's `metrics` package offers them. They are Effect metrics
 * underneath, so every deployer exports them (see `Prometheus`), and they are
 * used inside components as Effects:
 *
 * @example
 * ```ts
 * const addCount = Metrics.counter("add_count", { description: "The number of times Adder.Add has been called" })
 * const addSum = Metrics.histogram("add_sum", { description: "The sums returned", boundaries: [1, 10, 100, 1000] })
 * const halveCount = Metrics.counter("halve_count", { labels: ["parity"] })
 *
 * // inside a method
 * yield* addCount.increment
 * yield* addSum.put(x + y)
 * yield* halveCount.labelled({ parity: x % 2 === 0 ? "even" : "odd" }).increment
 * ```
 *
 * Define metrics once, at module level: a name may be defined only once per
 * process, and a second definition is a defect, as in Service Weaver.
 * Recording does not read Effect's fiber-level metric tags
 * (`Effect.tagMetrics`): a series is exactly its declared labels.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import type * as MetricHook from "effect/MetricHook"
import * as MetricKey from "effect/MetricKey"
import type * as MetricKeyType from "effect/MetricKeyType"
import * as MetricLabel from "effect/MetricLabel"
import * as Schema from "effect/Schema"

/**
 * A metric or label definition that Service Weaver would reject: a bad name,
 * a name defined twice, bad histogram boundaries. Thrown where the metric is
 * defined, usually at module load, so the mistake shows up at once.
 *
 * @since 0.1.0
 * @category errors
 */
export class MetricDefinitionError extends Data.TaggedError("MetricDefinitionError")<{
  readonly metric: string
  readonly reason: string
}> {
  override get message(): string {
    return `metric ${JSON.stringify(this.metric)}: ${this.reason}`
  }
}

/**
 * A number that only goes up, such as the requests served so far.
 *
 * @since 0.1.0
 * @category models
 */
export interface Counter {
  readonly name: string
  /** Adds one. */
  readonly increment: Effect.Effect<void>
  /** Adds `value`; a negative value is a defect. */
  readonly add: (value: number) => Effect.Effect<void>
  /** The current value in this process. */
  readonly value: Effect.Effect<number>
}

/**
 * A number that goes up and down, such as the calls in flight.
 *
 * @since 0.1.0
 * @category models
 */
export interface Gauge {
  readonly name: string
  readonly set: (value: number) => Effect.Effect<void>
  readonly add: (value: number) => Effect.Effect<void>
  readonly sub: (value: number) => Effect.Effect<void>
  /** The current value in this process. */
  readonly value: Effect.Effect<number>
}

/**
 * A distribution of values over fixed buckets, such as request latencies.
 *
 * @since 0.1.0
 * @category models
 */
export interface Histogram {
  readonly name: string
  /** Records one value. */
  readonly put: (value: number) => Effect.Effect<void>
}

/**
 * A metric with labels: one series per distinct label values. Service
 * Weaver's `CounterMap` / `GaugeMap` / `HistogramMap`, whose `Get` is
 * `labelled` here.
 *
 * @since 0.1.0
 * @category models
 */
export interface Labelled<M, L> {
  readonly name: string
  /** The series for these label values, created on first use and cached. */
  readonly labelled: (labels: L) => M
}

/**
 * How a labelled metric names its labels: a list of label names (values are
 * strings), or a `Schema.Struct` whose fields are the labels, with values
 * that encode to strings, numbers or booleans.
 *
 * @since 0.1.0
 * @category models
 */
export type LabelSpec = ReadonlyArray<string> | Schema.Struct<any>

/**
 * The label values a {@link LabelSpec} asks for: `never` (so the metric
 * cannot be used) for a Schema whose fields do not encode to strings,
 * numbers or booleans, or that needs services.
 *
 * @since 0.1.0
 * @category models
 */
export type LabelsOf<S> = S extends ReadonlyArray<infer K extends string> ? { readonly [P in K]: string }
  : S extends Schema.Struct<any> ?
    [Schema.Schema.Encoded<S>] extends [{ readonly [label: string]: string | number | boolean }] ?
      [Schema.Schema.Context<S>] extends [never] ? Schema.Schema.Type<S> : never
    : never
  : never

/**
 * Options shared by every metric.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The help text shown next to the metric, e.g. in the Prometheus exposition. */
  readonly description?: string | undefined
}

/**
 * Options of a histogram. `boundaries` are the finite upper bounds of the
 * buckets, strictly increasing; a `+Inf` bucket is always added.
 *
 * @since 0.1.0
 * @category models
 */
export interface HistogramOptions extends Options {
  readonly boundaries: ReadonlyArray<number>
}

/**
 * Bucket boundaries for histograms of non-negative values, as Service
 * Weaver's `NonNegativeBuckets`: 1, 2, 5, 10, 20, 50, … up to 5e9. The
 * generated method and HTTP metrics use them.
 *
 * @since 0.1.0
 * @category constants
 */
export const nonNegativeBoundaries: ReadonlyArray<number> = Array.from(
  { length: 10 },
  (_, i) => [1, 2, 5].map((m) => m * 10 ** i)
).flat()

const namePattern = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const labelPattern = /^[a-zA-Z_][a-zA-Z0-9_]*$/
const reservedPrefix = "serviceweaver_"

const defined = new Set<string>()

const fail = (metric: string, reason: string): never => {
  throw new MetricDefinitionError({ metric, reason })
}

const checkName = (name: string, generated: boolean): void => {
  if (!namePattern.test(name)) {
    fail(name, `invalid name: a metric name must match ${namePattern.source}`)
  }
  if (!generated && name.startsWith(reservedPrefix)) {
    fail(name, `names starting with "${reservedPrefix}" are reserved for the metrics Service Weaver generates`)
  }
  if (defined.has(name)) {
    fail(name, "defined twice: each metric name may be defined only once per process")
  }
}

/**
 * Takes a metric name, or fails as {@link counter} does for a bad or taken
 * one. For metrics defined with Effect's `Metric` directly, such as the
 * generated `serviceweaver_*` ones.
 *
 * @internal
 */
export const reserve = (name: string, options?: { readonly generated?: boolean }): void => {
  checkName(name, options?.generated === true)
  defined.add(name)
}

/** Checks a definition completely before taking its name, so that a rejected one takes nothing. */
const define = <A>(name: string, make: () => A): A => {
  checkName(name, false)
  const metric = make()
  defined.add(name)
  return metric
}

const labelNames = (metric: string, spec: LabelSpec, histogram: boolean): ReadonlyArray<string> => {
  const names = Array.isArray(spec) ? spec as ReadonlyArray<string> : Object.keys((spec as Schema.Struct<any>).fields)
  const seen = new Set<string>()
  for (const label of names) {
    if (!labelPattern.test(label) || label.startsWith("__")) {
      fail(metric, `invalid label name ${JSON.stringify(label)}: it must match ${labelPattern.source}`)
    }
    if (label.startsWith(reservedPrefix)) {
      fail(metric, `label ${JSON.stringify(label)}: "${reservedPrefix}" labels are added by Service Weaver`)
    }
    if (histogram && label === "le") fail(metric, `label "le" is reserved for histogram buckets`)
    if (seen.has(label)) fail(metric, `label ${JSON.stringify(label)} is listed twice`)
    seen.add(label)
  }
  return names
}

type AnyHook = MetricHook.MetricHook<any, any>
type AnyKey = MetricKey.MetricKey<MetricKeyType.MetricKeyType<any, any>>

/**
 * Builds the labelled flavour of a metric: each distinct set of label values
 * gets its hook once, so recording costs one map lookup at most.
 */
const labelledOf = <M>(
  name: string,
  key: AnyKey,
  spec: LabelSpec,
  histogram: boolean,
  make: (hook: AnyHook) => M
): Labelled<M, any> => {
  const names = labelNames(name, spec, histogram)
  const encode = Array.isArray(spec)
    ? undefined
    : Schema.encodeSync(spec as unknown as Schema.Schema<any, Record<string, unknown>>)
  const series = new Map<string, M>()
  return {
    name,
    labelled: (labels: Record<string, unknown>) => {
      let id = ""
      for (const label of names) id += `${String(labels[label])}\u0000`
      let metric = series.get(id)
      if (metric === undefined) {
        const encoded: Record<string, unknown> = encode === undefined ? labels : encode(labels)
        const tags = names.map((label) => {
          const value = encoded[label]
          if (value === undefined) fail(name, `label ${JSON.stringify(label)} has no value`)
          return MetricLabel.make(label, String(value))
        })
        metric = make(Metric.globalMetricRegistry.get(MetricKey.taggedWithLabels(key, tags)) as AnyHook)
        series.set(id, metric)
      }
      return metric
    }
  }
}

const hookOf = (key: AnyKey): AnyHook => Metric.globalMetricRegistry.get(key) as AnyHook

const makeCounter = (name: string) => (hook: AnyHook): Counter => ({
  name,
  increment: Effect.sync(() => hook.update(1)),
  add: (value) =>
    value >= 0
      ? Effect.sync(() => hook.update(value))
      : Effect.dieMessage(`counter ${name}: cannot add ${value}, counters only go up`),
  value: Effect.sync(() => (hook.get() as { readonly count: number }).count)
})

const makeGauge = (name: string) => (hook: AnyHook): Gauge => ({
  name,
  set: (value) => Effect.sync(() => hook.update(value)),
  add: (value) => Effect.sync(() => hook.modify(value)),
  sub: (value) => Effect.sync(() => hook.modify(-value)),
  value: Effect.sync(() => (hook.get() as { readonly value: number }).value)
})

const makeHistogram = (name: string) => (hook: AnyHook): Histogram => ({
  name,
  put: (value) => Effect.sync(() => hook.update(value))
})

/**
 * Defines a counter. With `labels`, returns a {@link Labelled} counter.
 *
 * @example
 * ```ts
 * const halveCount = Metrics.counter("halve_count", {
 *   description: "The number of values that have been halved",
 *   labels: Schema.Struct({ parity: Schema.Literal("odd", "even") })
 * })
 * yield* halveCount.labelled({ parity: "odd" }).increment
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const counter: {
  (name: string, options?: Options): Counter
  <const L extends LabelSpec>(
    name: string,
    options: Options & { readonly labels: L }
  ): Labelled<Counter, LabelsOf<L>>
} = (name: string, options?: Options & { readonly labels?: LabelSpec }): any =>
  define(name, () => {
    const key = MetricKey.counter(name, { description: options?.description, incremental: true })
    return options?.labels === undefined
      ? makeCounter(name)(hookOf(key))
      : labelledOf(name, key, options.labels, false, makeCounter(name))
  })

/**
 * Defines a gauge. With `labels`, returns a {@link Labelled} gauge.
 *
 * @since 0.1.0
 * @category constructors
 */
export const gauge: {
  (name: string, options?: Options): Gauge
  <const L extends LabelSpec>(
    name: string,
    options: Options & { readonly labels: L }
  ): Labelled<Gauge, LabelsOf<L>>
} = (name: string, options?: Options & { readonly labels?: LabelSpec }): any =>
  define(name, () => {
    const key = MetricKey.gauge(name, { description: options?.description })
    return options?.labels === undefined
      ? makeGauge(name)(hookOf(key))
      : labelledOf(name, key, options.labels, false, makeGauge(name))
  })

const boundariesOf = (name: string, boundaries: ReadonlyArray<number>) => {
  if (boundaries.length === 0) fail(name, "a histogram needs at least one bucket boundary")
  boundaries.forEach((bound, i) => {
    if (!Number.isFinite(bound)) fail(name, `bucket boundary ${bound} is not a finite number`)
    if (i > 0 && bound <= boundaries[i - 1]!) {
      fail(name, `bucket boundaries must be strictly increasing, got ${boundaries[i - 1]} then ${bound}`)
    }
  })
  return MetricBoundaries.fromIterable(boundaries)
}

/**
 * Defines a histogram over the given bucket boundaries. With `labels`,
 * returns a {@link Labelled} histogram.
 *
 * @since 0.1.0
 * @category constructors
 */
export const histogram: {
  (name: string, options: HistogramOptions): Histogram
  <const L extends LabelSpec>(
    name: string,
    options: HistogramOptions & { readonly labels: L }
  ): Labelled<Histogram, LabelsOf<L>>
} = (name: string, options: HistogramOptions & { readonly labels?: LabelSpec }): any =>
  define(name, () => {
    const key = MetricKey.histogram(name, boundariesOf(name, options.boundaries), options.description)
    return options.labels === undefined
      ? makeHistogram(name)(hookOf(key))
      : labelledOf(name, key, options.labels, true, makeHistogram(name))
  })
