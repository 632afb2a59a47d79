import { Component, Weaver, WeaverConfig } from "@effect-weaver/core"
import { App, Perfetto, StatusServer, Tracing } from "@effect-weaver/runtime"
import * as TransportLocal from "@effect-weaver/transport-local"
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import * as OtelApi from "@opentelemetry/api"
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node"
import { Context, Deferred, Effect, Fiber, FiberRef, Option, Schema, type Tracer } from "effect"

class NotFound extends Schema.TaggedError<NotFound>()("NotFound", { key: Schema.String }) {}

class Reverser extends Component.Tag("tracing/Reverser")<Reverser>()({
  reverse: Component.method({ payload: Schema.String, success: Schema.String }),
  lookup: Component.method({ payload: Schema.String, success: Schema.String, error: NotFound })
}) {}

const ReverserImpl = Component.implement(
  Reverser,
  Effect.succeed({
    reverse: (s: string) => Effect.succeed([...s].reverse().join("")).pipe(Effect.withSpan("reverse.inner")),
    lookup: (key: string) => Effect.fail(new NotFound({ key }))
  })
)

const Main = Weaver.main(
  Effect.gen(function*() {
    const reverser = yield* Reverser
    yield* Weaver.serve(
      "hello",
      HttpRouter.empty.pipe(
        HttpRouter.get(
          "/hello",
          Effect.gen(function*() {
            const { name } = yield* HttpServerRequest.schemaSearchParams(Schema.Struct({ name: Schema.String }))
            return HttpServerResponse.text(`Hello, ${yield* reverser.reverse(name)}!`)
          })
        )
      )
    )
  }),
  { listeners: ["hello"] }
)

const app = Weaver.app({ main: Main, components: [ReverserImpl] })

const origin = { app: "tracing", deploymentId: "d1", replicaId: "r1" }

/** A tracing layer whose spans also land in an in-memory exporter (read it inside the scope: shutdown clears it). */
const traced = () => {
  const exporter = new InMemorySpanExporter()
  const store = Tracing.makeStore()
  const layer = Tracing.layer({
    ...origin,
    store,
    otlpEndpoint: false,
    spanProcessors: [new SimpleSpanProcessor(exporter)]
  })
  return { exporter, store, layer }
}

/** Runs main with the local transport and waits for the listener address. */
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
  const fiber = yield* Effect.forkScoped(App.runMain(app, weavelet))
  const address = yield* Deferred.await(listening).pipe(Effect.timeout("5 seconds"))
  return { address, fiber, weavelet }
})

const get = (url: string, headers?: Record<string, string>) =>
  Effect.promise(async () => {
    const response = await fetch(url, { headers: headers ?? {} })
    return { status: response.status, body: await response.text() }
  })

const byName = (spans: ReadonlyArray<Tracing.Span>, name: string) => {
  const found = spans.filter((span) => span.name === name)
  assert.strictEqual(found.length, 1, `one span named ${name} in ${spans.map((s) => s.name).join(", ")}`)
  return found[0]!
}

