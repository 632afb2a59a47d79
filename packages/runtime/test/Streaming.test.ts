/**
 * Streaming methods (`stream: true`) through the call pipeline, co-located: the handler's own Stream reaches the
 * caller (never encoded), a deadline bounds the whole stream, a consumer that stops early stops the producer, and
 * the metrics count one call per stream.
 */
import { Component, Weaver } from "@effect-weaver/core"
import { MethodMetrics, RemoteCallError } from "@effect-weaver/runtime"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Chunk, Effect, Exit, Metric, Schema, Stream } from "effect"
import { runLocal } from "./utils/local.js"

class Box extends Schema.Class<Box>("Box")({ n: Schema.Number }) {}

class Failed extends Schema.TaggedError<Failed>()("Failed", { at: Schema.Number }) {}

class Streamer extends Component.Tag("streaming/Streamer")<Streamer>()({
  count: Component.method({ payload: Schema.Number, success: Schema.Number, stream: true }),
  boxes: Component.method({ success: Box, stream: true }),
  failAt: Component.method({ payload: Schema.Number, success: Schema.Number, error: Failed, stream: true }),
  forever: Component.method({ success: Schema.Number, stream: true }),
  slow: Component.method({ success: Schema.Number, stream: true, timeout: "150 millis" }),
  made: Component.method({ success: Schema.Number, stream: true })
}) {}

const boxes = [new Box({ n: 1 }), new Box({ n: 2 })]
let produced = 0
let stopped = 0

const StreamerImpl = Component.implement(
  Streamer,
  Effect.succeed({
    count: (n) => Stream.range(1, n, 7),
    boxes: () => Stream.fromIterable(boxes),
    failAt: (n) => Stream.concat(Stream.range(1, n - 1), Stream.fail(new Failed({ at: n }))),
    forever: () =>
      Stream.iterate(0, (n) => n + 1).pipe(
        Stream.rechunk(1),
        // A producer that never suspends would keep the event loop (and every timer) from running at all.
        Stream.tap(() => Effect.zipRight(Effect.sleep(0), Effect.sync(() => produced++))),
        Stream.ensuring(Effect.sync(() => stopped++))
      ),
    slow: () => Stream.repeatEffect(Effect.as(Effect.sleep("20 millis"), 1)),
    made: () => Effect.succeed(7)
  })
)

const app = Weaver.app({ components: [StreamerImpl] })

const labels = (method: string) => ({ caller: "main", component: "streaming/Streamer", method, remote: false })
const countOf = (method: string) =>
  Metric.value(MethodMetrics.count.pipe(Metric.taggedWithLabels(MethodMetrics.labels(labels(method))))).pipe(
    Effect.map((state) => state.count)
  )
const errorsOf = (method: string) =>
  Metric.value(MethodMetrics.errorCount.pipe(Metric.taggedWithLabels(MethodMetrics.labels(labels(method))))).pipe(
    Effect.map((state) => state.count)
  )

describe("streaming methods, co-located", () => {
  it.live("elements arrive in order; one call per stream in the metrics", () =>
    runLocal(app, () =>
      Effect.gen(function*() {
        const streamer = yield* Streamer
        const before = yield* countOf("count")
        const all = yield* Stream.runCollect(streamer.count(1000))
        assert.deepStrictEqual(Chunk.toReadonlyArray(all), Array.from({ length: 1000 }, (_, i) => i + 1))
        assert.strictEqual((yield* countOf("count")) - before, 1)
        assert.strictEqual(Chunk.size(yield* Stream.runCollect(streamer.count(0))), 0)
        assert.strictEqual((yield* countOf("count")) - before, 2)
      })))

  it.live("a co-located stream is the handler's own, never encoded: the same instances", () =>
    runLocal(app, () =>
      Effect.gen(function*() {
        const streamer = yield* Streamer
        const got = Chunk.toReadonlyArray(yield* Stream.runCollect(streamer.boxes()))
        assert.strictEqual(got[0], boxes[0])
        assert.strictEqual(got[1], boxes[1])
      })))

  it.live("a declared error ends the stream typed, after the elements before it; counted as one error", () =>
    runLocal(app, () =>
      Effect.gen(function*() {
        const streamer = yield* Streamer
        const seen: Array<number> = []
        const errors = yield* errorsOf("failAt")
        const error = yield* streamer.failAt(4).pipe(
          Stream.runForEach((n) => Effect.sync(() => seen.push(n))),
          Effect.flip
        )
        assert.deepStrictEqual(seen, [1, 2, 3])
        assert.instanceOf(error, Failed)
        assert.strictEqual((error as Failed).at, 4)
        assert.strictEqual((yield* errorsOf("failAt")) - errors, 1)
      })))

  it.live("a consumer that takes 10 of an infinite stream stops the producer; not an error", () =>
    runLocal(app, () =>
      Effect.gen(function*() {
        const streamer = yield* Streamer
        const errors = yield* errorsOf("forever")
        const before = stopped
        const ten = yield* Stream.runCollect(Stream.take(streamer.forever(), 10))
        assert.deepStrictEqual(Chunk.toReadonlyArray(ten), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
        assert.strictEqual(stopped, before + 1, "the producer's finalizer ran")
        const at = produced
        yield* Effect.sleep("30 millis")
        assert.strictEqual(produced, at, "the producer stopped")
        assert.strictEqual((yield* errorsOf("forever")) - errors, 0)
      })))

  it.live("a deadline bounds the whole stream: Timeout, not a hang", () =>
    runLocal(app, () =>
      Effect.gen(function*() {
        const streamer = yield* Streamer
        const start = Date.now()
        let seen = 0
        const error = yield* streamer.slow().pipe(Stream.runForEach(() => Effect.sync(() => seen++)), Effect.flip)
        assert.instanceOf(error, RemoteCallError)
        assert.strictEqual((error as RemoteCallError).reason, "Timeout")
        assert.isAbove(seen, 0)
        assert.isBelow(Date.now() - start, 1000)
        // A deadline in force (Component.withTimeout around the run) bounds it too.
        const earlier = yield* streamer.forever().pipe(
          Stream.runDrain,
          Component.withTimeout("50 millis"),
          Effect.flip
        )
        assert.strictEqual((earlier as RemoteCallError).reason, "Timeout")
      })))

  it.live("a handler's Effect is a stream of one element, as in Effect", () =>
    runLocal(app, () =>
      Effect.gen(function*() {
        const streamer = yield* Streamer
        assert.deepStrictEqual(Chunk.toReadonlyArray(yield* Stream.runCollect(streamer.made())), [7])
      })))

  it.live("a handler that returns no Stream is a defect naming the method", () => {
    class Bad extends Component.Tag("streaming/Bad")<Bad>()({
      items: Component.method({ success: Schema.Number, stream: true })
    }) {}
    const BadImpl = Component.implement(Bad, Effect.succeed({ items: () => 42 as any }))
    return runLocal(Weaver.app({ components: [BadImpl] }), () =>
      Effect.gen(function*() {
        const bad = yield* Bad
        const exit = yield* Effect.exit(Stream.runDrain(bad.items()))
        assert.isTrue(Exit.isFailure(exit))
        if (Exit.isFailure(exit)) {
          assert.include(Cause.pretty(exit.cause), "streaming method streaming/Bad.items returned number")
        }
      }))
  })
})
