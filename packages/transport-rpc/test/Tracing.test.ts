import { Component, Transport, Weaver, WeaverConfig } from "@effect-weaver/core"
import { App, Tracing } from "@effect-weaver/runtime"
import { TransportRpc } from "@effect-weaver/transport-rpc"
import { HttpRouter, HttpServerResponse } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Layer, Schema, Stream } from "effect"

class NotFound extends Schema.TaggedError<NotFound>()("NotFound", { key: Schema.String }) {}

class Reverser extends Component.Tag("tracing/Reverser")<Reverser>()({
  reverse: Component.method({ payload: Schema.String, success: Schema.String }),
  lookup: Component.method({ payload: Schema.String, success: Schema.String, error: NotFound }),
  letters: Component.method({ payload: Schema.Number, success: Schema.String, stream: true })
}) {}

const ReverserImpl = Component.implement(
  Reverser,
  Effect.succeed({
    // Answers synchronously (an Exit): the server's inline fast path, which a traced call must not take.
    reverse: (s: string) => Effect.succeed([...s].reverse().join("")),
    lookup: (key: string) => Effect.fail(new NotFound({ key })).pipe(Effect.withSpan("lookup.inner")),
    letters: (n: number) => Stream.range(1, n).pipe(Stream.map((i) => String.fromCharCode(96 + (i % 26) + 1)))
  })
)

const Main = Weaver.main(
  Effect.gen(function*() {
    const reverser = yield* Reverser
    yield* Weaver.serve(
      "hello",
      HttpRouter.empty.pipe(
        HttpRouter.get("/hello", Effect.map(reverser.reverse("abc"), (s) => HttpServerResponse.text(s)))
      )
    )
  }),
  { listeners: ["hello"] }
)

const app = Weaver.app({ main: Main, components: [ReverserImpl] })

/** The RPC runner's transport: every call crosses a real socket; retriable calls are not duplicated here. */
const rpc = Layer.scoped(Transport.Transport, TransportRpc.makeTest({ duplicateRetriable: false }))

const start = Effect.gen(function*() {
  const listening = yield* Deferred.make<string>()
  const weavelet = yield* App.makeWeavelet(app, {
    config: WeaverConfig.empty(),
    listeners: {
      declared: app.listeners,
      address: () => "127.0.0.1:0",
      onListening: (_, address) => Deferred.succeed(listening, address)
    }
  })
  yield* Effect.forkScoped(App.runMain(app, weavelet))
  const address = yield* Deferred.await(listening).pipe(Effect.timeout("5 seconds"))
  return { address, weavelet }
})

const waitForSpans = (store: Tracing.Store, count: number) =>
  Effect.gen(function*() {
    for (let i = 0; i < 100; i++) {
      const spans = store.traces().flatMap((t) => store.trace(t.traceId))
      if (spans.length >= count) return spans
      yield* Effect.sleep("10 millis")
    }
    return assert.fail(`fewer than ${count} spans after 1 s: ${JSON.stringify(store.size())}`)
  })

const one = (spans: ReadonlyArray<Tracing.Span>, name: string, kind: Tracing.Span["kind"]) => {
  const found = spans.filter((span) => span.name === name && span.kind === kind)
  assert.strictEqual(found.length, 1, `one ${kind} span ${name} in ${JSON.stringify(spans.map((s) => s.name))}`)
  return found[0]!
}

const origin = { app: "tracing", deploymentId: "d1", replicaId: "r1", otlpEndpoint: false } as const

describe("Tracing over RPC", () => {
  it.live("HTTP span → client span → server span over the socket, one trace", () => {
    const store = Tracing.makeStore()
    return Effect.gen(function*() {
      const { address } = yield* start
      const response = yield* Effect.promise(() => fetch(`http://${address}/hello`).then((r) => r.text()))
      assert.strictEqual(response, "cba")
      const spans = yield* waitForSpans(store, 3)
      const http = one(spans, "http.server GET", "server")
      const client = one(spans, "tracing/Reverser.reverse", "client")
      const server = one(spans, "tracing/Reverser.reverse", "server")
      assert.strictEqual(client.parentSpanId, http.spanId)
      assert.strictEqual(server.parentSpanId, client.spanId)
      assert.deepStrictEqual(new Set(spans.map((s) => s.traceId)), new Set([http.traceId]))
      assert.deepStrictEqual(client.attributes, {
        component: "tracing/Reverser",
        method: "reverse",
        caller: "main",
        remote: true
      })
      assert.deepStrictEqual(server.attributes, client.attributes)
    }).pipe(
      Tracing.withSampling("always"),
      Effect.scoped,
      Effect.provide(Layer.merge(rpc, Tracing.layer({ ...origin, store })))
    )
  })

  it.live("a typed error marks client and server spans; an untraced call's handler records no span", () => {
    const store = Tracing.makeStore()
    return Effect.gen(function*() {
      const { weavelet } = yield* start
      const calls = Effect.gen(function*() {
        const reverser = yield* Reverser
        // The first call starts the RPC server inside this traced fiber.
        const error = yield* Effect.flip(reverser.lookup("k")).pipe(Effect.withSpan("caller"))
        assert.strictEqual(error._tag, "NotFound")
        yield* Effect.flip(reverser.lookup("untraced"))
      })
      yield* (calls.pipe(Effect.provide(weavelet.clients("main"))) as Effect.Effect<void>)
      const spans = yield* waitForSpans(store, 4)
      const caller = one(spans, "caller", "internal")
      const client = one(spans, "tracing/Reverser.lookup", "client")
      const server = one(spans, "tracing/Reverser.lookup", "server")
      assert.strictEqual(client.parentSpanId, caller.spanId)
      assert.strictEqual(server.parentSpanId, client.spanId)
      assert.strictEqual(client.status, "error")
      assert.strictEqual(server.status, "error")
      // The untraced call's handler span records nothing: not a root of a trace of its own, nor under a stale parent.
      const inner = spans.filter((s) => s.name === "lookup.inner")
      assert.strictEqual(inner.length, 1)
      assert.strictEqual(inner[0]!.traceId, caller.traceId)
      assert.strictEqual(inner[0]!.parentSpanId, server.spanId)
    }).pipe(Effect.scoped, Effect.provide(Layer.merge(rpc, Tracing.layer({ ...origin, store }))))
  })

  it.live("a stream is one client span and one server span, not one per element", () => {
    const store = Tracing.makeStore()
    return Effect.gen(function*() {
      const { weavelet } = yield* start
      const calls = Effect.gen(function*() {
        const reverser = yield* Reverser
        // Started first, untraced, so that the RPC server does not start inside the traced call.
        yield* Stream.runDrain(reverser.letters(1))
        const count = yield* Stream.runCount(reverser.letters(2000)).pipe(Effect.withSpan("caller"))
        assert.strictEqual(count, 2000)
      })
      yield* (calls.pipe(Effect.provide(weavelet.clients("main"))) as Effect.Effect<void>)
      yield* waitForSpans(store, 3)
      // Time for spans per element, were there any, to arrive too.
      yield* Effect.sleep("50 millis")
      const all = store.traces().flatMap((t) => store.trace(t.traceId))
      const caller = one(all, "caller", "internal")
      const client = one(all, "tracing/Reverser.letters", "client")
      const server = one(all, "tracing/Reverser.letters", "server")
      assert.strictEqual(client.parentSpanId, caller.spanId)
      assert.strictEqual(server.parentSpanId, client.spanId)
      assert.strictEqual(client.status, "ok")
    }).pipe(Effect.scoped, Effect.provide(Layer.merge(rpc, Tracing.layer({ ...origin, store }))))
  })
})