describe("Tracing", () => {
  it.live("an HTTP request, the local call it makes and a user span form one trace", () => {
    const { exporter, layer, store } = traced()
    return Effect.gen(function*() {
      const { address } = yield* start
      const response = yield* get(`http://${address}/hello?name=abc`)
      assert.strictEqual(response.body, "Hello, cba!")
      const spans = yield* waitForSpans(store, 3)
      const http = byName(spans, "http.server GET")
      const call = byName(spans, "tracing/Reverser.reverse")
      const inner = byName(spans, "reverse.inner")
      assert.strictEqual(http.kind, "server")
      assert.strictEqual(call.kind, "internal")
      assert.deepStrictEqual(call.attributes, {
        component: "tracing/Reverser",
        method: "reverse",
        caller: "main",
        remote: false
      })
      assert.strictEqual(call.parentSpanId, http.spanId)
      assert.strictEqual(inner.parentSpanId, call.spanId)
      assert.deepStrictEqual(new Set(spans.map((s) => s.traceId)), new Set([http.traceId]))
      assert.strictEqual(http.app, "tracing")
      assert.strictEqual(exporter.getFinishedSpans().length, 3)
    }).pipe(Tracing.withSampling("always"), Effect.scoped, Effect.provide(layer), Effect.provide(TransportLocal.layer))
  })

  it.live("a sampled incoming traceparent is honoured even when sampling is off", () => {
    const { layer, store } = traced()
    const traceId = "0af7651916cd43dd8448eb211c80319c"
    const parent = "b7ad6b7169203331"
    return Effect.gen(function*() {
      const { address } = yield* start
      yield* get(`http://${address}/hello?name=x`)
      yield* get(`http://${address}/hello?name=y`, { traceparent: `00-${traceId}-${"1".repeat(16)}-00` })
      yield* get(`http://${address}/hello?name=z`, { traceparent: `00-${traceId}-${parent}-01` })
      const spans = yield* waitForSpans(store, 3)
      const http = byName(spans, "http.server GET")
      assert.strictEqual(http.traceId, traceId)
      assert.strictEqual(http.parentSpanId, parent)
      assert.strictEqual(byName(spans, "tracing/Reverser.reverse").parentSpanId, http.spanId)
      // Unsampled requests record nothing, not even the user span in the handler: it is not sampled either.
      assert.deepStrictEqual(store.traces().map((t) => t.traceId), [traceId])
    }).pipe(Tracing.withSampling("never"), Effect.scoped, Effect.provide(layer), Effect.provide(TransportLocal.layer))
  })

  it.live("calls without a span in the calling fiber create none; typed errors mark the span", () => {
    const { exporter, layer } = traced()
    return Effect.gen(function*() {
      const { weavelet } = yield* start
      const calls = Effect.gen(function*() {
        const reverser = yield* Reverser
        assert.strictEqual(yield* reverser.reverse("ab"), "ba")
        assert.strictEqual(exporter.getFinishedSpans().length, 1, "only the user span inside the handler")
        const error = yield* Effect.flip(reverser.lookup("missing")).pipe(Effect.withSpan("caller"))
        assert.strictEqual(error._tag, "NotFound")
      })
      yield* (calls.pipe(Effect.provide(weavelet.clients("main"))) as Effect.Effect<void>)
      const spans = exporter.getFinishedSpans()
      const lookup = spans.find((s) => s.name === "tracing/Reverser.lookup")
      assert.isDefined(lookup)
      assert.strictEqual(lookup!.status.code, 2 /* ERROR */)
      assert.strictEqual(
        lookup!.parentSpanContext?.spanId,
        spans.find((s) => s.name === "caller")!.spanContext().spanId
      )
    }).pipe(Effect.scoped, Effect.provide(layer), Effect.provide(TransportLocal.layer))
  })

  it.live("withChildSpan makes a current child span with its attributes, ended even when interrupted", () => {
    const store = Tracing.makeStore()
    return Effect.gen(function*() {
      const child = Tracing.withChildSpan(
        Effect.zipRight(Effect.annotateCurrentSpan("inner", 1), Effect.withSpan(Effect.void, "grandchild")),
        "child",
        { kind: "client", attributes: { component: "c" } }
      )
      yield* child.pipe(Effect.withSpan("root"))
      const stuck = Tracing.withChildSpan(Effect.never, "stuck", { kind: "internal" })
      yield* Effect.timeout(stuck, "10 millis").pipe(Effect.ignore, Effect.withSpan("root2"))
      const spans = yield* waitForSpans(store, 5)
      const root = byName(spans, "root")
      const made = byName(spans, "child")
      assert.strictEqual(made.parentSpanId, root.spanId)
      assert.strictEqual(made.traceId, root.traceId)
      assert.strictEqual(made.kind, "client")
      assert.deepStrictEqual(made.attributes, { component: "c", inner: 1 })
      assert.strictEqual(byName(spans, "grandchild").parentSpanId, made.spanId)
      assert.strictEqual(byName(spans, "stuck").parentSpanId, byName(spans, "root2").spanId)
      // Outside the child again: the root is current.
      yield* Effect.withSpan(
        Effect.flatMap(Effect.currentSpan, (span) =>
          Tracing.withChildSpan(Effect.void, "c", { kind: "internal" }).pipe(
            Effect.zipRight(Effect.currentSpan),
            Effect.map((after) => assert.strictEqual(after, span))
          )),
        "root3"
      )
    }).pipe(Effect.provide(Tracing.layer({ ...origin, store, otlpEndpoint: false })))
  })

  it.live("after withChildSpan the fiber's span is its parent again, whether or not the child wrote a FiberRef", () => {
    const ref = FiberRef.unsafeMake(0)
    const store = Tracing.makeStore()
    const child = (body: Effect.Effect<unknown>) =>
      Tracing.withChildSpan(
        Effect.zipRight(body, Effect.map(Effect.currentSpan, (span) => span.name)),
        "child",
        { kind: "internal" }
      )
    // Spans started after the child are children of the parent, not of the ended child.
    const parentIsRoot = (root: Tracer.AnySpan) =>
      Effect.gen(function*() {
        assert.strictEqual((yield* Effect.currentSpan).spanId, root.spanId)
        // withChildSpan first: it reads the fiber's cached span, which Effect.withSpan's own context write refreshes.
        for (
          const next of [
            yield* Tracing.withChildSpan(Effect.currentSpan, "next", { kind: "internal" }),
            yield* Effect.withSpan(Effect.currentSpan, "next")
          ]
        ) {
          assert.strictEqual(Option.getOrThrow(next.parent).spanId, root.spanId)
        }
      })
    return Effect.gen(function*() {
      const root = yield* Effect.currentSpan
      assert.strictEqual(yield* child(Effect.void), "child")
      yield* parentIsRoot(root)
      assert.strictEqual(yield* child(FiberRef.set(ref, 1)), "child")
      yield* parentIsRoot(root)
      assert.strictEqual(yield* FiberRef.get(ref), 1)
    }).pipe(Effect.withSpan("root"), Effect.provide(Tracing.layer({ ...origin, store, otlpEndpoint: false })))
  })

  it.live("withChildSpan keeps the caller's services and FiberRefs, and what the child provides, sets or forks", () => {
    class Caller extends Context.Tag("tracing/test/Caller")<Caller, string>() {}
    class Inner extends Context.Tag("tracing/test/Inner")<Inner, string>() {}
    const ref = FiberRef.unsafeMake("outer")
    const store = Tracing.makeStore()
    return Effect.gen(function*() {
      const seen = yield* Tracing.withChildSpan(
        Effect.gen(function*() {
          const span = yield* Effect.currentSpan
          const caller = yield* Caller
          const inner = yield* Effect.provideService(Inner, "inner")(Inner)
          const context = yield* Effect.context<never>()
          yield* FiberRef.set(ref, "set in the child")
          const forked = yield* Effect.fork(Effect.map(Effect.currentSpan, (s) => s.spanId))
          return {
            span: span.spanId,
            caller,
            inner,
            keys: [...context.unsafeMap.keys()].sort(),
            forkedSpan: yield* Fiber.join(forked),
            ref: yield* FiberRef.get(ref)
          }
        }),
        "child",
        { kind: "internal" }
      ).pipe(Effect.provideService(Caller, "caller"), Effect.withSpan("root"))
      assert.strictEqual(seen.caller, "caller")
      assert.strictEqual(seen.inner, "inner")
      assert.strictEqual(seen.forkedSpan, seen.span)
      assert.strictEqual(seen.ref, "set in the child")
      assert.deepStrictEqual(seen.keys.filter((key) => key.startsWith("tracing/test") || key === "effect/ParentSpan"), [
        "effect/ParentSpan",
        "tracing/test/Caller"
      ])
      const spans = yield* waitForSpans(store, 2)
      assert.strictEqual(byName(spans, "child").spanId, seen.span)
      // After the child, the caller's own span and FiberRef writes made inside stay as Effect leaves them.
      assert.strictEqual((yield* Effect.currentSpan.pipe(Effect.option))._tag, "None")
    }).pipe(Effect.provide(Tracing.layer({ ...origin, store, otlpEndpoint: false })))
  })

  it.live("with an OpenTelemetry context manager registered, OpenTelemetry code sees the fiber's span", () => {
    const store = Tracing.makeStore()
    const provider = new NodeTracerProvider()
    provider.register()
    return Effect.gen(function*() {
      const [effectSpan, otelSpanId] = yield* Effect.withSpan(
        Effect.zip(
          Effect.currentSpan,
          Effect.sync(() => OtelApi.trace.getActiveSpan()?.spanContext().spanId)
        ),
        "outer"
      )
      assert.strictEqual(otelSpanId, effectSpan.spanId)
      // Outside any span, nothing is active.
      assert.isUndefined(OtelApi.trace.getActiveSpan())
      yield* waitForSpans(store, 1)
    }).pipe(
      Effect.provide(Tracing.layer({ ...origin, store, otlpEndpoint: false })),
      Effect.ensuring(Effect.sync(() => {
        OtelApi.trace.disable()
        OtelApi.context.disable()
        OtelApi.propagation.disable()
      }))
    )
  })

  it.live("onSpans receives finished spans in batches, the last one when the layer closes", () =>
    Effect.gen(function*() {
      const batches: Array<ReadonlyArray<Tracing.Span>> = []
      const layer = Tracing.layer({
        ...origin,
        otlpEndpoint: false,
        exportInterval: "20 millis",
        onSpans: (spans) => Effect.sync(() => batches.push(spans))
      })
      yield* Effect.gen(function*() {
        yield* Effect.void.pipe(Effect.withSpan("first"))
        yield* Effect.sleep("100 millis")
        assert.deepStrictEqual(batches.flat().map((s) => s.name), ["first"])
        yield* Effect.void.pipe(Effect.withSpan("last"))
      }).pipe(Effect.provide(layer))
      assert.deepStrictEqual(batches.flat().map((s) => s.name), ["first", "last"])
      const decoded = Schema.decodeUnknownSync(Tracing.Spans)(JSON.parse(JSON.stringify(batches.flat())))
      assert.strictEqual(decoded[1]!.replicaId, "r1")
    }))

  it.live("the status server lists traces by latency and errors, and fetches one as Perfetto JSON", () => {
    const store = Tracing.makeStore()
    store.add([
      span({ traceId: "t1", spanId: "a", startMicros: 1000, endMicros: 1500 }),
      span({ traceId: "t2", spanId: "b", startMicros: 2000, endMicros: 52_000, status: "error" }),
      span({ traceId: "t2", spanId: "c", parentSpanId: "b", startMicros: 3000, endMicros: 4000, name: "child" })
    ])
    return Effect.gen(function*() {
      const server = yield* StatusServer.make({ ...origin, traces: store })
      const base = `http://${server.address}`
      const all = JSON.parse((yield* get(`${base}${Tracing.tracesPath}`)).body) as Array<Tracing.TraceSummary>
      assert.deepStrictEqual(all.map((t) => t.traceId), ["t2", "t1"])
      assert.deepStrictEqual(all[0], {
        traceId: "t2",
        name: "root",
        app: "tracing",
        startMicros: 2000,
        durationMicros: 50_000,
        spans: 2,
        error: true
      })
      const slow = JSON.parse((yield* get(`${base}${Tracing.tracesPath}?lat_low=10ms&lat_hi=1s`)).body)
      assert.deepStrictEqual(slow.map((t: Tracing.TraceSummary) => t.traceId), ["t2"])
      const fast = JSON.parse((yield* get(`${base}${Tracing.tracesPath}?lat_hi=10ms`)).body)
      assert.deepStrictEqual(fast.map((t: Tracing.TraceSummary) => t.traceId), ["t1"])
      const errors = JSON.parse((yield* get(`${base}${Tracing.tracesPath}?errs=true`)).body)
      assert.deepStrictEqual(errors.map((t: Tracing.TraceSummary) => t.traceId), ["t2"])
      const bad = yield* get(`${base}${Tracing.tracesPath}?lat_low=soon`)
      assert.strictEqual(bad.status, 400)
      assert.match(bad.body, /lat_low/)
      const fetched = yield* get(`${base}${Tracing.traceFetchPath}?trace_id=t2`)
      const events = JSON.parse(fetched.body) as Array<Perfetto.Event>
      assert.deepStrictEqual(events.filter((e) => e.ph === "X").map((e) => e.name), ["root", "child"])
      assert.strictEqual((yield* get(`${base}${Tracing.traceFetchPath}?trace_id=nope`)).status, 404)
    }).pipe(Effect.scoped)
  })
})

