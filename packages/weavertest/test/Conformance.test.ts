/**
 * Behaviour every runner must share. The cases only use what a user test
 * can see (clients, errors, metrics recorded in the test's process), so a
 * new runner runs them unchanged by joining `weavertest.allRunners()`.
 */
import { Component } from "@effect-weaver/core"
import { weavertest } from "@effect-weaver/weavertest"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Metric, MetricState } from "effect"
import {
  app,
  Broken,
  Caller,
  Configured,
  CycleA,
  Metered,
  Missing,
  NotFound,
  Point,
  Relay,
  Slow,
  Upper,
  Waiter
} from "./fixtures/components.js"

const configText = `
["conformance/Configured"]
Greeting = "Bonjour"
Times = 2
`

/** Colocates the deadline cases' caller and callee, so that under Multi the call between them stays in one process. */
const colocatedWaiter = `
[serviceweaver]
colocate = [["conformance/Relay", "conformance/Waiter"]]
`

/** Runs `effect` and returns how long it took, in milliseconds. */
const timed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const start = Date.now()
    const result = yield* effect
    return [result, Date.now() - start] as const
  })

/** The sum of a counter over every series with these labels (whatever the `remote` label). */
const counterSum = (metric: string, labels: Record<string, string>) =>
  Effect.map(Metric.snapshot, (pairs) => {
    let sum = 0
    for (const pair of pairs) {
      if (pair.metricKey.name !== metric || !MetricState.isCounterState(pair.metricState)) continue
      const tags = new Map(pair.metricKey.tags.map((tag) => [tag.key, tag.value]))
      if (Object.entries(labels).every(([key, value]) => tags.get(key) === value)) {
        sum += Number(pair.metricState.count)
      }
    }
    return sum
  })

const fakeUpper = weavertest.fake(Upper, {
  upper: (s) => Effect.succeed(`fake:${s}`),
  ping: () => Effect.succeed("fake pong"),
  lookup: (key) => Effect.fail(new NotFound({ key })),
  describe: () => Effect.dieMessage("not used")
})

const defectText = <A, E>(exit: Exit.Exit<A, E>): string => {
  assert.isTrue(Exit.isFailure(exit), "expected the call to fail")
  return Exit.isFailure(exit) ? Cause.pretty(exit.cause) : ""
}

