import { Component, RemoteCallError, Transport, Weaver, WeaverConfig } from "@effect-weaver/core"
import { App, MethodMetrics } from "@effect-weaver/runtime"
import { TransportRpc } from "@effect-weaver/transport-rpc"
import { assert, describe, it } from "@effect/vitest"
import type * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { clientOf, Echo, echoImpl, EchoSkewed, makeHooks, proxy, serveReplica, spawnReplica } from "./utils/fixture.js"

const deploymentId = "dep-1"

/** Severs the connection the call came on once the handshake reply is surely out, and never answers. */
const severAfterHandshake = (sever: () => void) =>
  Effect.sleep("10 millis").pipe(Effect.zipRight(Effect.sync(sever)), Effect.zipRight(Effect.never))

const remoteError = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.flip(effect).pipe(Effect.map((error) => {
    assert.instanceOf(error, RemoteCallError)
    return error as RemoteCallError
  }))

describe("TransportRpc", () => {
  it.scopedLive("round-trips payloads and results through the method schemas", () =>
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

  it.scopedLive("declared errors arrive as values; defects as RemoteCallError Handler", () =>
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

  it.scopedLive("a payload the server cannot decode is a Decode error and the connection survives", () =>
    Effect.gen(function*() {
      const server = yield* serveReplica(yield* makeHooks(), { deploymentId })
      const skewed = yield* clientOf(EchoSkewed, { deploymentId, addresses: [server.address] })
      const error = yield* remoteError(skewed.echo(12))
      assert.strictEqual(error.reason, "Decode")
      assert.include(error.detail, "Expected string")
      assert.strictEqual(server.connections(), 1)
    }))

  it.scopedLive("a payload msgpack cannot carry fails with Decode and is never sent", () =>
    Effect.gen(function*() {
      class Big extends Component.Tag("test/Big")<Big>()({
        take: Component.method({ payload: Schema.BigIntFromSelf })
      }) {}
      const hooks = yield* makeHooks()
      const server = yield* serveReplica(hooks, { deploymentId })
      const big = yield* clientOf(Big, { deploymentId, addresses: [server.address] })
      const error = yield* remoteError(big.take(10n ** 30n))
      assert.strictEqual(error.reason, "Decode")
      assert.include(error.detail, "payload cannot be packed")
      assert.include(error.detail, "too large to fit")
    }))

  it.scopedLive("refuses a server of another deployment with a clear error", () =>
    Effect.gen(function*() {
      const server = yield* serveReplica(yield* makeHooks(), { deploymentId })
      const stranger = yield* clientOf(Echo, { deploymentId: "dep-2", addresses: [server.address] })
      const error = yield* remoteError(stranger.echo("x"))
      assert.strictEqual(error.reason, "Protocol")
      assert.include(error.detail, "deployment mismatch")
      const friend = yield* clientOf(Echo, { deploymentId, addresses: [server.address] })
      assert.strictEqual(yield* friend.echo("x"), "x")
    }))

  it.scopedLive("a retriable method is retried after transport failures; retry: false never is", () =>
    Effect.gen(function*() {
      const hooks = yield* makeHooks()
      const server = yield* serveReplica(hooks, { deploymentId })
      const front = yield* proxy(server.address)
      hooks.onCount = (n) => n <= 2 ? severAfterHandshake(front.sever) : Effect.void
      const echo = yield* clientOf(Echo, { deploymentId, addresses: [front.address] })
      assert.strictEqual(yield* echo.count(), 3)
      assert.strictEqual(hooks.calls, 3)

      hooks.calls = 0
      hooks.onCount = () => severAfterHandshake(front.sever)
      const once = yield* remoteError(echo.countOnce())
      assert.strictEqual(once.reason, "Unreachable")
      assert.strictEqual(hooks.calls, 1)

      hooks.onCount = () => Effect.void
      assert.strictEqual(yield* echo.countOnce(), 2, "the client reconnects after the connection dropped")
    }))

  it.scopedLive("retries are bounded in attempts", () =>
    Effect.gen(function*() {
      const hooks = yield* makeHooks()
      const server = yield* serveReplica(hooks, { deploymentId })
      const front = yield* proxy(server.address)
      hooks.onCount = () => severAfterHandshake(front.sever)
      const echo = yield* clientOf(Echo, { deploymentId, addresses: [front.address], retry: { attempts: 4 } })
      const error = yield* remoteError(echo.count())
      assert.strictEqual(error.reason, "Unreachable")
      assert.strictEqual(hooks.calls, 4)
    }))

  it.scopedLive("an unreachable replica fails with Unreachable within the retry time bound", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const server = yield* serveReplica(yield* makeHooks(), { deploymentId }).pipe(Scope.extend(scope))
      yield* Scope.close(scope, Effect.void as any)
      const echo = yield* clientOf(Echo, { deploymentId, addresses: [server.address], retry: { within: 300 } })
      const start = Date.now()
      const error = yield* remoteError(echo.echo("x"))
      assert.strictEqual(error.reason, "Unreachable")
      assert.isBelow(Date.now() - start, 2000)
    }))

  it.scopedLive("a deadline expires with Timeout and interrupts the handler", () =>
    Effect.gen(function*() {
      const hooks = yield* makeHooks()
      const server = yield* serveReplica(hooks, { deploymentId })
      const echo = yield* clientOf(Echo, { deploymentId, addresses: [server.address] })
      const start = Date.now()
      const error = yield* remoteError(Component.withTimeout(echo.hang(), "100 millis"))
      assert.strictEqual(error.reason, "Timeout")
      assert.isAtLeast(Date.now() - start, 90)
      yield* Deferred.await(hooks.interrupted).pipe(Effect.timeout("2 seconds"))
      assert.isTrue(yield* Component.withTimeout(echo.hasDeadline(), "1 second"))
      assert.isFalse(yield* echo.hasDeadline())
    }))

  it.scopedLive("a method's timeout applies to calls made without an earlier deadline", () =>
    Effect.gen(function*() {
      const hooks = yield* makeHooks()
      const server = yield* serveReplica(hooks, { deploymentId })
      const echo = yield* clientOf(Echo, { deploymentId, addresses: [server.address] })
      const start = Date.now()
      assert.strictEqual((yield* remoteError(echo.hangBriefly())).reason, "Timeout")
      assert.isBelow(Date.now() - start, 1000)
      yield* Deferred.await(hooks.interrupted).pipe(Effect.timeout("2 seconds"))
    }))

  it.scopedLive("interrupting the caller cancels the handler on the server", () =>
    Effect.gen(function*() {
      const hooks = yield* makeHooks()
      const server = yield* serveReplica(hooks, { deploymentId })
      const echo = yield* clientOf(Echo, { deploymentId, addresses: [server.address] })
      const fiber = yield* Effect.fork(echo.hang())
      yield* Deferred.await(hooks.started).pipe(Effect.timeout("2 seconds"))
      yield* Fiber.interrupt(fiber)
      yield* Deferred.await(hooks.interrupted).pipe(Effect.timeout("2 seconds"))
      assert.strictEqual(yield* echo.echo("after"), "after")

      const again = yield* makeHooks()
      const other = yield* serveReplica(again, { deploymentId })
      const echo2 = yield* clientOf(Echo, { deploymentId, addresses: [other.address] })
      const timedOut = yield* echo2.hang().pipe(Effect.timeout("50 millis"), Effect.flip)
      assert.strictEqual(timedOut._tag, "TimeoutException")
      yield* Deferred.await(again.interrupted).pipe(Effect.timeout("2 seconds"))
    }))

  it.scopedLive("a call in flight keeps its id while thousands of others come and go on the connection", () =>
    Effect.gen(function*() {
      const hooks = yield* makeHooks()
      const server = yield* serveReplica(hooks, { deploymentId })
      const echo = yield* clientOf(Echo, { deploymentId, addresses: [server.address] })
      const hanging = yield* Effect.fork(echo.hang())
      yield* Deferred.await(hooks.started).pipe(Effect.timeout("2 seconds"))
      // Ids wrap around the connection's id table many times, then more calls at once than the table holds.
      const texts = Array.from({ length: 3000 }, (_, i) => `call ${i}`)
      assert.deepStrictEqual(yield* Effect.forEach(texts, echo.echo, { concurrency: 20 }), texts)
      assert.deepStrictEqual(yield* Effect.forEach(texts, echo.echo, { concurrency: 300 }), texts)
      // The cancel frame still names the hanging call: the server interrupts that handler.
      yield* Fiber.interrupt(hanging)
      yield* Deferred.await(hooks.interrupted).pipe(Effect.timeout("2 seconds"))
    }))

  it.scopedLive("calls move to the other replicas when one disappears under load", () =>
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
      const after = yield* Effect.forEach(Array.from({ length: 20 }), () =>
        echo.whoami())
      assert.deepStrictEqual(new Set(after), new Set(["b"]))
      assert.isTrue(seen.some((r) =>
        Either.isRight(r) && r.right === "a"
      ))
    }))

  it.scopedLive("routing keys stick to a replica and spread across replicas", () =>
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

  it.scopedLive("records request and reply bytes for remote calls", () =>
    Effect.gen(function*() {
      const server = yield* serveReplica(yield* makeHooks(), { deploymentId })
      const echo = yield* clientOf(Echo, { deploymentId, addresses: [server.address] })
      const labels = MethodMetrics.labels({ caller: "main", component: "test/Echo", method: "echo", remote: true })
      const request = Metric.taggedWithLabels(MethodMetrics.bytesRequest, labels)
      const reply = Metric.taggedWithLabels(MethodMetrics.bytesReply, labels)
      const before = yield* Metric.value(request)
      yield* echo.echo("x".repeat(100))
      const after = yield* Metric.value(request)
      assert.strictEqual(after.count - before.count, 1)
      assert.isAbove(after.sum - before.sum, 100)
      assert.isAbove((yield* Metric.value(reply)).sum, 100)
    }))

  it.scopedLive("counts remote calls once each, with errors and latency: failed in the handler, unsent, interrupted", () =>
    Effect.gen(function*() {
      const hooks = yield* makeHooks()
      const server = yield* serveReplica(hooks, { deploymentId })
      const echo = yield* clientOf(Echo, { deploymentId, addresses: [server.address] })
      const metricsOf = (method: string) => {
        const labels = MethodMetrics.labels({ caller: "main", component: "test/Echo", method, remote: true })
        return Effect.all([
          Metric.value(Metric.taggedWithLabels(MethodMetrics.count, labels)),
          Metric.value(Metric.taggedWithLabels(MethodMetrics.errorCount, labels)),
          Metric.value(Metric.taggedWithLabels(MethodMetrics.latencyMicros, labels))
        ]).pipe(Effect.map(([count, errors, latency]) => ({ count: count.count, errors: errors.count, latency })))
      }
      const delta = <A, E>(method: string, calls: Effect.Effect<A, E>) =>
        Effect.gen(function*() {
          const before = yield* metricsOf(method)
          yield* calls
          const after = yield* metricsOf(method)
          return {
            count: after.count - before.count,
            errors: after.errors - before.errors,
            latencies: after.latency.count - before.latency.count,
            micros: after.latency.sum - before.latency.sum
          }
        })

      const served = yield* delta("echo", Effect.repeatN(echo.echo("x"), 2))
      assert.deepInclude(served, { count: 3, errors: 0, latencies: 3 })
      assert.isAbove(served.micros, 0)
      assert.deepInclude(yield* delta("fail", Effect.either(echo.fail("no"))), { count: 1, errors: 1, latencies: 1 })
      const unsent = delta("ping", Effect.either(Component.withTimeout(echo.ping(), "0 millis")))
      assert.deepInclude(yield* unsent, { count: 1, errors: 1, latencies: 1 })
      const interrupted = Effect.gen(function*() {
        const fiber = yield* Effect.fork(echo.hang())
        yield* Deferred.await(hooks.started)
        yield* Fiber.interrupt(fiber)
      })
      assert.deepInclude(yield* delta("hang", interrupted), { count: 1, errors: 1, latencies: 1 })
    }))

  it.scopedLive("layerTest sends every call over a socket and runs retriable calls twice", () =>
    Effect.gen(function*() {
      const hooks = yield* makeHooks()
      const transport = yield* TransportRpc.makeTest()
      const weavelet = yield* App.makeWeavelet(Weaver.app({ components: [echoImpl(hooks)] }), {
        config: WeaverConfig.empty()
      }).pipe(Effect.provideService(Transport.Transport, transport))
      const echo = yield* Effect.provide(Echo, weavelet.clients("main") as Context.Context<Echo>)
      assert.strictEqual(yield* echo.count(), 2)
      assert.strictEqual(hooks.calls, 2)
      const labels = MethodMetrics.labels({ caller: "main", component: "test/Echo", method: "countOnce", remote: true })
      const sent = Metric.taggedWithLabels(MethodMetrics.bytesRequest, labels)
      const before = (yield* Metric.value(sent)).count
      assert.strictEqual(yield* echo.countOnce(), 3)
      assert.strictEqual(hooks.calls, 3)
      assert.strictEqual((yield* Metric.value(sent)).count - before, 1)
      const error = yield* Effect.flip(echo.fail("typed"))
      assert.strictEqual(error._tag, "Nope")
    }))

  it.scopedLive("calls follow replica set updates; removed replicas' connections close", () =>
    Effect.gen(function*() {
      const a = yield* serveReplica(yield* makeHooks("a"), { deploymentId })
      const b = yield* serveReplica(yield* makeHooks("b"), { deploymentId })
      const replicas = yield* SubscriptionRef.make<ReadonlyArray<string>>([a.address])
      const echo = yield* clientOf(Echo, { deploymentId, addresses: replicas.changes })
      assert.deepStrictEqual(yield* Effect.forEach(Array.from({ length: 4 }), () => echo.whoami()), [
        "a",
        "a",
        "a",
        "a"
      ])
      yield* SubscriptionRef.set(replicas, [b.address])
      yield* Effect.sleep("20 millis")
      assert.deepStrictEqual(yield* Effect.forEach(Array.from({ length: 4 }), () => echo.whoami()), [
        "b",
        "b",
        "b",
        "b"
      ])
      for (let i = 0; i < 50 && a.connections() > 0; i++) yield* Effect.sleep("10 millis")
      assert.strictEqual(a.connections(), 0, "the idle connection to a removed replica is closed")
      yield* SubscriptionRef.set(replicas, [a.address, b.address])
      yield* Effect.sleep("20 millis")
      const both = yield* Effect.forEach(Array.from({ length: 4 }), () => echo.whoami())
      assert.deepStrictEqual(new Set(both), new Set(["a", "b"]))
    }))

  it.scopedLive("a call made while a component has no replica waits for one, even a retry: false call", () =>
    Effect.gen(function*() {
      const hooks = yield* makeHooks()
      const server = yield* serveReplica(hooks, { deploymentId })
      const replicas = yield* SubscriptionRef.make<ReadonlyArray<string>>([server.address])
      const echo = yield* clientOf(Echo, { deploymentId, addresses: replicas.changes })
      assert.strictEqual(yield* echo.countOnce(), 1)
      // Every replica is gone (restarting, say): calls wait for the next replica set.
      yield* SubscriptionRef.set(replicas, [])
      const waiting = yield* Effect.fork(Effect.all([echo.countOnce(), echo.echo("waited")], { concurrency: 2 }))
      yield* Effect.sleep("100 millis")
      assert.isNull(waiting.unsafePoll(), "the calls wait while no replica is known")
      assert.strictEqual(hooks.calls, 1)
      yield* SubscriptionRef.set(replicas, [server.address])
      assert.deepStrictEqual(yield* Fiber.join(waiting), [2, "waited"])

      // The wait is bounded by the retry time bound, and by the caller's deadline.
      const bounded = yield* clientOf(Echo, {
        deploymentId,
        addresses: Stream.make<[ReadonlyArray<string>]>([]),
        replicaWait: "200 millis"
      })
      const start = Date.now()
      const error = yield* remoteError(bounded.echo("x"))
      assert.strictEqual(error.reason, "Unreachable")
      assert.include(error.detail, "no replica became reachable within 200 ms (replicas: none known)")
      assert.isAtLeast(Date.now() - start, 190)
      const timeout = yield* remoteError(Component.withTimeout(bounded.echo("x"), "50 millis"))
      assert.strictEqual(timeout.reason, "Timeout")
    }))

  it.scopedLive(
    "a call to a component whose only replica died waits for its replacement, however late the routing drops the dead one",
    () =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const dead = yield* serveReplica(yield* makeHooks("dead"), { deploymentId }).pipe(Scope.extend(scope))
        const replicas = yield* SubscriptionRef.make<ReadonlyArray<string>>([dead.address])
        const echo = yield* clientOf(Echo, { deploymentId, addresses: replicas.changes })
        assert.strictEqual(yield* echo.whoami(), "dead")
        yield* Scope.close(scope, Exit.void)
        // The dead replica stays in the routing for 600 ms, longer than the pipeline's backoff between 10 attempts
        // adds up to (about 320 ms): each attempt also waits for the refused dial's backoff, which doubles.
        const calls = yield* Effect.fork(
          Effect.all([echo.whoami(), echo.whoami(), echo.countOnce().pipe(Effect.either)], { concurrency: "unbounded" })
        )
        yield* Effect.sleep("600 millis")
        const next = yield* serveReplica(yield* makeHooks("next"), { deploymentId })
        yield* SubscriptionRef.set(replicas, [next.address])
        const [first, second, once] = yield* Fiber.join(calls)
        assert.deepStrictEqual([first, second], ["next", "next"])
        // A retry: false call is not retried after its dial failed: the client cannot tell whether the server got it.
        assert.isTrue(Either.isLeft(once) && once.left.reason === "Unreachable")
      }),
    30_000
  )

  it.scopedLive("the caller's trace context reaches the handler", () =>
    Effect.gen(function*() {
      const server = yield* serveReplica(yield* makeHooks(), { deploymentId })
      const echo = yield* clientOf(Echo, { deploymentId, addresses: [server.address] })
      // An unsampled caller sends no context: its handler runs under the server's span that records nothing.
      const untraced = yield* echo.traceId()
      const [outer, seen] = yield* Effect.all([Effect.currentSpan, echo.traceId()]).pipe(Effect.withSpan("caller"))
      assert.strictEqual(seen, outer.traceId)
      assert.notStrictEqual(untraced, outer.traceId)
    }))

  it.scopedLive("an address that cannot be dialled is Unreachable, not a defect", () =>
    Effect.gen(function*() {
      const echo = yield* clientOf(Echo, { deploymentId, addresses: ["127.0.0.1:99999"], retry: { attempts: 2 } })
      assert.strictEqual((yield* remoteError(echo.echo("x"))).reason, "Unreachable")
    }))

  it.scopedLive(
    "a replica process killed with SIGKILL under load: calls move to the other replica",
    () =>
      Effect.gen(function*() {
        const [a, b] = yield* Effect.all([spawnReplica(deploymentId), spawnReplica(deploymentId)], {
          concurrency: 2
        }).pipe(Effect.orDie)
        const echo = yield* clientOf(Echo, { deploymentId, addresses: [a.address, b.address] })
        const results = yield* Effect.forEach(Array.from({ length: 300 }, (_, i) => i), (i) =>
          (i === 100
            ? Effect.sync(() => process.kill(a.pid, "SIGKILL"))
            : Effect.void).pipe(
              Effect.zipRight(echo.whoami()),
              Effect.either
            ), { concurrency: 16 })
        assert.deepStrictEqual(results.filter(Either.isLeft), [])
        const served = new Set(results.map((r) => Either.getOrThrow(r)))
        assert.deepStrictEqual(served, new Set([String(a.pid), String(b.pid)]))
        const after = yield* Effect.forEach(Array.from({ length: 10 }), () => echo.whoami())
        assert.deepStrictEqual(new Set(after), new Set([String(b.pid)]))
      }),
    60_000
  )
})