describe("Tracing.makeStore", () => {
  it("keeps the newest traces within its trace and span bounds", () => {
    const store = Tracing.makeStore({ maxTraces: 3, maxSpans: 5 })
    for (let i = 0; i < 5; i++) store.add([span({ traceId: `t${i}`, spanId: `s${i}`, startMicros: i })])
    assert.deepStrictEqual(store.size(), { traces: 3, spans: 3 })
    assert.deepStrictEqual(store.traces().map((t) => t.traceId), ["t4", "t3", "t2"])
    store.add([1, 2, 3].map((j) => span({ traceId: "big", spanId: `b${j}`, startMicros: 10 + j })))
    // 3 + 3 spans > 5: the oldest trace goes.
    assert.deepStrictEqual(store.size(), { traces: 3, spans: 5 })
    assert.deepStrictEqual(store.trace("t2"), [])
    store.add([4, 5, 6, 7, 8, 9].map((j) => span({ traceId: "huge", spanId: `h${j}`, startMicros: 20 + j })))
    assert.deepStrictEqual(store.size(), { traces: 1, spans: 5 })
    assert.deepStrictEqual(store.trace("huge").map((s) => s.spanId), ["h5", "h6", "h7", "h8", "h9"])
  })
})

describe("Tracing.Spans", () => {
  it("accepts what the Span schema accepts and rejects the rest", () => {
    const good = span({ traceId: "t", spanId: "s", parentSpanId: "p", attributes: { a: "x", b: 1, c: true } })
    const bad: ReadonlyArray<unknown> = [
      null,
      { ...good, kind: "sideways" },
      { ...good, status: "fine" },
      { ...good, startMicros: "0" },
      { ...good, parentSpanId: 7 },
      { ...good, attributes: { a: { nested: 1 } } },
      { ...good, attributes: [] },
      (({ app: _, ...rest }) => rest)(good)
    ]
    const isSpan = Schema.is(Tracing.Span)
    assert.isTrue(Tracing.isSpan(good) && isSpan(good))
    for (const value of bad) assert.strictEqual(Tracing.isSpan(value), isSpan(value), JSON.stringify(value))
    assert.deepStrictEqual(Schema.decodeUnknownSync(Tracing.Spans)([good]), [good])
    assert.throws(() => Schema.decodeUnknownSync(Tracing.Spans)([good, bad[1]]), /Spans/)
  })
})

