/**
 * What tracing costs on the RPC transport: a 16-byte echo component called
 * through `@effect-weaver/transport-rpc`, server in a child process on
 * 127.0.0.1, 64 calls in flight, throughput in rounds that alternate between:
 *
 * - off: no tracer anywhere (neither process installs `Tracing.layer`);
 * - sampled: `Tracing.layer` in both processes, and requests traced as
 *   `Weaver.serve` samples them by default (about one per second): the
 *   production setting. Target: ≤ 10 % throughput loss against off;
 * - every call: each call made inside a sampled span, so every call makes a
 *   client span, carries trace context and makes a server span
 *   (informational: the cost of tracing itself).
 *
 * `npm run build && node --import tsx bench/tracing.bench.ts [seconds per round]`
 * The script starts its own servers (`tracing.bench.ts server on|off`) and kills them by pid.
 */
import { Tracing } from "@effect-weaver/runtime"
import { Effect } from "effect"
import { fileURLToPath } from "node:url"
import { echoClient, exitWithParent, killChildren, serveEcho, startServer } from "./echo.js"

const ROUND_MILLIS = Number(process.argv[2] ?? 1.5) * 1000
const ROUNDS = 5
const IN_FLIGHT = 64
const PAYLOAD = "x".repeat(16)
const DEPLOYMENT = "bench-tracing"
const self = fileURLToPath(import.meta.url)
// As the HTTP server span does: capturing a stack trace per span costs more than the span (source maps).
const noStack = { captureStackTrace: false } as const

const origin = (replicaId: string) => ({
  app: "bench",
  deploymentId: DEPLOYMENT,
  replicaId,
  otlpEndpoint: false as const
})

const runServer = (tracing: boolean) => {
  exitWithParent()
  const serve = Effect.gen(function*() {
    const port = yield* serveEcho(DEPLOYMENT)
    process.stdout.write(`PORT ${port}\n`)
    return yield* Effect.never
  })
  return Effect.runPromise(
    Effect.scoped(tracing ? Effect.provide(serve, Tracing.layer(origin("server"))) : serve)
  )
}

type Mode = "off" | "sampled" | "every call"
const MODES: ReadonlyArray<Mode> = ["off", "sampled", "every call"]

/** Calls completed in `millis` with `IN_FLIGHT` loops. */
const measure = (port: number, mode: Mode, millis: number) => {
  const body = Effect.gen(function*() {
    const echo = yield* echoClient(DEPLOYMENT, port)
    const sample = Tracing.makeSampler("default")
    const call = mode === "every call"
      ? () => Effect.withSpan(echo.echo(PAYLOAD), "request", noStack)
      : mode === "sampled"
      ? () => sample({}) ? Effect.withSpan(echo.echo(PAYLOAD), "request", noStack) : echo.echo(PAYLOAD)
      : () => echo.echo(PAYLOAD)
    const end = performance.now() + millis
    let count = 0
    const loop = Effect.gen(function*() {
      while (performance.now() < end) {
        yield* call()
        count++
      }
    })
    yield* Effect.all(Array.from({ length: IN_FLIGHT }, () => loop), { concurrency: "unbounded", discard: true })
    return count
  }).pipe(Effect.scoped)
  return Effect.runPromise(mode === "off" ? body : Effect.provide(body, Tracing.layer(origin("client"))))
}

const startTracingServer = (tracing: boolean) => startServer(self, [tracing ? "on" : "off"]).then(({ port }) => port)

const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

const main = async () => {
  process.on("exit", killChildren)
  const plain = await startTracingServer(false)
  const traced = await startTracingServer(true)
  const port = (mode: Mode) => mode === "off" ? plain : traced
  for (const mode of MODES) await measure(port(mode), mode, 500) // warm-up
  const rates = new Map<Mode, Array<number>>(MODES.map((mode) => [mode, []]))
  const ratios = new Map<Mode, Array<number>>(MODES.map((mode) => [mode, []]))
  for (let round = 0; round < ROUNDS; round++) {
    const off = (await measure(plain, "off", ROUND_MILLIS)) / (ROUND_MILLIS / 1000)
    rates.get("off")!.push(off)
    for (const mode of MODES.slice(1)) {
      const rate = (await measure(port(mode), mode, ROUND_MILLIS)) / (ROUND_MILLIS / 1000)
      rates.get(mode)!.push(rate)
      ratios.get(mode)!.push(rate / off)
    }
  }
  killChildren()
  process.stdout.write(
    `RPC echo, 16 B, ${IN_FLIGHT} in flight, ${ROUNDS} rounds × ${ROUND_MILLIS / 1000} s per mode\n\n` +
      `| mode       | calls/s (median) | vs off (median of per-round ratios) |\n` +
      `|------------|------------------|-------------------------------------|\n`
  )
  for (const mode of MODES) {
    const ratio = mode === "off" ? 1 : median(ratios.get(mode)!)
    process.stdout.write(
      `| ${mode.padEnd(10)} | ${median(rates.get(mode)!).toFixed(0).padStart(16)} | ${
        `${(ratio * 100).toFixed(1)} %`.padStart(35)
      } |\n`
    )
  }
  const loss = 1 - median(ratios.get("sampled")!)
  const pass = loss <= 0.1
  process.stdout.write(
    `\nsampled tracing: ${(loss * 100).toFixed(1)} % throughput loss (target ≤ 10 %) ${pass ? "PASS" : "FAIL"}\n`
  )
  if (!pass) process.exitCode = 1
}

if (process.argv[2] === "server") {
  void runServer(process.argv[3] === "on")
} else {
  main().catch((error) => {
    killChildren()
    process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`)
    process.exit(1)
  })
}
