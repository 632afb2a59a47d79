import { Metrics } from "@effect-weaver/core"
import { Prometheus } from "@effect-weaver/runtime"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Schema } from "effect"

/** The exposition of the metrics whose name matches, without the header. */
const exposition = (filter: RegExp) =>
  Prometheus.encode(Prometheus.snapshot(), { filter }).slice(Prometheus.header().length)

const definitionError = (define: () => unknown): Metrics.MetricDefinitionError => {
  try {
    define()
  } catch (error) {
    assert.instanceOf(error, Metrics.MetricDefinitionError)
    return error as Metrics.MetricDefinitionError
  }
  return assert.fail("the definition was accepted")
}

describe("Metrics", () => {
  it.effect("counters, gauges and histograms with labels appear in the exposition", () =>
    Effect.gen(function*() {
      const adds = Metrics.counter("mt_add_count", { description: "The number of times Adder.Add has been called" })
      const halves = Metrics.counter("mt_halve_count", { labels: ["parity"] })
      const inflight = Metrics.gauge("mt_add_concurrent", { description: "Concurrent Adder.Add calls" })
      const sums = Metrics.histogram("mt_add_sum", {
        description: "The sums returned by Adder.Add",
        boundaries: [1, 10, 100],
        labels: Schema.Struct({ even: Schema.Boolean })
      })
      yield* adds.increment
      yield* adds.add(2)
      yield* inflight.add(3)
      yield* inflight.sub(1)
      yield* halves.labelled({ parity: "odd" }).increment
      yield* halves.labelled({ parity: "even" }).add(4)
      yield* halves.labelled({ parity: "odd" }).increment
      for (const sum of [0, 4, 6, 50, 1000]) yield* sums.labelled({ even: sum % 2 === 0 }).put(sum)
      assert.strictEqual(yield* adds.value, 3)
      assert.strictEqual(yield* inflight.value, 2)
      assert.strictEqual(
        exposition(/^mt_/),
        `# HELP mt_add_concurrent Concurrent Adder.Add calls
# TYPE mt_add_concurrent gauge
mt_add_concurrent 2

# HELP mt_add_count The number of times Adder.Add has been called
# TYPE mt_add_count counter
mt_add_count 3

# HELP mt_add_sum The sums returned by Adder.Add
# TYPE mt_add_sum histogram
mt_add_sum_bucket{even="true",le="1"} 1
mt_add_sum_bucket{even="true",le="10"} 3
mt_add_sum_bucket{even="true",le="100"} 4
mt_add_sum_bucket{even="true",le="+Inf"} 5
mt_add_sum_sum{even="true"} 1060
mt_add_sum_count{even="true"} 5

# TYPE mt_halve_count counter
mt_halve_count{parity="even"} 4
mt_halve_count{parity="odd"} 2

`
      )
    }))

  it.effect("an unlabelled metric shows up at zero before it is used; gauges can be set", () =>
    Effect.gen(function*() {
      Metrics.counter("mt_unused_count")
      const temperature = Metrics.gauge("mt_temperature", { labels: ["room"] })
      yield* temperature.labelled({ room: "a" }).set(21.5)
      yield* temperature.labelled({ room: "a" }).set(-3)
      assert.strictEqual(exposition(/^mt_unused_count$/), "# TYPE mt_unused_count counter\nmt_unused_count 0\n\n")
      assert.strictEqual(
        exposition(/^mt_temperature$/),
        "# TYPE mt_temperature gauge\nmt_temperature{room=\"a\"} -3\n\n"
      )
    }))

  it.effect("Schema labels are encoded: literals, booleans, numbers and transformations", () =>
    Effect.gen(function*() {
      const requests = Metrics.counter("mt_requests", {
        labels: Schema.Struct({
          method: Schema.Literal("GET", "POST"),
          cached: Schema.Boolean,
          shard: Schema.Number,
          size: Schema.compose(Schema.NumberFromString, Schema.Number)
        })
      })
      yield* requests.labelled({ method: "GET", cached: false, shard: 3, size: 17 }).increment
      const listy = Metrics.counter("mt_listy", { labels: Schema.Struct({ tags: Schema.Array(Schema.String) }) })
      // @ts-expect-error label values must encode to strings, numbers or booleans
      const typeOnly = () => listy.labelled({ tags: ["a"] })
      assert.isFunction(typeOnly)
      assert.strictEqual(
        exposition(/^mt_requests$/),
        "# TYPE mt_requests counter\nmt_requests{cached=\"false\",method=\"GET\",shard=\"3\",size=\"17\"} 1\n\n"
      )
    }))

  it("rejects bad names, duplicates, reserved names and bad labels where the metric is defined", () => {
    Metrics.counter("mt_defined_once")
    assert.strictEqual(
      definitionError(() => Metrics.gauge("mt_defined_once")).message,
      `metric "mt_defined_once": defined twice: each metric name may be defined only once per process`
    )
    assert.include(definitionError(() => Metrics.counter("add-count")).message, `metric "add-count": invalid name`)
    assert.include(definitionError(() => Metrics.counter("9lives")).message, "invalid name")
    assert.include(definitionError(() => Metrics.counter("")).message, "invalid name")
    assert.include(
      definitionError(() => Metrics.counter("serviceweaver_method_count")).message,
      "reserved for the metrics Service Weaver generates"
    )
    assert.include(
      definitionError(() => Metrics.counter("mt_bad_label", { labels: ["in-flight"] })).message,
      `invalid label name "in-flight"`
    )
    assert.include(
      definitionError(() => Metrics.counter("mt_dup_label", { labels: ["a", "a"] })).message,
      `label "a" is listed twice`
    )
    assert.include(
      definitionError(() => Metrics.counter("mt_auto_label", { labels: ["serviceweaver_node"] })).message,
      "labels are added by Service Weaver"
    )
    assert.include(
      definitionError(() => Metrics.histogram("mt_le", { boundaries: [1], labels: ["le"] })).message,
      `label "le" is reserved`
    )
    assert.include(
      definitionError(() => Metrics.histogram("mt_unsorted", { boundaries: [1, 5, 5] })).message,
      "strictly increasing, got 5 then 5"
    )
    assert.include(
      definitionError(() => Metrics.histogram("mt_infinite", { boundaries: [1, Infinity] })).message,
      "Infinity is not a finite number"
    )
    assert.include(definitionError(() => Metrics.histogram("mt_empty", { boundaries: [] })).message, "at least one")
    // A rejected definition does not take the name.
    Metrics.counter("mt_bad_label")
  })

  it.effect("adding a negative value to a counter is a defect and leaves it unchanged", () =>
    Effect.gen(function*() {
      const counter = Metrics.counter("mt_negative")
      yield* counter.add(5)
      const exit = yield* Effect.exit(counter.add(-1))
      assert.isTrue(Exit.isFailure(exit) && Cause.isDie(exit.cause))
      assert.include(Cause.pretty((exit as Exit.Failure<never, never>).cause), "counters only go up")
      assert.strictEqual(yield* counter.value, 5)
    }))
})