describe("Tracing.makeSampler", () => {
  it("samples about once per second by default, and always for a sampled traceparent", () => {
    let now = 0
    const sample = Tracing.makeSampler("default", { now: () => now, random: () => 0.5 })
    assert.isTrue(sample({}))
    assert.isFalse(sample({}))
    now = 999
    assert.isFalse(sample({}))
    assert.isTrue(sample({ traceparent: `00-${"a".repeat(32)}-${"b".repeat(16)}-01` }))
    assert.isFalse(sample({ traceparent: `00-${"a".repeat(32)}-${"b".repeat(16)}-00` }))
    now = 1000
    assert.isTrue(sample({}))
    assert.isFalse(Tracing.makeSampler("never")({}))
    assert.isTrue(Tracing.makeSampler("always")({}))
  })

  it("a sampled request longer than the interval does not make the next one sampled", () => {
    let now = 0
    const sample = Tracing.makeSampler("default", { now: () => now, random: () => 0.5 })
    assert.isTrue(sample({}))
    now = 3000 // the sampled request ends, past the next sample time (1000); the next request starts
    sample.ended()
    assert.isFalse(sample({}))
    now = 3999
    assert.isFalse(sample({}))
    now = 4000
    assert.isTrue(sample({}))
  })

  it("reads its settings from the environment", () => {
    assert.strictEqual(Tracing.samplingFromEnv({ WEAVER_TRACE_SAMPLE: "0.25" }), 0.25)
    assert.strictEqual(Tracing.samplingFromEnv({ WEAVER_TRACE_SAMPLE: "always" }), "always")
    assert.strictEqual(Tracing.samplingFromEnv({}), "default")
    assert.strictEqual(
      Tracing.otlpEndpointFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318/" }),
      "http://c:4318/v1/traces"
    )
  })
})

