/**
 * Chaos under every runner: the examples keep their behaviour while calls
 * are dropped, delayed, duplicated and reordered (and, under Multi, replicas
 * are killed), because the call pipeline retries what the transport could
 * not deliver; a `retry: false` method never runs twice for one call; and a
 * seed gives the same faults to the same calls.
 */
import type { RemoteCallError } from "@effect-weaver/core"
import { Chaos, weavertest } from "@effect-weaver/weavertest"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Option } from "effect"
import * as Fs from "node:fs"
import { app as greeterApp } from "../../../examples/greeter/src/app.js"
import { Clock } from "../../../examples/greeter/src/Clock.js"
import { Greeter } from "../../../examples/greeter/src/Greeter.js"
import { app as helloApp } from "../../../examples/hello/src/app.js"
import { Reverser } from "../../../examples/hello/src/Reverser.js"
import { app as onceApp, Ledger, Once } from "./fixtures/chaos.js"

/** 5 % of calls faulty; under Multi a ready replica killed every half second (at most 4 per group). */
const chaos = { rate: 0.05, delayMillis: 20, kill: { everyMillis: 500, probability: 1 } }

/** Under Multi, the busy loops go on until 2 replicas were killed (or 15 s passed). */
const enoughChaos = (runner: weavertest.Runner, started: number) =>
  Effect.map(
    weavertest.Chaos,
    (c) => runner.name !== "Multi" || c.counts().killed >= 2 || Date.now() - started > 15_000
  )

const greeterConfig = Fs.readFileSync(new URL("../../../examples/greeter/weaver.toml", import.meta.url), "utf8")
const noon = weavertest.fake(Clock, { now: () => Effect.succeed("12:00") })

describe("examples under chaos", () => {
  for (const runner of weavertest.allRunners({ chaos })) {
    runner.test(
      "hello: reverses, one call at a time and ten at once",
      helloApp,
      Effect.gen(function*() {
        const reverser = yield* Reverser
        // examples/hello/test's assertions.
        assert.strictEqual(yield* reverser.reverse("abc"), "cba")
        assert.strictEqual(yield* reverser.reverse(""), "")
        assert.strictEqual(yield* reverser.reverse("héllo🙂"), "🙂olléh")
        assert.strictEqual(yield* reverser.reverse(yield* reverser.reverse("héllo🙂")), "héllo🙂")
        const started = Date.now()
        for (let round = 0; round < 20 || !(yield* enoughChaos(runner, started)); round++) {
          const words = Array.from({ length: 10 }, (_, i) => `w${round}-${i}`)
          // Concurrent calls, some reordered: each answer must still be its own call's.
          const answers = yield* Effect.forEach(words, (word) => reverser.reverse(word), { concurrency: "unbounded" })
          assert.deepStrictEqual(answers, words.map((word) => [...word].reverse().join("")))
          if (runner.name === "Multi") yield* Effect.sleep(20)
        }
        const counts = (yield* weavertest.Chaos).counts()
        assert.isAbove(counts.calls, 200)
        assert.isAbove(counts.dropped + counts.delayed + counts.duplicated + counts.reordered, 0)
        if (runner.name === "Multi") assert.isAtLeast(counts.killed, 2)
      }),
      60_000
    )
  }

  for (const runner of weavertest.allRunners({ chaos, fakes: [noon], config: greeterConfig })) {
    runner.test(
      "greeter: greets with weaver.toml's greeting, fails an empty name with EmptyName",
      greeterApp,
      Effect.gen(function*() {
        const greeter = yield* Greeter
        // examples/greeter/test's assertions.
        assert.strictEqual(yield* greeter.greet("Ada"), "Bonjour, Ada! It is 12:00.")
        const started = Date.now()
        for (let round = 0; round < 20 || !(yield* enoughChaos(runner, started)); round++) {
          const names = Array.from({ length: 10 }, (_, i) => `n${round}-${i}`)
          const answers = yield* Effect.forEach(names, (name) => greeter.greet(name), { concurrency: "unbounded" })
          assert.deepStrictEqual(answers, names.map((name) => `Bonjour, ${name}! It is 12:00.`))
          const reply = yield* greeter.greet("").pipe(
            Effect.catchTag("EmptyName", (e) => Effect.succeed(`caught: ${e.message}`))
          )
          assert.strictEqual(reply, "caught: name must not be empty")
          if (runner.name === "Multi") yield* Effect.sleep(20)
        }
        if (runner.name === "Multi") assert.isAtLeast((yield* weavertest.Chaos).counts().killed, 2)
      }),
      60_000
    )
  }
})

