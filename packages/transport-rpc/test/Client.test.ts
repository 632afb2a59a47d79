/**
 * The client when a replica leaves routing: the deployer takes a replica out
 * because it is gone or hung (a hung process still accepts connections and
 * never answers), and the calls in flight on it must not wait for their
 * deadline.
 */
import { RemoteCallError } from "@effect-weaver/core"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import type * as Scope from "effect/Scope"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { clientOf, Echo, makeHooks, serveReplica } from "./utils/fixture.js"

const deploymentId = "dep-routing"

/** Replica `a`, whose `count` and `countOnce` never answer, replica `b`, and a client following `replicas`. */
const hungAndHealthy = Effect.gen(function*() {
  const hooksA = yield* makeHooks("a")
  hooksA.onCount = () => Effect.never
  const hooksB = yield* makeHooks("b")
  const a = yield* serveReplica(hooksA, { deploymentId })
  const b = yield* serveReplica(hooksB, { deploymentId })
  const replicas = yield* SubscriptionRef.make<ReadonlyArray<string>>([a.address, b.address])
  const echo = yield* clientOf(Echo, { deploymentId, addresses: replicas.changes })
  return { a, b, hooksA, hooksB, replicas, echo }
})

/** Waits (up to 5 s) until `f` holds. */
const until = (what: string, f: () => boolean): Effect.Effect<void, Error, Scope.Scope> =>
  Effect.gen(function*() {
    for (let i = 0; i < 500; i++) {
      if (f()) return
      yield* Effect.sleep("10 millis")
    }
    return yield* Effect.fail(new Error(`timed out waiting for ${what}`))
  })

describe("Client: a replica taken out of routing", () => {
  it.scopedLive("retriable calls in flight on it fail over to another replica at once", () =>
    Effect.gen(function*() {
      const { b, hooksA, hooksB, replicas, echo } = yield* hungAndHealthy
      // Round-robin: about half the calls land on a, which never answers.
      const calls = yield* Effect.fork(Effect.forEach(Array.from({ length: 8 }), () => echo.count(), {
        concurrency: 8
      }))
      yield* until("calls hanging on a", () => hooksA.calls >= 2 && hooksA.calls + hooksB.calls >= 8)
      const start = Date.now()
      yield* SubscriptionRef.set(replicas, [b.address])
      const counts = yield* Fiber.join(calls).pipe(
        Effect.timeoutFail({ duration: "2 seconds", onTimeout: () => new Error("calls still wait for a") })
      )
      assert.isBelow(Date.now() - start, 1000)
      assert.strictEqual(counts.length, 8)
      // Every call that hung on a ran again on b: b ran all 8.
      assert.strictEqual(hooksB.calls, 8)
    }))

  it.scopedLive("a call in flight that may not be retried fails with Unreachable naming the replica", () =>
    Effect.gen(function*() {
      const { a, b, hooksA, replicas, echo } = yield* hungAndHealthy
      yield* SubscriptionRef.set(replicas, [a.address])
      yield* Effect.sleep("20 millis")
      const call = yield* Effect.fork(Effect.flip(echo.countOnce()))
      yield* until("the call to reach a", () => hooksA.calls === 1)
      yield* SubscriptionRef.set(replicas, [b.address])
      const error = yield* Fiber.join(call).pipe(
        Effect.timeoutFail({ duration: "2 seconds", onTimeout: () => new Error("the call still waits for a") })
      )
      assert.instanceOf(error, RemoteCallError)
      assert.strictEqual((error as RemoteCallError).reason, "Unreachable")
      assert.include((error as RemoteCallError).detail, `replica ${a.address} was taken out of routing`)
      assert.strictEqual(hooksA.calls, 1, "not retried")
      // Later calls go to b.
      assert.strictEqual(yield* echo.whoami(), "b")
    }))

  it.scopedLive("calls in flight on a replica that stays in routing are left alone", () =>
    Effect.gen(function*() {
      const { a, b, hooksA, replicas, echo } = yield* hungAndHealthy
      yield* SubscriptionRef.set(replicas, [a.address])
      yield* Effect.sleep("20 millis")
      const call = yield* Effect.fork(echo.countOnce())
      yield* until("the call to reach a", () => hooksA.calls === 1)
      // A replica added, none removed: the call keeps waiting for a's answer.
      yield* SubscriptionRef.set(replicas, [a.address, b.address])
      yield* Effect.sleep("100 millis")
      assert.isNull(call.unsafePoll())
      yield* Fiber.interrupt(call)
    }))
})