describe("Perfetto.encode", () => {
  it("emits complete events with one thread per span, and process and thread names", () => {
    const events = Perfetto.encode([
      span({ traceId: "t", spanId: "b", parentSpanId: "a", startMicros: 20, endMicros: 30, name: "child" }),
      span({ traceId: "t", spanId: "a", startMicros: 10, endMicros: 50, attributes: { component: "c" } }),
      span({ traceId: "t", spanId: "c", startMicros: 25, endMicros: 26, replicaId: "other", name: "remote" })
    ])
    const complete = events.filter((e) => e.ph === "X")
    assert.deepStrictEqual(complete.map((e) => [e.name, e.ts, e.dur, e.tid]), [
      ["root", 10, 40, 1],
      ["child", 20, 10, 2],
      ["remote", 25, 1, 3]
    ])
    assert.deepStrictEqual(complete[0]!.args, { component: "c", traceId: "t", spanId: "a", status: "ok" })
    assert.strictEqual(complete[1]!.args.parentSpanId, "a")
    assert.strictEqual(complete[0]!.cat, "server")
    const processes = events.filter((e) => e.ph === "M" && e.name === "process_name")
    assert.strictEqual(processes.length, 2, "two replicas are two processes")
    assert.notStrictEqual(complete[2]!.pid, complete[0]!.pid)
    const threads = events.filter((e) => e.ph === "M" && e.name === "thread_name")
    assert.deepStrictEqual(threads.map((e) => e.args.name), ["root", "child", "remote"])
    // The format is a bare JSON array.
    assert.isTrue(Array.isArray(JSON.parse(JSON.stringify(events))))
  })
})

const span = (fields: Partial<Tracing.Span> & { readonly traceId: string; readonly spanId: string }): Tracing.Span => ({
  name: "root",
  kind: "server",
  startMicros: 0,
  endMicros: (fields.startMicros ?? 0) + 1,
  status: "ok",
  attributes: {},
  app: "tracing",
  replicaId: "r1",
  pid: 4242,
  ...fields
})

/** Spans are exported when they end, which may be just after the HTTP response is written. */
const waitForSpans = (store: Tracing.Store, count: number) =>
  Effect.gen(function*() {
    for (let i = 0; i < 100; i++) {
      const traces = store.traces()
      const spans = traces.flatMap((t) => store.trace(t.traceId))
      if (spans.length >= count) return spans
      yield* Effect.sleep("10 millis")
    }
    return assert.fail(`fewer than ${count} spans after 1 s: ${JSON.stringify(store.size())}`)
  })
