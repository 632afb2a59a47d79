/**
 * The simulator delivers calls one at a time through its scheduler and cannot carry streaming methods: calling one
 * is a clear failure of the op naming the transport and the method, never a hang. A search in worker threads
 * reports the same first failure as a search in one thread, and a module that lacks the workload is a clear failure.
 */
import { Component, RemoteCallError, Weaver } from "@effect-weaver/core"
import { weavertest } from "@effect-weaver/weavertest"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Schema, Stream } from "effect"
import { safeWorkload, workload } from "./fixtures/sim.js"

class Counter extends Component.Tag("sim/Counter")<Counter>()({
  upTo: Component.method({ payload: Schema.Number, success: Schema.Number, stream: true })
}) {}

const CounterImpl = Component.implement(Counter, Effect.succeed({ upTo: (n: number) => Stream.range(1, n) }))

const { sim } = weavertest

describe("the simulator and streaming methods", () => {
  it.effect("a streaming call is a violation naming the sim transport and the method", () =>
    Effect.gen(function*() {
      const execution = yield* sim.run(
        sim.workload({
          app: Weaver.app({ components: [CounterImpl] }),
          ops: { count: sim.op([], () => Effect.flatMap(Counter, (counter) => Stream.runCollect(counter.upTo(3)))) }
        }),
        { seed: 1, ops: 1, replicas: 1, failureRate: 0, yieldRate: 0 }
      )
      assert.isDefined(execution.violation)
      assert.include(execution.violation!.error, "the sim transport cannot carry streaming methods")
      assert.include(execution.violation!.error, "sim/Counter.upTo")
    }))
})

const Numbers = Schema.mutable(Schema.Array(Schema.Number))

class Keeper extends Component.Tag("sim/Keeper")<Keeper>()({
  put: Component.method({ payload: Numbers }),
  get: Component.method({ payload: Schema.Void, success: Numbers }),
  bad: Component.method({ payload: Schema.Void, success: Schema.Number })
}) {}

// Keeps the very array it was given and hands out the very array it keeps: only the wire copies them.
const KeeperImpl = Component.implement(
  Keeper,
  Effect.sync(() => {
    let kept: Array<number> = []
    return {
      put: (numbers) => Effect.sync(() => void (kept = numbers)),
      get: () => Effect.sync(() => kept),
      bad: () => Effect.succeed("not a number" as unknown as number)
    }
  })
)

class Shared extends Schema.TaggedError<Shared>()("Shared", { seen: Numbers }) {}

describe("calls in the simulator cross as over the wire", () => {
  const keeper = (run: weavertest.sim.Op["run"]) =>
    sim.run(
      sim.workload({ app: Weaver.app({ components: [KeeperImpl] }), ops: { run: { args: [], run } } }),
      { seed: 1, ops: 1, replicas: 1, failureRate: 0, yieldRate: 0 }
    )

  it.effect("a component never shares an array with its caller, in either direction", () =>
    Effect.gen(function*() {
      const execution = yield* keeper(() =>
        Effect.gen(function*() {
          const k = yield* Keeper
          const mine = [1, 2]
          yield* k.put(mine)
          mine.push(3)
          const got = yield* k.get()
          got.push(4)
          const seen = yield* k.get()
          if (seen.length !== 2) return yield* new Shared({ seen })
        })
      )
      assert.isUndefined(execution.violation, execution.violation?.error)
      assert.include(sim.mermaid(execution), "put([1,2])")
    }))

  it.effect("an op that throws instead of returning an Effect is that op's violation, and the next run is fine", () =>
    Effect.gen(function*() {
      const thrown = yield* keeper(() => {
        throw new Error("not an Effect")
      })
      assert.strictEqual(thrown.violation?.op, 1)
      assert.include(thrown.violation?.error ?? "", "not an Effect")
      const after = yield* keeper(() => Effect.flatMap(Keeper, (k) => k.get()))
      assert.isUndefined(after.violation, after.violation?.error)
    }))

  it.effect("a result its success schema rejects is a RemoteCallError with reason Handler", () =>
    Effect.gen(function*() {
      let failure: unknown
      const execution = yield* keeper(() =>
        Effect.flatMap(Keeper, (k) => Effect.flip(k.bad())).pipe(
          Effect.map((error) => {
            failure = error
          })
        )
      )
      assert.isUndefined(execution.violation, execution.violation?.error)
      assert.instanceOf(failure, RemoteCallError)
      assert.strictEqual((failure as RemoteCallError).reason, "Handler")
      assert.include((failure as RemoteCallError).detail, "result does not match the success schema")
    }))
})

describe("a search in worker threads", () => {
  const module = new URL("./fixtures/sim.ts", import.meta.url).href

  it.live(
    "reports the first failure in the search's order, as a search in one thread does",
    () =>
      Effect.gen(function*() {
        const options: weavertest.sim.SearchOptions = { budget: "20 seconds", seed: 7, maxOps: 4, maxReplicas: 2 }
        const alone = yield* sim.search(workload, options)
        const threaded = yield* sim.search(workload, { ...options, workers: { module, count: 2 } })
        assert.isDefined(alone.failing)
        assert.isDefined(threaded.failing, `no failure in ${threaded.executions} executions`)
        // The first failing execution from seed 7 is the 17th candidate: a worker's (this thread runs every third).
        assert.deepStrictEqual(alone.found, { seed: 23, ops: 3, replicas: 2, failureRate: 0.05, yieldRate: 0.5 })
        assert.deepStrictEqual(threaded.found, alone.found)
        assert.deepStrictEqual(threaded.failing!.options, alone.failing!.options)
        assert.strictEqual(sim.mermaid(threaded.failing!), sim.mermaid(alone.failing!))
        assert.include(threaded.failing!.violation?.error ?? "", "Overdrawn")
      }),
    120_000
  )

  it.live(
    "every thread runs its share of the executions",
    () =>
      Effect.gen(function*() {
        // Long enough for a worker to load its bundle (built from the TypeScript sources here) on a busy machine.
        const result = yield* sim.search(safeWorkload, { budget: "8 seconds", workers: { module, count: 1 } })
        assert.isUndefined(result.failing)
        assert.strictEqual(result.threads?.length, 2)
        for (const executions of result.threads!) assert.isAbove(executions, 0, `threads: ${result.threads}`)
        assert.strictEqual(result.threads!.reduce((a, b) => a + b, 0), result.executions)
      }),
    120_000
  )

  it.live(
    "a module without the workload is a failure naming the module and what it lacks",
    () =>
      Effect.gen(function*() {
        const exit = yield* sim.search(workload, {
          budget: "5 seconds",
          workers: { module, export: "nothing", count: 1 }
        }).pipe(Effect.exit)
        assert.isTrue(Exit.isFailure(exit))
        const message = Exit.isFailure(exit) ? Cause.pretty(exit.cause) : ""
        assert.include(message, "fixtures/sim.ts")
        assert.include(message, "the module exports no workload named nothing")
      }),
    120_000
  )
})
