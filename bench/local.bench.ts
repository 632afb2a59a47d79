/**
 * The cost of a local component call against a plain `Context.Tag` service
 * call, measured in the same process and run. Target: ≤ 3×, method metrics
 * on (they always are).
 */
import { Component, Weaver, WeaverConfig } from "@effect-weaver/core"
import * as TransportLocal from "@effect-weaver/transport-local"
import { Context, Effect, Schema } from "effect"

const CALLS = 200_000
const ROUNDS = 7
const WARMUP_ROUNDS = 2
const TARGET = 3

class EchoService extends Context.Tag("bench/EchoService")<EchoService, {
  readonly echo: (n: number) => Effect.Effect<number>
}>() {}

class EchoComponent extends Component.Tag("bench/Echo")<EchoComponent>()({
  echo: Component.method({ payload: Schema.Number, success: Schema.Number })
}) {}

const EchoImpl = Component.implement(EchoComponent, Effect.succeed({ echo: (n: number) => Effect.succeed(n) }))

const app = Weaver.app({ components: [EchoImpl] })

const baselineLoop = Effect.gen(function*() {
  const s = yield* EchoService
  let sum = 0
  for (let i = 0; i < CALLS; i++) sum += yield* s.echo(i)
  return sum
})

const componentLoop = Effect.gen(function*() {
  const c = yield* EchoComponent
  let sum = 0
  for (let i = 0; i < CALLS; i++) sum += yield* c.echo(i)
  return sum
})

const median = (xs: ReadonlyArray<number>) => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

const program = Effect.gen(function*() {
  const weavelet = yield* Weaver.makeWeavelet(app, { config: WeaverConfig.empty() })
  const baseline = baselineLoop.pipe(Effect.provideService(EchoService, { echo: (n) => Effect.succeed(n) }))
  const ours = componentLoop.pipe(Effect.provide(weavelet.clients("main")))
  const expected = (CALLS * (CALLS - 1)) / 2

  const time = (effect: Effect.Effect<number>) =>
    Effect.suspend(() => {
      const start = performance.now()
      return Effect.map(effect, (sum) => {
        const elapsed = performance.now() - start
        if (sum !== expected) throw new Error(`wrong sum ${sum}, expected ${expected}`)
        return (elapsed * 1e6) / CALLS
      })
    })

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
  return { baseline: median(baselineNs), ours: median(oursNs), ratio, baselineNs, oursNs }
})

const result = await Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(TransportLocal.layer)))
const ratio = result.ratio
const pass = ratio <= TARGET
const fmt = (n: number) => n.toFixed(1)

const rows = [
  ["case", "ns/call (median)", "rounds (ns/call)"],
  ["Context.Tag service (baseline)", fmt(result.baseline), result.baselineNs.map(fmt).join(" ")],
  ["local component call", fmt(result.ours), result.oursNs.map(fmt).join(" ")]
]
const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)))
const line = (row: ReadonlyArray<string>) => `| ${row.map((cell, i) => cell.padEnd(widths[i]!)).join(" | ")} |`
process.stdout.write(
  [
    `local call vs Context.Tag service: ${ROUNDS} rounds × ${CALLS} calls, after ${WARMUP_ROUNDS} warm-up rounds`,
    "",
    line(rows[0]!),
    `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`,
    ...rows.slice(1).map(line),
    "",
    `ratio (median of per-round ratios): ${ratio.toFixed(2)}× (target ≤ ${TARGET}×) ${pass ? "PASS" : "FAIL"}`,
    ""
  ].join("\n")
)
if (!pass) process.exitCode = 1
