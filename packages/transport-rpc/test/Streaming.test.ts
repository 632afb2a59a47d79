/**
 * Streaming methods over the wire protocol: elements in order under credit-based flow control, typed errors,
 * cancellation of the producer when the consumer stops, deadlines, connection loss, and memory bounded on both
 * sides whatever the stream's length.
 */
import { Component, RemoteCallError } from "@effect-weaver/core"
import { MethodMetrics } from "@effect-weaver/runtime"
import { assert, describe, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Stream from "effect/Stream"
import * as Net from "node:net"
import * as V8 from "node:v8"
import * as Vm from "node:vm"
import { clientOf, Echo, makeHooks, Nope, proxy, serveReplica, spawnReplica } from "./utils/fixture.js"

const deploymentId = "dep-stream"

const remoteError = (error: unknown): RemoteCallError => {
  assert.instanceOf(error, RemoteCallError)
  return error as RemoteCallError
}

describe("streaming over RPC", () => {
  it.scopedLive("elements arrive in order across many credit windows; empty streams end", () =>
    Effect.gen(function*() {
      const server = yield* serveReplica(yield* makeHooks(), { deploymentId })
      const echo = yield* clientOf(Echo, { deploymentId, addresses: [server.address], streamWindow: 16 })
      const all = Chunk.toReadonlyArray(yield* Stream.runCollect(echo.items({ count: 5000, size: 4 })))
      assert.strictEqual(all.length, 5000)
      all.forEach((item, i) => assert.strictEqual(item, String(i).padEnd(4, "x")))
      assert.strictEqual(Chunk.size(yield* Stream.runCollect(echo.items({ count: 0, size: 1 }))), 0)
      // Streams and ordinary calls share the connection.
      const [a, b, c] = yield* Effect.all([
        Stream.runCollect(echo.items({ count: 300, size: 1 })),
        Stream.runCollect(echo.items({ count: 300, size: 2 })),
        echo.echo("between")
      ], { concurrency: "unbounded" })
      assert.strictEqual(Chunk.size(a), 300)
      assert.strictEqual(Chunk.size(b), 300)
      assert.strictEqual(c, "between")
    }))

  it.scopedLive("a stream is one call in the method metrics: counted once, its reply bytes summed, an error once", () =>
    Effect.gen(function*() {
      const server = yield* serveReplica(yield* makeHooks(), { deploymentId })
      const echo = yield* clientOf(Echo, { deploymentId, addresses: [server.address] })
      const labels = (method: string) =>
        MethodMetrics.labels({ caller: "main", component: "test/Echo", method, remote: true })
      const state = (method: string) =>
        Effect.all({
          count: Metric.value(MethodMetrics.count.pipe(Metric.taggedWithLabels(labels(method)))),
          errors: Metric.value(MethodMetrics.errorCount.pipe(Metric.taggedWithLabels(labels(method)))),
          reply: Metric.value(MethodMetrics.bytesReply.pipe(Metric.taggedWithLabels(labels(method)))),
          latency: Metric.value(MethodMetrics.latencyMicros.pipe(Metric.taggedWithLabels(labels(method))))
        })
      const before = yield* state("items")
      yield* Stream.runDrain(echo.items({ count: 1000, size: 100 }))
      const after = yield* state("items")
      assert.strictEqual(after.count.count - before.count.count, 1)
      assert.strictEqual(after.errors.count - before.errors.count, 0)
      assert.strictEqual(after.reply.count - before.reply.count, 1, "one _bytes_reply observation per stream")
      const bytes = after.reply.sum - before.reply.sum
      assert.isAtLeast(bytes, 1000 * 100)
      // Each element costs its msgpack string (102 bytes) and at most a frame of its own (12 bytes).
      assert.isAtMost(bytes, 1000 * 114)
      assert.strictEqual(after.latency.count - before.latency.count, 1)
      const failing = yield* state("failAfter")
      yield* Effect.exit(Stream.runDrain(echo.failAfter(5)))
      const failed = yield* state("failAfter")
      assert.strictEqual(failed.count.count - failing.count.count, 1)
      assert.strictEqual(failed.errors.count - failing.errors.count, 1)
    }))

  it.scopedLive("a declared error ends the stream typed, after the elements before it", () =>
    Effect.gen(function*() {
      const server = yield* serveReplica(yield* makeHooks(), { deploymentId })
      const echo = yield* clientOf(Echo, { deploymentId, addresses: [server.address] })
      const seen: Array<number> = []
      const error = yield* echo.failAfter(3).pipe(
        Stream.runForEach((n) => Effect.sync(() => seen.push(n))),
        Effect.flip
      )
      assert.deepStrictEqual(seen, [1, 2, 3])
      assert.instanceOf(error, Nope)
      assert.strictEqual((error as Nope).why, "after 3")
    }))

  it.scopedLive("a consumer that takes 10 of an infinite stream cancels the producer: its finalizer runs", () =>
    Effect.gen(function*() {
      const hooks = yield* makeHooks()
      const server = yield* serveReplica(hooks, { deploymentId })
      const echo = yield* clientOf(Echo, { deploymentId, addresses: [server.address] })
      const ten = yield* Stream.runCollect(Stream.take(echo.ticks(), 10))
      assert.deepStrictEqual(Chunk.toReadonlyArray(ten), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
      yield* Deferred.await(hooks.ticksStopped).pipe(Effect.timeout("5 seconds"))
      const at = hooks.produced
      yield* Effect.sleep("50 millis")
      assert.strictEqual(hooks.produced, at, "the producer stopped")
      // The connection is still good.
      assert.strictEqual(yield* echo.echo("after"), "after")
    }))

  it.scopedLive("a stream whose replica cannot be reached is retried on another before its first element", () =>
    Effect.gen(function*() {
      const server = yield* serveReplica(yield* makeHooks(), { deploymentId })
      // An address nothing listens on any more.
      const dead = yield* Effect.async<string>((resume) => {
        const probe = Net.createServer().listen(0, "127.0.0.1", () => {
          const { port } = probe.address() as Net.AddressInfo
          probe.close(() => resume(Effect.succeed(`127.0.0.1:${port}`)))
        })
      })
      const echo = yield* clientOf(Echo, { deploymentId, addresses: [dead, server.address] })
      for (let i = 0; i < 4; i++) {
        const all = yield* Stream.runCollect(echo.items({ count: 500, size: 2 }))
        assert.strictEqual(Chunk.size(all), 500)
      }
    }))

  it.scopedLive("a slow consumer holds the producer to its window", () =>
    Effect.gen(function*() {
      const hooks = yield* makeHooks()
      const server = yield* serveReplica(hooks, { deploymentId })
      const window = 32
      const echo = yield* clientOf(Echo, { deploymentId, addresses: [server.address], streamWindow: window })
      let consumed = 0
      let ahead = 0
      yield* echo.items({ count: 400, size: 8 }).pipe(
        Stream.runForEach(() =>
          Effect.zipRight(
            Effect.sleep("1 millis"),
            Effect.sync(() => {
              consumed++
              ahead = Math.max(ahead, hooks.produced - consumed)
            })
          )
        )
      )
      assert.strictEqual(consumed, 400)
      // The producer holds at most the one element it pulled and cannot send yet.
      assert.isAtMost(ahead, window + 1, `the producer ran ${ahead} elements ahead`)
      assert.isAtLeast(ahead, window / 2, "the window was used")
    }))

  it.scopedLive("a deadline ends a slow stream with Timeout and stops the producer", () =>
    Effect.gen(function*() {
      const hooks = yield* makeHooks()
      const server = yield* serveReplica(hooks, { deploymentId })
      const echo = yield* clientOf(Echo, { deploymentId, addresses: [server.address] })
      const start = Date.now()
      const error = yield* echo.ticks().pipe(
        Stream.tap(() => Effect.sleep("5 millis")),
        Stream.runDrain,
        Component.withTimeout("200 millis"),
        Effect.flip
      )
      assert.strictEqual(remoteError(error).reason, "Timeout")
      assert.isBelow(Date.now() - start, 2000)
      yield* Deferred.await(hooks.ticksStopped).pipe(Effect.timeout("5 seconds"))
    }))

  it.scopedLive("losing the connection mid-stream fails it with Unreachable, not retried after elements", () =>
    Effect.gen(function*() {
      const hooks = yield* makeHooks()
      const server = yield* serveReplica(hooks, { deploymentId })
      const front = yield* proxy(server.address)
      const echo = yield* clientOf(Echo, { deploymentId, addresses: [front.address] })
      let seen = 0
      const error = yield* echo.ticks().pipe(
        Stream.tap(() =>
          Effect.sync(() => {
            if (++seen === 20) front.sever()
          })
        ),
        Stream.runDrain,
        Effect.flip
      )
      assert.strictEqual(remoteError(error).reason, "Unreachable")
      assert.isAtLeast(seen, 20)
      yield* Deferred.await(hooks.ticksStopped).pipe(Effect.timeout("5 seconds"))
    }))

  it.scopedLive(
    "100,000 elements of 1 KiB cross between two processes with memory bounded on both sides",
    () =>
      Effect.gen(function*() {
        const replica = yield* spawnReplica(deploymentId)
        const echo = yield* clientOf(Echo, { deploymentId, addresses: [replica.address] })
        // Live memory, not garbage V8 has not collected yet: a full collection before each sample.
        V8.setFlagsFromString("--expose-gc")
        const gc = Vm.runInNewContext("gc") as () => void
        const run = (count: number) =>
          Effect.gen(function*() {
            yield* echo.memory(true)
            gc()
            const base = process.memoryUsage()
            let peakHeap = base.heapUsed
            let peakRss = base.rss
            let received = 0
            yield* echo.items({ count, size: 1024 }).pipe(
              Stream.runForEach((item) =>
                Effect.sync(() => {
                  if (item.length !== 1024) throw new Error(`element ${received} has ${item.length} characters`)
                  if (++received % 8192 === 0 || received === count) {
                    gc()
                    const { heapUsed, rss } = process.memoryUsage()
                    peakHeap = Math.max(peakHeap, heapUsed)
                    peakRss = Math.max(peakRss, rss)
                  }
                })
              )
            )
            assert.strictEqual(received, count)
            const producer = yield* echo.memory(false)
            return {
              consumerHeap: peakHeap - base.heapUsed,
              consumerRss: peakRss - base.rss,
              producerHeap: producer.heap,
              producerRss: producer.rss
            }
          })
        const small = yield* run(1_000)
        const started = Date.now()
        const large = yield* run(100_000)
        const millis = Date.now() - started
        const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`

        console.log(
          `stream memory growth, 1k vs 100k elements of 1 KiB: ` +
            `consumer heap ${mib(small.consumerHeap)} vs ${mib(large.consumerHeap)}, ` +
            `rss ${mib(small.consumerRss)} vs ${mib(large.consumerRss)}; ` +
            `producer heap ${mib(small.producerHeap)} vs ${mib(large.producerHeap)}, ` +
            `rss ${mib(small.producerRss)} vs ${mib(large.producerRss)}; 100k in ${millis} ms`
        )
        // Buffering the stream would take over 100 MiB (100k strings of 1 KiB) on the side that buffers it.
        // Bounded: the 100k stream holds at most a few MiB more than the 1k one, on either side.
        const slack = 8 * 2 ** 20
        assert.isBelow(large.consumerHeap, small.consumerHeap + slack, "consumer heap growth")
        assert.isBelow(large.producerHeap, small.producerHeap + slack, "producer heap growth")
      }),
    60_000
  )
})
