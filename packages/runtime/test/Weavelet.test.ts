import { Component, Weaver } from "@effect-weaver/core"
import { Logging, MethodMetrics } from "@effect-weaver/runtime"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber, Logger, Metric, Schema } from "effect"
import { runLocal } from "./utils/local.js"

const countOf = (labels: Parameters<typeof MethodMetrics.labels>[0]) =>
  Metric.value(MethodMetrics.count.pipe(Metric.taggedWithLabels(MethodMetrics.labels(labels)))).pipe(
    Effect.map((state) => state.count)
  )
const errorCountOf = (labels: Parameters<typeof MethodMetrics.labels>[0]) =>
  Metric.value(MethodMetrics.errorCount.pipe(Metric.taggedWithLabels(MethodMetrics.labels(labels)))).pipe(
    Effect.map((state) => state.count)
  )
const latencyOf = (labels: Parameters<typeof MethodMetrics.labels>[0]) =>
  Metric.value(MethodMetrics.latencyMicros.pipe(Metric.taggedWithLabels(MethodMetrics.labels(labels))))

/** The message of the defect an Exit died with. */
const defectMessage = (exit: Exit.Exit<unknown, unknown>): string => {
  assert.isTrue(Exit.isFailure(exit), "expected a failure")
  if (Exit.isSuccess(exit)) return ""
  const defects = [...Cause.defects(exit.cause)]
  assert.strictEqual(defects.length, 1, Cause.pretty(exit.cause))
  const defect = defects[0]
  return defect instanceof Error ? defect.message : String(defect)
}

