/**
 * What tracing a call costs: local component calls made inside a sampled
 * span (each call makes a span, recorded into the trace store) against the
 * same calls inside an unsampled request's span (`Tracing.unsampledSpan`,
 * what `Weaver.serve` runs unsampled requests under), in the same process
 * and run, with `Tracing.layer` installed as `weaver single deploy` installs
 * it. Target: a traced call costs ≤ 2× an untraced one, in CPU time of the
 * process (wall time on a shared machine carries other processes' turns).
 *
 * Calls are made in requests of 100, each request in its own span (as
 * collatz makes 111 per request); the component's method annotates its
 * span (`Effect.annotateCurrentSpan`), as application code does.
 *
 * `npm run build && node --import tsx bench/traced.bench.ts`
 */
import { Component, Weaver, WeaverConfig } from "@effect-weaver/core"
import { App, Tracing } from "@effect-weaver/runtime"
import * as TransportLocal from "@effect-weaver/transport-local"
import { type Context, Effect, Layer, Schema } from "effect"

const ROUNDS = 9
const WARMUP_ROUNDS = 3
const REQUESTS = 200
const CALLS_PER_REQUEST = 100
const CALLS = REQUESTS * CALLS_PER_REQUEST
const TARGET = 2

class Echo extends Component.Tag("bench/Echo")<Echo>()({
  echo: Component.method({ payload: Schema.Number, success: Schema.Number })
}) {}

const EchoImpl = Component.implement(
  Echo,
  Effect.succeed({ echo: (n: number) => Effect.as(Effect.annotateCurrentSpan("n", n), n) })
)

const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

const program = Effect.gen(function*() {
  const weavelet = yield* App.makeWeavelet(Weaver.app({ components: [EchoImpl] }), { config: WeaverConfig.empty() })
  const store = yield* Tracing.TraceStore
  // One request: CALLS_PER_REQUEST calls in its span.
  const request = (first: number) =>
    Effect.gen(function*() {
      const echo = yield* Echo
      let sum = 0
      for (let i = first; i < first + CALLS_PER_REQUEST; i++) sum += yield* echo.echo(i)
      return sum
    })
  const requests = (inSpan: (request: Effect.Effect<number, never, Echo>) => Effect.Effect<number, never, Echo>) =>
    Effect.gen(function*() {
      let sum = 0
      for (let r = 0; r < REQUESTS; r++) sum += yield* inSpan(request(r * CALLS_PER_REQUEST))
      return sum
    }).pipe(Effect.provide(weavelet.clients("main") as Context.Context<Echo>))
  const expected = (CALLS * (CALLS - 1)) / 2
  // CPU time of this process, not wall time: on a shared machine, other processes' turns on the cores would
  // otherwise land in either figure at random.
  const cpuMicros = () => {
    const usage = process.cpuUsage()
    return usage.user + usage.system
  }
  const time = (effect: Effect.Effect<number>) =>
    Effect.suspend(() => {
      const start = cpuMicros()
      return Effect.flatMap(effect, (sum) => {
        const elapsed = cpuMicros() - start
        return sum === expected ? Effect.succeed((elapsed * 1e3) / CALLS) : Effect.dieMessage(`wrong sum ${sum}`)
      })
    })
  const untraced = time(
    requests((request) => Effect.suspend(() => Effect.withParentSpan(request, Tracing.unsampledSpan({}))))
  )
  const traced = time(requests((request) => Effect.withSpan(request, "request", { captureStackTrace: false })))

  const before = store.size().spans
  yield* untraced
  if (store.size().spans !== before) return yield* Effect.dieMessage("untraced calls recorded spans")
  for (let i = 0; i < WARMUP_ROUNDS; i++) {
    yield* untraced
    yield* traced
  }
  const untracedNs: Array<number> = []
  const tracedNs: Array<number> = []
  for (let i = 0; i < ROUNDS; i++) {
    // Alternate which goes first, so neither always runs on a warmer heap.
    if (i % 2 === 0) {
      untracedNs.push(yield* untraced)
      tracedNs.push(yield* traced)
    } else {
      tracedNs.push(yield* traced)
      untracedNs.push(yield* untraced)
    }
  }
  return { untracedNs, tracedNs, stored: store.size() }
})

const origin = { app: "bench", deploymentId: "bench-traced", replicaId: "r1", otlpEndpoint: false as const }
const { stored, tracedNs, untracedNs } = await Effect.runPromise(
  program.pipe(Effect.scoped, Effect.provide(Layer.merge(TransportLocal.layer, Tracing.layer(origin))))
)
const ratio = median(tracedNs.map((ns, i) => ns / untracedNs[i]!))
const pass = ratio <= TARGET
const fmt = (n: number) => n.toFixed(0)
process.stdout.write(
  [
    `local component calls with Tracing.layer, ${ROUNDS} rounds × ${REQUESTS} requests × ${CALLS_PER_REQUEST} calls, after ${WARMUP_ROUNDS} warm-up rounds`,
    "",
    "| case                                  | CPU ns/call (median) | rounds (CPU ns/call) |",
    "|---------------------------------------|----------------------|----------------------|",
    `| untraced (unsampled request's span)   | ${fmt(median(untracedNs)).padStart(20)} | ${
      untracedNs.map(fmt).join(" ")
    } |`,
    `| traced (a span per call, stored)      | ${fmt(median(tracedNs)).padStart(20)} | ${
      tracedNs.map(fmt).join(" ")
    } |`,
    "",
    `traced call vs untraced call (median of per-round ratios): ${ratio.toFixed(2)}× (target ≤ ${TARGET}×) ${
      pass ? "PASS" : "FAIL"
    }`,
    `(trace store at the end: ${stored.traces} traces, ${stored.spans} spans)`,
    ""
  ].join("\n")
)
if (!pass) process.exitCode = 1
