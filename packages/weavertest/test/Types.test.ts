/**
 * The types of the runners (checked by `npm run check`, which type-checks the tests): an app that uses a component
 * nobody implements does not compile in `runner.test`, `runner.run` or `runner.prop`, unless the runner fakes it.
 */
import { Component, Weaver } from "@effect-weaver/core"
import { weavertest } from "@effect-weaver/weavertest"
import { describe, expectTypeOf, it } from "@effect/vitest"
import { Effect, Schema } from "effect"

class Clock extends Component.Tag("types/Clock")<Clock>()({
  now: Component.method({ success: Schema.String })
}) {}

class Greeter extends Component.Tag("types/Greeter")<Greeter>()({
  greet: Component.method({ payload: Schema.String, success: Schema.String })
}) {}

const GreeterImpl = Component.implement(
  Greeter,
  Effect.map(Clock, (clock) => ({ greet: (name: string) => Effect.map(clock.now(), (now) => `${name} at ${now}`) }))
)

// Greeter calls Clock, which nobody implements.
const partial = Weaver.app({ components: [GreeterImpl] })
const body = Effect.flatMap(Greeter, (greeter) => greeter.greet("Ada"))
const noon = weavertest.fake(Clock, { now: () => Effect.succeed("12:00") })

// Registering tests is a side effect: these are only type-checked, never called.
const typeChecks = () => {
  for (const runner of weavertest.allRunners()) {
    // @ts-expect-error: App<Clock> is not an App<never>: Clock is neither implemented nor faked (TypeScript prints
    // "Argument of type 'App<Clock, never>' is not assignable to parameter of type 'App<never, any>' … Type 'Clock' is
    // not assignable to type 'never'.")
    runner.test("greets", partial, body)
    // @ts-expect-error: the same for run
    runner.run(partial, body)
    // @ts-expect-error: and for prop
    runner.prop("greets", partial, [Schema.String], () => body)
    // Faking the missing component makes the app complete.
    runner.with({ fakes: [noon] }).test("greets", partial, body)
  }
  for (const runner of weavertest.allRunners({ fakes: [noon] })) {
    runner.test("greets", partial, body)
    runner.prop("greets", partial, [Schema.String], () => body)
    // Replacing the fakes with none brings the error back.
    // @ts-expect-error: the runner no longer fakes Clock
    runner.with({ fakes: [] }).test("greets", partial, body)
    // Other options keep the fakes.
    runner.with({ config: "" }).test("greets", partial, body)
  }
  // @ts-expect-error: the single runners too
  weavertest.local.test("greets", partial, body)
}

describe("runner types", () => {
  it("a runner's fakes are part of its type", () => {
    expectTypeOf(typeChecks).toBeFunction()
    expectTypeOf(weavertest.allRunners({ fakes: [noon] })[0]!).toEqualTypeOf<weavertest.Runner<Clock>>()
    expectTypeOf(weavertest.allRunners()[0]!).toEqualTypeOf<weavertest.Runner>()
  })
})