for (const runner of weavertest.allRunners()) {
  describe(runner.name, () => {
    runner.test(
      "a method with a payload returns its result",
      app,
      Effect.gen(function*() {
        const upper = yield* Upper
        assert.strictEqual(yield* upper.upper("abc"), "ABC")
      })
    )

    runner.test(
      "a method with no payload is called with no argument",
      app,
      Effect.gen(function*() {
        const upper = yield* Upper
        assert.strictEqual(yield* upper.ping(), "pong")
      })
    )

    runner.test(
      "struct payloads and results keep their fields",
      app,
      Effect.gen(function*() {
        const upper = yield* Upper
        const shape = { name: "tri", points: [{ x: 1, y: 2 }, { x: 3, y: 4 }, { x: -1, y: 0.5 }], tags: ["a", "b"] }
        const result = yield* upper.describe(shape)
        assert.strictEqual(result.name, "tri[a,b]")
        assert.strictEqual(result.count, 3)
        assert.instanceOf(result.sum, Point)
        assert.deepStrictEqual([result.sum.x, result.sum.y], [3, 6.5])
        const untagged = yield* upper.describe({ name: "none", points: [] })
        assert.strictEqual(untagged.name, "none")
        assert.strictEqual(untagged.count, 0)
      })
    )

    runner.test(
      "a declared error arrives as a value and is caught with catchTag",
      app,
      Effect.gen(function*() {
        const upper = yield* Upper
        assert.strictEqual(yield* upper.lookup("one"), 1)
        const caught = yield* upper.lookup("two").pipe(
          Effect.map(() => "no error"),
          Effect.catchTag("NotFound", (e) => Effect.succeed(`not found: ${e.key}`))
        )
        assert.strictEqual(caught, "not found: two")
        const error = yield* Effect.flip(upper.lookup("three"))
        assert.strictEqual(error._tag, "NotFound")
      })
    )

    runner.test(
      "a component calls another component",
      app,
      Effect.gen(function*() {
        const caller = yield* Caller
        assert.strictEqual(yield* caller.shout("hey"), "HEY!")
        assert.strictEqual(yield* caller.lookupOrZero("one"), 1)
        assert.strictEqual(yield* caller.lookupOrZero("nothing"), 0)
      })
    )

    runner.with({ config: configText }).test(
      "a config section is decoded by the component's config schema",
      app,
      Effect.gen(function*() {
        const configured = yield* Configured
        assert.strictEqual(yield* configured.greet("Ada"), "Bonjour, Ada Bonjour, Ada")
      })
    )

    runner.test(
      "a missing config section takes the schema's defaults",
      app,
      Effect.gen(function*() {
        const configured = yield* Configured
        assert.strictEqual(yield* configured.greet("Ada"), "Hello, Ada")
      })
    )

    it.live(`${runner.name}/an unknown key in a config section fails naming the section and key`, () =>
      Effect.gen(function*() {
        const bad = runner.with({ config: `["conformance/Configured"]\nGreeting = "Hi"\nGreting = "typo"\n` })
        const error = yield* Effect.flip(bad.run(app, Effect.void))
        assert.strictEqual(error._tag, "WeaverConfigError")
        assert.include(error.message, `["conformance/Configured"]`)
        assert.include(error.message, `key "Greting"`)
        assert.include(error.message, "unknown key")
      }))

    it.live(`${runner.name}/malformed inline config fails with the config error`, () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(runner.with({ config: "[serviceweaver\nname = 1" }).run(app, Effect.void))
        assert.strictEqual(error._tag, "WeaverConfigError")
        assert.include(error.message, "<weavertest config>")
        assert.include(error.message, "malformed TOML")
      }))

    runner.with({ fakes: [fakeUpper] }).test(
      "a fake replaces a component for every caller",
      app,
      Effect.gen(function*() {
        const upper = yield* Upper
        const caller = yield* Caller
        assert.strictEqual(yield* upper.upper("abc"), "fake:abc")
        assert.strictEqual(yield* caller.shout("abc"), "fake:abc!")
        assert.strictEqual(yield* caller.lookupOrZero("one"), 0)
      })
    )

    runner.with({ fakes: [weavertest.fake(Missing, { answer: () => Effect.succeed(42) })] }).test(
      "a fake stands in for a component the app does not implement",
      app,
      Effect.gen(function*() {
        const missing = yield* Missing
        assert.strictEqual(yield* missing.answer(), 42)
      })
    )

    runner.test(
      "a component is constructed once per process, even with concurrent first calls",
      app,
      Effect.gen(function*() {
        const slow = yield* Slow
        const first = yield* Effect.all(Array.from({ length: 16 }, () => slow.whoami()), { concurrency: "unbounded" })
        const later = yield* Effect.forEach(Array.from({ length: 8 }), () => slow.whoami())
        // Which process answers is not promised: under Multi, Slow has 2 replicas, and one that becomes ready after
        // the first calls (all sent to the first ready one) joins the rotation for later calls. What is promised is
        // one instance per process, for the concurrent first calls and every call after them.
        const instancesByPid = new Map<number, Set<string>>()
        for (const { instance, pid } of [...first, ...later]) {
          const instances = instancesByPid.get(pid) ?? new Set()
          instances.add(instance)
          instancesByPid.set(pid, instances)
        }
        for (const [pid, instances] of instancesByPid) {
          assert.strictEqual(instances.size, 1, `process ${pid} constructed Slow ${instances.size} times`)
        }
      })
    )

    runner.test(
      "a construction error names the component",
      app,
      Effect.gen(function*() {
        const broken = yield* Broken
        const text = defectText(yield* Effect.exit(broken.ping()))
        assert.include(text, "conformance/Broken")
        assert.include(text, "disk on fire")
        // Still failing on the next call: construction is not retried into a half-built state.
        assert.include(defectText(yield* Effect.exit(broken.ping())), "disk on fire")
      })
    )

    runner.test(
      "a construction cycle is reported naming both components",
      app,
      Effect.gen(function*() {
        const a = yield* CycleA
        const text = defectText(yield* Effect.exit(a.ping()))
        assert.include(text, "cycle")
        assert.include(text, "conformance/CycleA")
        assert.include(text, "conformance/CycleB")
      })
    )

    runner.test(
      "method calls are counted in serviceweaver_method_count",
      app,
      Effect.gen(function*() {
        const metered = yield* Metered
        const labels = { caller: "main", component: "conformance/Metered", method: "tick" }
        const callsBefore = yield* counterSum("serviceweaver_method_count", labels)
        const errorsBefore = yield* counterSum("serviceweaver_method_error_count", labels)
        for (let i = 0; i < 5; i++) yield* metered.tick(true)
        yield* Effect.flip(metered.tick(false))
        assert.strictEqual((yield* counterSum("serviceweaver_method_count", labels)) - callsBefore, 6)
        assert.strictEqual((yield* counterSum("serviceweaver_method_error_count", labels)) - errorsBefore, 1)
      })
    )

    runner.test(
      "a call under a 50 ms deadline that takes 300 ms fails at about 50 ms with Timeout",
      app,
      Effect.gen(function*() {
        const waiter = yield* Waiter
        yield* waiter.wait(1)
        const [error, millis] = yield* timed(Effect.flip(waiter.wait(300).pipe(Component.withTimeout("50 millis"))))
        assert.strictEqual(error._tag, "RemoteCallError")
        assert.strictEqual(error.reason, "Timeout")
        assert.isAtLeast(millis, 45)
        assert.isBelow(millis, 250)
        // The deadline applied to that call only.
        assert.strictEqual(yield* waiter.wait(1), 1)
      })
    )

    runner.with({ config: colocatedWaiter }).test(
      "a co-located call under a 50 ms deadline that takes 300 ms is interrupted at about 50 ms",
      app,
      Effect.gen(function*() {
        const relay = yield* Relay
        const { millis, outcome } = yield* relay.waitWithin({ millis: 300, within: 50 })
        assert.match(outcome, /^Timeout: /)
        assert.isAtLeast(millis, 45)
        assert.isBelow(millis, 250)
        assert.strictEqual((yield* relay.waitWithin({ millis: 1, within: 1000 })).outcome, "done")
      })
    )

    runner.test(
      "a method's timeout bounds its calls; an earlier deadline in force is kept",
      app,
      Effect.gen(function*() {
        const waiter = yield* Waiter
        // The first call may wait for the component to start, longer than the method's 50 ms allow.
        yield* waiter.wait(1)
        const [error, millis] = yield* timed(Effect.flip(waiter.waitBriefly(300)))
        assert.strictEqual(error.reason, "Timeout")
        assert.isBelow(millis, 250)
        assert.strictEqual(yield* waiter.waitBriefly(1), 1)
        const [earlier, within] = yield* timed(
          Effect.flip(waiter.waitBriefly(300).pipe(Component.withTimeout("10 millis")))
        )
        assert.strictEqual(earlier.reason, "Timeout")
        assert.isBelow(within, 45)
      })
    )

    runner.with({ config: `[serviceweaver]\ncall_timeout = "50ms"\n` }).test(
      "call_timeout in weaver.toml gives every call without an earlier deadline one",
      app,
      Effect.gen(function*() {
        const waiter = yield* Waiter
        const relay = yield* Relay
        // Started (under Multi) by calls the default deadline does not cut short: a longer one is kept.
        yield* Component.withTimeout(
          Effect.zip(waiter.wait(1), relay.waitWithin({ millis: 1, within: 1000 })),
          "1 minute"
        )
        const [error, millis] = yield* timed(Effect.flip(waiter.wait(300)))
        assert.strictEqual(error.reason, "Timeout")
        assert.isBelow(millis, 250)
        assert.strictEqual(yield* waiter.wait(300).pipe(Component.withTimeout("2 seconds")), 300)
      })
    )
  })
}