describe("Weavelet", () => {
  describe("construction", () => {
    it.live("is lazy, and happens once under 50 concurrent first calls", () => {
      class Lazy extends Component.Tag("lazy/Lazy")<Lazy>()({
        get: Component.method({ success: Schema.Number })
      }) {}
      let constructed = 0
      const LazyImpl = Component.implement(
        Lazy,
        Effect.gen(function*() {
          constructed++
          yield* Effect.sleep("10 millis")
          return { get: () => Effect.succeed(constructed) }
        })
      )
      return runLocal(Weaver.app({ components: [LazyImpl] }), () =>
        Effect.gen(function*() {
          const lazy = yield* Lazy
          assert.strictEqual(constructed, 0, "constructed before first call")
          const results = yield* Effect.all(Array.from({ length: 50 }, () => lazy.get()), { concurrency: "unbounded" })
          assert.strictEqual(constructed, 1)
          assert.deepStrictEqual(results, Array.from({ length: 50 }, () => 1))
          yield* lazy.get()
          assert.strictEqual(constructed, 1)
        }))
    })

    it.effect("a failure is a defect naming the component, at every call", () => {
      class Broken extends Component.Tag("broken/Broken")<Broken>()({ ping: Component.method({}) }) {}
      const BrokenImpl = Component.implement(Broken, Effect.fail("no database"))
      return runLocal(Weaver.app({ components: [BrokenImpl] }), () =>
        Effect.gen(function*() {
          const broken = yield* Broken
          const first = yield* Effect.exit(broken.ping())
          assert.strictEqual(defectMessage(first), "component broken/Broken failed to construct: no database")
          const second = yield* Effect.exit(broken.ping())
          assert.strictEqual(defectMessage(second), "component broken/Broken failed to construct: no database")
        }))
    })

    it.effect("a defect in construction, or in a dependency's, names the components", () => {
      class Dies extends Component.Tag("broken/Dies")<Dies>()({ ping: Component.method({}) }) {}
      class User extends Component.Tag("broken/User")<User>()({ ping: Component.method({}) }) {}
      const DiesImpl = Component.implement(Dies, Effect.die(new Error("bad config value")))
      const UserImpl = Component.implement(
        User,
        Effect.gen(function*() {
          yield* (yield* Dies).ping()
          return { ping: () => Effect.void }
        })
      )
      return runLocal(Weaver.app({ components: [DiesImpl, UserImpl] }), () =>
        Effect.gen(function*() {
          const user = yield* User
          assert.strictEqual(
            defectMessage(yield* Effect.exit(user.ping())),
            "component broken/User failed to construct: component broken/Dies failed to construct: bad config value"
          )
        }))
    })

    it.effect("a cycle A → B → A is reported with its path", () => {
      class A extends Component.Tag("cycle/A")<A>()({ ping: Component.method({}) }) {}
      class B extends Component.Tag("cycle/B")<B>()({ ping: Component.method({}) }) {}
      const AImpl = Component.implement(
        A,
        Effect.gen(function*() {
          const b = yield* B
          yield* b.ping()
          return { ping: () => Effect.void }
        })
      )
      const BImpl = Component.implement(
        B,
        Effect.gen(function*() {
          const a = yield* A
          yield* a.ping()
          return { ping: () => Effect.void }
        })
      )
      return runLocal(Weaver.app({ components: [AImpl, BImpl] }), () =>
        Effect.gen(function*() {
          const a = yield* A
          const exit = yield* Effect.exit(a.ping()).pipe(Effect.timeout("5 seconds"))
          assert.strictEqual(defectMessage(exit), "cycle in component construction: cycle/A → cycle/B → cycle/A")
        }))
    })

    it.effect("a component the app does not contain is a clear defect", () => {
      class Missing extends Component.Tag("missing/Missing")<Missing>()({ ping: Component.method({}) }) {}
      class Here extends Component.Tag("missing/Here")<Here>()({ ping: Component.method({}) }) {}
      const HereImpl = Component.implement(Here, Effect.succeed({ ping: () => Effect.void }))
      return runLocal(
        Weaver.app({ components: [HereImpl] }),
        (weavelet) =>
          Effect.gen(function*() {
            const exit = yield* Effect.exit(weavelet.handlers("missing/Missing"))
            assert.include(defectMessage(exit), "component missing/Missing is not part of this application")
            assert.include(defectMessage(exit), "(it has: missing/Here)")
          }),
        { extraComponents: [Missing] }
      )
    })
  })

  describe("call graph", () => {
    class Store extends Component.Tag("graph/Store")<Store>()({
      get: Component.method({ success: Schema.Number })
    }) {}
    class Cache extends Component.Tag("graph/Cache")<Cache>()({
      get: Component.method({ success: Schema.Number })
    }) {}
    class Audit extends Component.Tag("graph/Audit")<Audit>()({
      log: Component.method({})
    }) {}
    const StoreImpl = Component.implement(Store, Effect.succeed({ get: () => Effect.succeed(1) }))
    const AuditImpl = Component.implement(Audit, Effect.succeed({ log: () => Effect.void }))
    const CacheImpl = Component.implement(
      Cache,
      Effect.gen(function*() {
        const store = yield* Store
        const audit = yield* Audit
        return { get: () => Effect.zipRight(audit.log(), store.get()) }
      })
    )

    it.effect("records which component's code resolved which client, once per edge", () => {
      const seen: Array<string> = []
      return runLocal(
        Weaver.app({ components: [StoreImpl, CacheImpl, AuditImpl] }),
        (weavelet) =>
          Effect.gen(function*() {
            const cache = yield* Cache
            assert.deepStrictEqual([...weavelet.requirements.keys()], ["main"])
            yield* cache.get()
            yield* cache.get()
            yield* Cache
            const graph = Object.fromEntries([...weavelet.requirements].map(([from, to]) => [from, [...to].sort()]))
            assert.deepStrictEqual(graph, { main: ["graph/Cache"], "graph/Cache": ["graph/Audit", "graph/Store"] })
            assert.deepStrictEqual(seen.sort(), [
              "graph/Cache->graph/Audit",
              "graph/Cache->graph/Store",
              "main->graph/Cache"
            ])
          }),
        { onRequire: (caller, component) => seen.push(`${caller}->${component}`) }
      )
    })

    it.effect("a component missing from the context is still the defect a Context.Tag gives", () => {
      class Stray extends Component.Tag("graph/Stray")<Stray>()({ ping: Component.method({}) }) {}
      return Effect.gen(function*() {
        const exit = yield* Effect.exit(Stray as unknown as Effect.Effect<unknown>)
        assert.include(defectMessage(exit), "graph/Stray")
      })
    })
  })

  describe("calls", () => {
    class Oops extends Schema.TaggedError<Oops>()("Oops", { reason: Schema.String }) {}
    class Checker extends Component.Tag("calls/Checker")<Checker>()({
      check: Component.method({ payload: Schema.Number, success: Schema.Number, error: Oops })
    }) {}
    const CheckerImpl = Component.implement(
      Checker,
      Effect.succeed({
        check: (n: number) => n < 0 ? Effect.fail(new Oops({ reason: `negative: ${n}` })) : Effect.succeed(n * 2)
      })
    )

    it.effect("declared errors are caught with catchTag", () =>
      runLocal(Weaver.app({ components: [CheckerImpl] }), () =>
        Effect.gen(function*() {
          const checker = yield* Checker
          assert.strictEqual(yield* checker.check(2), 4)
          const caught = yield* checker.check(-1).pipe(
            Effect.catchTag("Oops", (e) => Effect.succeed(`caught ${e.reason}`))
          )
          assert.strictEqual(caught, "caught negative: -1")
          const error = yield* Effect.flip(checker.check(-2))
          assert.instanceOf(error, Oops)
        })))

    it.effect("a client call is a description: each run is a new call", () => {
      class Counter extends Component.Tag("calls/Counter")<Counter>()({
        next: Component.method({ success: Schema.Number })
      }) {}
      let n = 0
      const CounterImpl = Component.implement(Counter, Effect.succeed({ next: () => Effect.sync(() => ++n) }))
      let m = 0
      class SyncCounter extends Component.Tag("calls/SyncCounter")<SyncCounter>()({
        next: Component.method({ success: Schema.Number })
      }) {}
      const SyncCounterImpl = Component.implement(SyncCounter, Effect.succeed({ next: () => Effect.succeed(++m) }))
      return runLocal(Weaver.app({ components: [CounterImpl, SyncCounterImpl] }), () =>
        Effect.gen(function*() {
          const counter = yield* Counter
          const sync = yield* SyncCounter
          for (const next of [counter.next(), sync.next()]) {
            assert.strictEqual(yield* next, 1)
            assert.strictEqual(yield* next, 2)
            assert.strictEqual(yield* Effect.flatMap(next, (x) => Effect.succeed(x * 10)), 30)
            assert.strictEqual(yield* Effect.repeatN(next, 2), 6)
          }
        }))
    })

    it.effect("a handler that throws is a defect and counts as an error", () => {
      class Thrower extends Component.Tag("calls/Thrower")<Thrower>()({ boom: Component.method({}) }) {}
      const ThrowerImpl = Component.implement(
        Thrower,
        Effect.succeed({
          boom: () => {
            throw new Error("kaboom")
          }
        })
      )
      return runLocal(Weaver.app({ components: [ThrowerImpl] }), () =>
        Effect.gen(function*() {
          const thrower = yield* Thrower
          assert.strictEqual(defectMessage(yield* Effect.exit(thrower.boom())), "kaboom")
          const labels = { caller: "main", component: "calls/Thrower", method: "boom", remote: false }
          assert.strictEqual(yield* countOf(labels), 1)
          assert.strictEqual(yield* errorCountOf(labels), 1)
        }))
    })
  })

  describe("method metrics", () => {
    class Leaf extends Component.Tag("metrics/Leaf")<Leaf>()({
      sync: Component.method({ payload: Schema.Number, success: Schema.Number, error: Schema.String }),
      slow: Component.method({ payload: Schema.Number, success: Schema.Number, error: Schema.String })
    }) {}
    class Middle extends Component.Tag("metrics/Middle")<Middle>()({
      relay: Component.method({ payload: Schema.Number, success: Schema.Number, error: Schema.String })
    }) {}
    const LeafImpl = Component.implement(
      Leaf,
      Effect.succeed({
        sync: (n: number) => n < 0 ? Effect.fail("negative") : Effect.succeed(n),
        slow: (n: number) =>
          Effect.gen(function*() {
            yield* Effect.sleep("5 millis")
            return n < 0 ? yield* Effect.fail("negative") : n
          })
      })
    )
    const MiddleImpl = Component.implement(
      Middle,
      Effect.gen(function*() {
        const leaf = yield* Leaf
        return {
          relay: (n: number) =>
            Effect.catchAll(leaf.slow(n), (e) => typeof e === "string" ? Effect.fail(e) : Effect.die(e))
        }
      })
    )
    const app = Weaver.app({ components: [LeafImpl, MiddleImpl] })

    it.live("count, error_count and latency, labelled caller/component/method/remote", () =>
      runLocal(app, () =>
        Effect.gen(function*() {
          const leaf = yield* Leaf
          const middle = yield* Middle
          for (let i = 0; i < 5; i++) yield* leaf.slow(i)
          yield* Effect.either(leaf.slow(-1))
          for (let i = 0; i < 32; i++) yield* leaf.sync(i)
          yield* Effect.either(leaf.sync(-1))
          yield* middle.relay(1)
          yield* Effect.either(middle.relay(-1))

          const slow = { caller: "main", component: "metrics/Leaf", method: "slow", remote: false }
          assert.strictEqual(yield* countOf(slow), 6)
          assert.strictEqual(yield* errorCountOf(slow), 1)
          // Co-located calls are timed one in 16, each method's first call included.
          const latency = yield* latencyOf(slow)
          assert.strictEqual(latency.count, 1)
          // Timers may fire up to a millisecond early by the high-resolution clock.
          assert.isAtLeast(latency.min, 3000, "a 5 ms handler takes at least ~4000 µs")
          assert.isAtMost(latency.max, 5_000_000)

          const sync = { caller: "main", component: "metrics/Leaf", method: "sync", remote: false }
          assert.strictEqual(yield* countOf(sync), 33)
          assert.strictEqual(yield* errorCountOf(sync), 1)
          assert.strictEqual((yield* latencyOf(sync)).count, 3)

          // Calls made by Middle's code are attributed to Middle.
          const relayed = { caller: "metrics/Middle", component: "metrics/Leaf", method: "slow", remote: false }
          assert.strictEqual(yield* countOf(relayed), 2)
          assert.strictEqual(yield* errorCountOf(relayed), 1)
          assert.strictEqual((yield* latencyOf(relayed)).count, 1)
          const relay = { caller: "main", component: "metrics/Middle", method: "relay", remote: false }
          assert.strictEqual(yield* countOf(relay), 2)
          assert.strictEqual(yield* errorCountOf(relay), 1)
        })))

    it.live("an interrupted call counts as an error once, whether its fiber ends or goes on", () =>
      runLocal(app, () =>
        Effect.gen(function*() {
          const leaf = yield* Leaf
          const middle = yield* Middle
          const slow = { caller: "main", component: "metrics/Leaf", method: "slow", remote: false }
          const relay = { caller: "main", component: "metrics/Middle", method: "relay", remote: false }
          const relayed = { caller: "metrics/Middle", component: "metrics/Leaf", method: "slow", remote: false }
          const before = {
            slow: [yield* countOf(slow), yield* errorCountOf(slow)],
            relay: [yield* countOf(relay), yield* errorCountOf(relay)],
            relayed: [yield* countOf(relayed), yield* errorCountOf(relayed)]
          }
          // The fiber ends: interrupted in Middle.relay, itself in Leaf.slow.
          const fiber = yield* Effect.fork(middle.relay(1))
          yield* Effect.sleep("1 millis")
          yield* Fiber.interrupt(fiber)
          // The fiber goes on: its interruption is caught outside the call's interruptible region, and it calls again.
          const goesOn = yield* Effect.fork(
            Effect.uninterruptibleMask((restore) => Effect.zipRight(Effect.exit(restore(leaf.slow(2))), leaf.slow(3)))
          )
          yield* Effect.sleep("1 millis")
          yield* Fiber.interrupt(goesOn)
          assert.deepStrictEqual([yield* countOf(relay), yield* errorCountOf(relay)], [
            before.relay[0]! + 1,
            before.relay[1]! + 1
          ])
          assert.deepStrictEqual([yield* countOf(relayed), yield* errorCountOf(relayed)], [
            before.relayed[0]! + 1,
            before.relayed[1]! + 1
          ])
          assert.deepStrictEqual([yield* countOf(slow), yield* errorCountOf(slow)], [
            before.slow[0]! + 2,
            before.slow[1]! + 1
          ])
        })))
  })

  describe("logging", () => {
    class Talker extends Component.Tag("log/Talker")<Talker>()({
      talk: Component.method({ payload: Schema.String })
    }) {}
    class Quiet extends Component.Tag("log/Quiet")<Quiet>()({
      relay: Component.method({ payload: Schema.String })
    }) {}
    const TalkerImpl = Component.implement(
      Talker,
      Effect.gen(function*() {
        yield* Effect.logInfo("talker ready")
        return {
          talk: (s: string) => Effect.logInfo("talking", s).pipe(Effect.annotateLogs({ user: "ada", n: 3 }))
        }
      })
    )
    const QuietImpl = Component.implement(
      Quiet,
      Effect.gen(function*() {
        const talker = yield* Talker
        return {
          relay: (s: string) => Effect.zipRight(talker.talk(s), Effect.logWarning("relayed"))
        }
      })
    )
    const app = Weaver.app({ components: [TalkerImpl, QuietImpl] })

    it.effect("log lines carry the component, deployment, replica, source and annotations", () => {
      const entries: Array<Logging.Entry> = []
      return runLocal(
        app,
        (weavelet) =>
          Effect.gen(function*() {
            const origin = { app: weavelet.app, deploymentId: weavelet.deploymentId, replicaId: weavelet.replicaId }
            const logger = Logger.make((options) => {
              entries.push(Logging.toEntry(origin, options))
            })
            const quiet = yield* Quiet
            yield* Effect.logInfo("before").pipe(
              Effect.zipRight(quiet.relay("hi")),
              Effect.zipRight(Effect.logInfo("after")),
              Effect.provide(Logger.replace(Logger.defaultLogger, logger))
            )
          }),
        { deploymentId: "dep-1234", replicaId: "73ddcd04-aaaa" }
      ).pipe(Effect.map(() => {
        const summary = entries.map((e) => [e.component, e.level, e.msg, e.attrs])
        assert.deepStrictEqual(summary, [
          ["main", "info", "before", []],
          ["log/Talker", "info", "talker ready", []],
          ["log/Talker", "info", "talking hi", [["n", "3"], ["user", "ada"]]],
          ["log/Quiet", "warn", "relayed", []],
          ["main", "info", "after", []]
        ])
        for (const entry of entries) {
          assert.strictEqual(entry.version, "dep-1234")
          assert.strictEqual(entry.node, "73ddcd04-aaaa")
        }
        assert.strictEqual(entries[2]!.source, TalkerImpl.source)
        assert.match(TalkerImpl.source, /^Weavelet\.test\.ts:\d+$/)
        assert.strictEqual(entries[3]!.source, QuietImpl.source)
        assert.notStrictEqual(QuietImpl.source, TalkerImpl.source)
      }))
    })
  })
})
