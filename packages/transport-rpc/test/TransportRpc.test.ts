import { RemoteCallError } from "@effect-weaver/core"
import { Client } from "@effect-weaver/transport-rpc"
import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import { clientOf, Echo, EchoSkewed, makeHooks, proxy, serveReplica } from "./utils/fixture.js"

const deploymentId = "dep-1"

const remoteError = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.flip(effect).pipe(Effect.map((error) => {
    assert.instanceOf(error, RemoteCallError)
    return error as RemoteCallError
  }))

describe("TransportRpc", () => {
  it.scoped("round-trips payloads and results through the method schemas", () =>
    Effect.gen(function*() {
      const server = yield* serveReplica(yield* makeHooks(), { deploymentId })
      const echo = yield* clientOf(Echo, { deploymentId, addresses: [server.address] })
      assert.strictEqual(yield* echo.echo("héllo"), "héllo")
      yield* echo.ping()
      const stamp = yield* echo.stamp({ at: new Date(0), n: 41 })
      assert.strictEqual(stamp.at.getTime(), 1000)
      assert.strictEqual(stamp.n, 42)
      const many = yield* Effect.forEach(Array.from({ length: 200 }, (_, i) => `m${i}`), echo.echo, {
        concurrency: 64
      })
      assert.deepStrictEqual(many, Array.from({ length: 200 }, (_, i) => `m${i}`))
    }))

  it.scoped("declared errors arrive as values; defects as RemoteCallError Handler", () =>
    Effect.gen(function*() {
      const server = yield* serveReplica(yield* makeHooks(), { deploymentId })
      const echo = yield* clientOf(Echo, { deploymentId, addresses: [server.address] })
      const caught = yield* echo.fail("because").pipe(
        Effect.catchTag("Nope", (e) => Effect.succeed(`caught ${e.why}`))
      )
      assert.strictEqual(caught, "caught because")
      const defect = yield* remoteError(echo.die("boom"))
      assert.strictEqual(defect.reason, "Handler")
      assert.include(defect.detail, "boom")
      assert.strictEqual(yield* echo.echo("still up"), "still up")
    }))

  it.scoped("a payload the server cannot decode is a Decode error and the connection survives", () =>
    Effect.gen(function*() {
      const server = yield* serveReplica(yield* makeHooks(), { deploymentId })
      const skewed = yield* clientOf(EchoSkewed, { deploymentId, addresses: [server.address] })
      const error = yield* remoteError(skewed.echo(12))
      assert.strictEqual(error.reason, "Decode")
      assert.include(error.detail, "Expected string")
      assert.strictEqual(server.connections(), 1)
    }))

  it.scoped("refuses a server of another deployment with a clear error", () =>
    Effect.gen(function*() {
      const server = yield* serveReplica(yield* makeHooks(), { deploymentId })
      const stranger = yield* clientOf(Echo, { deploymentId: "dep-2", addresses: [server.address] })
      const error = yield* remoteError(stranger.echo("x"))
      assert.strictEqual(error.reason, "Protocol")
      assert.include(error.detail, "deployment mismatch")
      const friend = yield* clientOf(Echo, { deploymentId, addresses: [server.address] })
      assert.strictEqual(yield* friend.echo("x"), "x")
    }))

  it.scoped("a retriable method is retried after transport failures; retry: false never is", () =>
    Effect.gen(function*() {
      const hooks = yield* makeHooks()
      const server = yield* serveReplica(hooks, { deploymentId })
      const front = yield* proxy(server.address)
      hooks.onCount = (n) => n <= 2 ? Effect.zipRight(Effect.sync(front.sever), Effect.never) : Effect.void
      const echo = yield* clientOf(Echo, { deploymentId, addresses: [front.address] })
      assert.strictEqual(yield* echo.count(), 3)
      assert.strictEqual(hooks.calls, 3)

      hooks.calls = 0
      hooks.onCount = () => Effect.zipRight(Effect.sync(front.sever), Effect.never)
      const once = yield* remoteError(echo.countOnce())
      assert.strictEqual(once.reason, "Unreachable")
      assert.strictEqual(hooks.calls, 1)
    }))

  it.scoped("retries are bounded in attempts", () =>
    Effect.gen(function*() {
      const hooks = yield* makeHooks()
      const server = yield* serveReplica(hooks, { deploymentId })
      const front = yield* proxy(server.address)
      hooks.onCount = () => Effect.zipRight(Effect.sync(front.sever), Effect.never)
      const echo = yield* clientOf(Echo, { deploymentId, addresses: [front.address], retry: { attempts: 4 } })
      const error = yield* remoteError(echo.count())
      assert.strictEqual(error.reason, "Unreachable")
      assert.strictEqual(hooks.calls, 4)
    }))

  it.scoped("an unreachable replica fails with Unreachable within the retry time bound", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const server = yield* serveReplica(yield* makeHooks(), { deploymentId }).pipe(Scope.extend(scope))
      yield* Scope.close(scope, Effect.void as any)
      const echo = yield* clientOf(Echo, { deploymentId, addresses: [server.address], retry: { within: "300 millis" } })
      const start = Date.now()
      const error = yield* remoteError(echo.echo("x"))
      assert.strictEqual(error.reason, "Unreachable")
      assert.isBelow(Date.now() - start, 2000)
    }))

  it.scoped("a deadline expires with Timeout and interrupts the handler", () =>
    Effect.gen(function*() {
      const hooks = yield* makeHooks()
      const server = yield* serveReplica(hooks, { deploymentId })
      const echo = yield* clientOf(Echo, { deploymentId, addresses: [server.address] })
      const start = Date.now()
      const error = yield* remoteError(Client.withTimeout(echo.hang(), "100 millis"))
      assert.strictEqual(error.reason, "Timeout")
      assert.isAtLeast(Date.now() - start, 90)
      yield* Deferred.await(hooks.interrupted).pipe(Effect.timeout("2 seconds"))
      assert.isTrue(yield* Client.withTimeout(echo.hasDeadline(), "1 second"))
      assert.isFalse(yield* echo.hasDeadline())
    }))

  it.scoped("a default timeout applies to calls made without a deadline", () =>
    Effect.gen(function*() {
      const server = yield* serveReplica(yield* makeHooks(), { deploymentId })
      const echo = yield* clientOf(Echo, { deploymentId, addresses: [server.address], timeout: "50 millis" })
      assert.strictEqual((yield* remoteError(echo.hang())).reason, "Timeout")
      assert.isTrue(yield* echo.hasDeadline())
    }))

  it.scoped("interrupting the caller cancels the handler on the server", () =>
    Effect.gen(function*() {
      const hooks = yield* makeHooks()
      const server = yield* serveReplica(hooks, { deploymentId })
      const echo = yield* clientOf(Echo, { deploymentId, addresses: [server.address] })
      const fiber = yield* Effect.fork(echo.hang())
      yield* Deferred.await(hooks.started).pipe(Effect.timeout("2 seconds"))
      yield* Fiber.interrupt(fiber)
      yield* Deferred.await(hooks.interrupted).pipe(Effect.timeout("2 seconds"))
      assert.strictEqual(yield* echo.echo("after"), "after")
    }))

  it.scoped("calls move to the other replicas when one disappears under load", () =>
    Effect.gen(function*() {
      const a = yield* makeHooks("a")
      const b = yield* makeHooks("b")
      const scopeA = yield* Scope.make()
      const serverA = yield* serveReplica(a, { deploymentId }).pipe(Scope.extend(scopeA))
      const serverB = yield* serveReplica(b, { deploymentId })
      const echo = yield* clientOf(Echo, { deploymentId, addresses: [serverA.address, serverB.address] })
      const seen = yield* Effect.forEach(Array.from({ length: 400 }, (_, i) => i), (i) =>
        (i === 150 ? Effect.zipRight(Scope.close(scopeA, Effect.void as any), echo.whoami()) : echo.whoami()).pipe(
          Effect.either
        ), { concurrency: 16 })
      const failures = seen.filter(Either.isLeft)
      assert.deepStrictEqual(failures, [])
      const after = yield* Effect.forEach(Array.from({ length: 20 }), () => echo.whoami())
      assert.deepStrictEqual(new Set(after), new Set(["b"]))
      assert.isTrue(seen.some((r) => Either.isRight(r) && r.right === "a"))
    }))

  it.scoped("routing keys stick to a replica and spread across replicas", () =>
    Effect.gen(function*() {
      const a = yield* serveReplica(yield* makeHooks("a"), { deploymentId })
      const b = yield* serveReplica(yield* makeHooks("b"), { deploymentId })
      const c = yield* serveReplica(yield* makeHooks("c"), { deploymentId })
      const echo = yield* clientOf(Echo, { deploymentId, addresses: [a.address, b.address, c.address] })
      const keys = Array.from({ length: 60 }, (_, i) => `user-${i}`)
      const first = yield* Effect.forEach(keys, echo.routed)
      const second = yield* Effect.forEach(keys, echo.routed, { concurrency: 8 })
      assert.deepStrictEqual(second, first)
      assert.deepStrictEqual(new Set(first), new Set(["a", "b", "c"]))
      const rr = yield* Effect.forEach(Array.from({ length: 6 }), () => echo.whoami())
      assert.deepStrictEqual(new Set(rr), new Set(["a", "b", "c"]))
    }))
})
