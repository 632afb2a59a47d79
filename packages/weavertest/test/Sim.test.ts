/**
 * The simulator delivers calls one at a time through its scheduler and cannot carry streaming methods: calling one
 * is a clear failure of the op naming the transport and the method, never a hang.
 */
import { Component, Weaver } from "@effect-weaver/core"
import { weavertest } from "@effect-weaver/weavertest"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema, Stream } from "effect"

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