describe("retry: false under chaos", () => {
  const calls = 60
  for (const base of weavertest.allRunners()) {
    // Every execution of Once.run is recorded here, in the test's process, whichever replica ran it.
    const executions = new Map<number, number>()
    const ledger = weavertest.fake(Ledger, {
      record: (id) => Effect.sync(() => executions.set(id, (executions.get(id) ?? 0) + 1))
    })
    const runner = base.with({
      chaos: { rate: 0.3, seed: 1, delayMillis: 20, kill: { everyMillis: 500, probability: 1 } },
      fakes: [ledger]
    })
    runner.test(
      `a retry: false method called ${calls} times or more runs at most once per call`,
      onceApp,
      Effect.gen(function*() {
        const once = yield* Once
        const outcomes: Array<Exit.Exit<number, RemoteCallError>> = []
        // Under Multi, on until a replica was killed too (or 15 s passed).
        const started = Date.now()
        while (
          outcomes.length < calls ||
          (runner.name === "Multi" && (yield* weavertest.Chaos).counts().killed < 1 && Date.now() - started < 15_000)
        ) {
          const ids = Array.from({ length: 4 }, (_, i) => outcomes.length + i)
          outcomes.push(...yield* Effect.forEach(ids, (id) => Effect.exit(once.run(id)), { concurrency: 4 }))
        }
        let succeeded = 0
        let droppedByChaos = 0
        for (const [id, exit] of outcomes.entries()) {
          const ran = executions.get(id) ?? 0
          assert.isAtMost(ran, 1, `call ${id} ran ${ran} times`)
          if (Exit.isSuccess(exit)) {
            succeeded++
            assert.strictEqual(ran, 1, `call ${id} succeeded but ran ${ran} times`)
            continue
          }
          // The caller sees the RemoteCallError: the method may not be retried.
          const error = Option.getOrThrow(Cause.failureOption(exit.cause))
          assert.strictEqual(error._tag, "RemoteCallError")
          if (error.detail.startsWith("chaos:")) {
            droppedByChaos++
            assert.strictEqual(ran, 0, `call ${id} was dropped before delivery but ran`)
          }
        }
        const counts = (yield* weavertest.Chaos).counts()
        assert.strictEqual(counts.duplicated, 0)
        assert.strictEqual(droppedByChaos, counts.dropped)
        assert.isAbove(counts.dropped, 0)
        assert.isAbove(succeeded, outcomes.length / 2)
        assert.isAtMost([...executions.values()].reduce((a, b) => a + b, 0), outcomes.length)
        if (runner.name === "Multi") assert.isAtLeast(counts.killed, 1)
      }),
      60_000
    )
  }
})

describe("the fault schedule", () => {
  const reverseAll = Effect.gen(function*() {
    const reverser = yield* Reverser
    for (let i = 0; i < 100; i++) {
      assert.strictEqual(yield* reverser.reverse(`ab${i}`), `${i}`.split("").reverse().join("") + "ba")
    }
    return (yield* weavertest.Chaos).faults()
  })
  const withSeed = (seed: number) =>
    weavertest.local.with({ chaos: { rate: 0.2, seed, delayMillis: 5 } }).run(helloApp, reverseAll)

  it.live("Local/the same seed injects the same faults into the same calls", () =>
    Effect.gen(function*() {
      const first = yield* withSeed(42)
      const second = yield* withSeed(42)
      const other = yield* withSeed(43)
      assert.isAbove(first.length, 10)
      assert.deepStrictEqual(second, first)
      assert.notDeepEqual(other, first)
      assert.deepStrictEqual(
        new Set(first.map((fault) => fault.kind)),
        new Set(["drop", "delay", "duplicate", "reorder"] as const)
      )
    }))
})

describe("WEAVERTEST_CHAOS", () => {
  it("is a rate, or a list of options", () => {
    assert.isUndefined(Chaos.fromEnv(undefined))
    assert.isUndefined(Chaos.fromEnv(" "))
    assert.deepStrictEqual(Chaos.fromEnv("0.1"), { rate: 0.1, seed: undefined, delayMillis: undefined, kill: false })
    assert.deepStrictEqual(Chaos.fromEnv("rate=0.3,seed=7,kill,killEveryMillis=300,delayMillis=20"), {
      rate: 0.3,
      seed: 7,
      delayMillis: 20,
      kill: { everyMillis: 300, probability: undefined }
    })
  })
})
