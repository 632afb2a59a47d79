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
import { Component, Tracing, Transport, Weavelet, Weaver, WeaverConfig } from "@effect-weaver/core"
import { Server, TransportRpc } from "@effect-weaver/transport-rpc"
import { Context, Effect, Schema, Stream } from "effect"
import * as ChildProcess from "node:child_process"
import { fileURLToPath } from "node:url"

const ROUND_MILLIS = Number(process.argv[2] ?? 1.5) * 1000
const ROUNDS = 5
const IN_FLIGHT = 64
const PAYLOAD = "x".repeat(16)
const DEPLOYMENT = "bench-tracing"
const self = fileURLToPath(import.meta.url)
// As the HTTP server span does: capturing a stack trace per span costs more than the span (source maps).
const noStack = { captureStackTrace: false } as const

class Echo extends Component.Tag("bench/Echo")<Echo>()({
  echo: Component.method({ payload: Schema.String, success: Schema.String })
}) {}
const EchoImpl = Component.implement(Echo, Effect.succeed({ echo: (s: string) => Effect.succeed(s) }))

const origin = (replicaId: string) => ({
  app: "bench",
  deploymentId: DEPLOYMENT,
  replicaId,
  otlpEndpoint: false as const
})

const runServer = (tracing: boolean) => {
  process.stdin.on("end", () => process.exit(0))
  process.stdin.resume()
  const serve = Effect.gen(function*() {
    const transport = yield* TransportRpc.make({ resolve: () => Stream.empty })
    const weavelet = yield* Weaver.makeWeavelet(Weaver.app({ components: [EchoImpl] }), {
      config: WeaverConfig.empty(),
      deploymentId: DEPLOYMENT
    }).pipe(Effect.provideService(Transport.Transport, transport))
    const server = yield* Server.serve({ port: 0 }).pipe(Effect.provideService(Weavelet.Weavelet, weavelet))
    process.stdout.write(`PORT ${server.port}\n`)
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
    const transport = yield* TransportRpc.make({
      deploymentId: DEPLOYMENT,
      resolve: () => Stream.make([`127.0.0.1:${port}`])
    })
    const weavelet = yield* Weaver.makeWeavelet(Weaver.app({ components: [] }), {
      config: WeaverConfig.empty(),
      deploymentId: DEPLOYMENT,
      extraComponents: [Echo]
    }).pipe(Effect.provideService(Transport.Transport, transport))
    const echo = Context.unsafeGet(weavelet.clients("main"), Echo)
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

const children = new Set<ChildProcess.ChildProcess>()
const killChildren = () => {
  for (const child of children) {
    if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, "SIGKILL")
  }
  children.clear()
}

const startServer = (tracing: boolean) =>
  new Promise<number>((resolve, reject) => {
    const child = ChildProcess.spawn(process.execPath, [...process.execArgv, self, "server", tracing ? "on" : "off"], {
      stdio: ["pipe", "pipe", "inherit"]
    })
    children.add(child)
    let out = ""
    child.stdout!.on("data", (chunk: Buffer) => {
      out += chunk.toString()
      const match = /PORT (\d+)/.exec(out)
      if (match) resolve(Number(match[1]))
    })
    child.on("exit", (code) => reject(new Error(`server exited (${code}) before listening`)))
    setTimeout(() => reject(new Error("server did not start within 20 s")), 20_000).unref()
  })

const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

const main = async () => {
  process.on("exit", killChildren)
  const plain = await startServer(false)
  const traced = await startServer(true)
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
