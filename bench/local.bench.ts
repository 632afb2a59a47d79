/**
 * The cost of a local component call against a plain `Context.Tag` service
 * call, measured in the same process and run. Target: ≤ 3×, method metrics
 * on (they always are), for a handler that returns `Effect.succeed`.
 *
 * A second, informational case (not held to the target) uses handlers
 * written with `Effect.gen` on both sides: those take the general path
 * (component attribution set on the fiber, latency timed on every call).
 */
import { Component, Weaver, WeaverConfig } from "@effect-weaver/core"
import { App } from "@effect-weaver/runtime"
import * as TransportLocal from "@effect-weaver/transport-local"
import { Context, Effect, Schema } from "effect"

const ROUNDS = 7
const WARMUP_ROUNDS = 2
const TARGET = 3

class EchoService extends Context.Tag("bench/EchoService")<EchoService, {
  readonly echo: (n: number) => Effect.Effect<number>
}>() {}

class EchoComponent extends Component.Tag("bench/Echo")<EchoComponent>()({
  echo: Component.method({ payload: Schema.Number, success: Schema.Number })
}) {}

class GenEchoComponent extends Component.Tag("bench/GenEcho")<GenEchoComponent>()({
  echo: Component.method({ payload: Schema.Number, success: Schema.Number })
}) {}

const succeedEcho = (n: number) => Effect.succeed(n)
const genEcho = (n: number) =>
  Effect.gen(function*() {
    return n
  })

const EchoImpl = Component.implement(EchoComponent, Effect.succeed({ echo: succeedEcho }))
const GenEchoImpl = Component.implement(GenEchoComponent, Effect.succeed({ echo: genEcho }))

const app = Weaver.app({ components: [EchoImpl, GenEchoImpl] })

const median = (xs: ReadonlyArray<number>) => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

interface Result {
  readonly name: string
  readonly calls: number
  readonly baseline: number
  readonly ours: number
  readonly ratio: number
  readonly baselineNs: ReadonlyArray<number>
  readonly oursNs: ReadonlyArray<number>
}

/** Times `calls` calls of `echo` on the Context.Tag service and on the component, alternating, in rounds. */
const compare = (
  name: string,
  calls: number,
  serviceEcho: (n: number) => Effect.Effect<number>,
  component: typeof EchoComponent | typeof GenEchoComponent,
  clients: Context.Context<never>
) => {
  const baseline = Effect.gen(function*() {
    const s = yield* EchoService
    let sum = 0
    for (let i = 0; i < calls; i++) sum += yield* s.echo(i)
    return sum
  }).pipe(Effect.provideService(EchoService, { echo: serviceEcho }))
  const ours = Effect.gen(function*() {
    const c = yield* component
    let sum = 0
    for (let i = 0; i < calls; i++) sum += yield* c.echo(i)
    return sum
  }).pipe(Effect.provide(clients as Context.Context<EchoComponent | GenEchoComponent>))
  const expected = (calls * (calls - 1)) / 2

  const time = (effect: Effect.Effect<number, unknown>) =>
    Effect.suspend(() => {
      const start = performance.now()
      return Effect.flatMap(effect, (sum) => {
        const elapsed = performance.now() - start
        return sum === expected
          ? Effect.succeed((elapsed * 1e6) / calls)
          : Effect.dieMessage(`${name}: wrong sum ${sum}, expected ${expected}`)
      })
    })

  return Effect.gen(function*() {
    for (let i = 0; i < WARMUP_ROUNDS; i++) {
      yield* time(baseline)
      yield* time(ours)
    }
    const baselineNs: Array<number> = []
    const oursNs: Array<number> = []
    for (let i = 0; i < ROUNDS; i++) {
      // Alternate which goes first, so neither always runs on a warmer (or more fragmented) heap.
      if (i % 2 === 0) {
        baselineNs.push(yield* time(baseline))
        oursNs.push(yield* time(ours))
      } else {
        oursNs.push(yield* time(ours))
        baselineNs.push(yield* time(baseline))
      }
    }
    // Each round runs both back to back, so the ratio within a round cancels most of the machine's drift.
    const ratio = median(oursNs.map((ns, i) => ns / baselineNs[i]!))
    return { name, calls, baseline: median(baselineNs), ours: median(oursNs), ratio, baselineNs, oursNs } as Result
  })
}

const program = Effect.gen(function*() {
  const weavelet = yield* App.makeWeavelet(app, { config: WeaverConfig.empty() })
  const clients = weavelet.clients("main")
  const target = yield* compare("Effect.succeed handler", 200_000, succeedEcho, EchoComponent, clients)
  const gen = yield* compare("Effect.gen handler", 50_000, genEcho, GenEchoComponent, clients)
  return { target, gen }
})

const { gen, target } = await Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(TransportLocal.layer)))
const pass = target.ratio <= TARGET
const fmt = (n: number) => n.toFixed(1)

const table = (result: Result) => {
  const rows = [
    ["case", "ns/call (median)", "rounds (ns/call)"],
    ["Context.Tag service (baseline)", fmt(result.baseline), result.baselineNs.map(fmt).join(" ")],
    ["local component call", fmt(result.ours), result.oursNs.map(fmt).join(" ")]
  ]
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)))
  const line = (row: ReadonlyArray<string>) => `| ${row.map((cell, i) => cell.padEnd(widths[i]!)).join(" | ")} |`
  return [
    `${result.name}: ${ROUNDS} rounds × ${result.calls} calls, after ${WARMUP_ROUNDS} warm-up rounds`,
    "",
    line(rows[0]!),
    `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`,
    ...rows.slice(1).map(line),
    ""
  ]
}

process.stdout.write(
  [
    "local call vs Context.Tag service call, method metrics on",
    "",
    ...table(target),
    `ratio (median of per-round ratios): ${target.ratio.toFixed(2)}× (target ≤ ${TARGET}×) ${pass ? "PASS" : "FAIL"}`,
    "",
    ...table(gen),
    `ratio (median of per-round ratios): ${gen.ratio.toFixed(2)}× (informational, no target)`,
    ""
  ].join("\n")
)
if (!pass) process.exitCode = 1
