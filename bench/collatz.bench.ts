/**
 * Component calls inside served HTTP requests, colocated, as `weaver single
 * deploy` runs an app: Service Weaver's collatz example (main → Odd / Even,
 * one call per step; x = 27 takes 111 steps), each step's component
 * annotating its span with `Effect.annotateCurrentSpan`. Measured from a
 * keep-alive HTTP client, requests one at a time, all in the same run:
 *
 * - plain: the same handler over two `Context.Tag` services, served by
 *   `@effect/platform`'s `HttpServer` (Effect's default tracer);
 * - weaver: the app deployed with `weaver single deploy` (the built CLI),
 *   default sampling; its requests are almost all unsampled;
 * - weaver, traced: the same deployment, requests carrying a sampled
 *   `traceparent`, so every call makes a span.
 *
 * The cost of a call is what the calls add to a request: (server CPU time
 * of a request at x = 27 − at x = 1) ÷ 111, read from the server's own
 * `process.cpuUsage()` (GET /cpu) around each request, so that other
 * processes' turns on a shared machine stay out of it; requests for x = 1
 * and x = 27 alternate, and the median of the pairs is taken. The same from
 * wall latencies is shown too. Targets: weaver ≤ 1.5× plain; traced ≤ 2×
 * weaver (a traced call against an untraced one).
 *
 * `npm run build && node --import tsx bench/collatz.bench.ts`
 * The script runs the app itself (`collatz.bench.ts app|server plain`: under the
 * deployer, or as a plain server announcing `PORT <n>`) and kills its
 * processes by pid. `BENCH_NODE_OPTIONS` is added to the deployed processes'
 * NODE_OPTIONS (e.g. `--import $PWD/bench/profile.mjs` to profile them).
 */
import { Component, Weaver } from "@effect-weaver/core"
import { HttpRouter, HttpServer, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import { Context, Effect, Schema } from "effect"
import * as ChildProcess from "node:child_process"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Http from "node:http"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { exitWithParent, killChildren, startServer } from "./echo.js"

const ROUNDS = 7
const REQUESTS = 400
const WARMUP_REQUESTS = 300
const X = 27
const CALLS = 111
const CALL_TARGET = 1.5
const TRACED_TARGET = 2
const self = fileURLToPath(import.meta.url)
const root = Path.resolve(Path.dirname(self), "..")

// ---------------------------------------------------------------------------
// The app, both ways

const odd = (x: number) => Effect.as(Effect.annotateCurrentSpan("collatz.x", x), 3 * x + 1)
const even = (x: number) => Effect.as(Effect.annotateCurrentSpan("collatz.x", x), x / 2)

/** GET /?x=n: follows n's collatz sequence down to 1, one call per step; answers the number of calls. */
const router = (
  step: Effect.Effect<{ readonly odd: typeof odd; readonly even: typeof even }, never, any>
) =>
  HttpRouter.empty.pipe(
    HttpRouter.get(
      "/",
      Effect.gen(function*() {
        const { even, odd } = yield* step
        const params = yield* HttpServerRequest.ParsedSearchParams
        let x = Number(params.x ?? 1)
        let calls = 0
        while (x !== 1) {
          x = x % 2 === 0 ? yield* even(x) : yield* odd(x)
          calls++
        }
        return HttpServerResponse.text(String(calls))
      })
    ),
    HttpRouter.get("/cpu", Effect.sync(() => HttpServerResponse.text(String(cpuMicros()))))
  )

/** CPU time of this process, µs: what the bench reads from each server around a batch of requests. */
const cpuMicros = () => {
  const usage = process.cpuUsage()
  return usage.user + usage.system
}

class Odd extends Component.Tag("collatz/Odd")<Odd>()({
  do: Component.method({ payload: Schema.Number, success: Schema.Number })
}) {}
class Even extends Component.Tag("collatz/Even")<Even>()({
  do: Component.method({ payload: Schema.Number, success: Schema.Number })
}) {}

const weaverApp = Weaver.app({
  main: Weaver.main(
    Effect.gen(function*() {
      const o = yield* Odd
      const e = yield* Even
      const steps = Effect.succeed({ odd: o.do, even: e.do })
      return yield* Weaver.serve("collatz", router(steps))
    }),
    { listeners: ["collatz"] }
  ),
  components: [
    Component.implement(Odd, Effect.succeed({ do: odd })),
    Component.implement(Even, Effect.succeed({ do: even }))
  ]
})

class OddService extends Context.Tag("collatz/OddService")<OddService, { readonly do: typeof odd }>() {}
class EvenService extends Context.Tag("collatz/EvenService")<EvenService, { readonly do: typeof even }>() {}

const plainApp = Effect.gen(function*() {
  const steps = Effect.map(Effect.all([OddService, EvenService]), ([o, e]) => ({ odd: o.do, even: e.do }))
  const app = router(steps).pipe(
    Effect.provideService(OddService, { do: odd }),
    Effect.provideService(EvenService, { do: even })
  )
  const server = yield* HttpServer.HttpServer
  yield* HttpServer.serveEffect()(app)
  const address = server.address
  process.stdout.write(`PORT ${address._tag === "TcpAddress" ? address.port : 0}\n`)
  return yield* Effect.never
}).pipe(
  Effect.provide(NodeHttpServer.layer(() => Http.createServer(), { host: "127.0.0.1", port: 0 })),
  Effect.scoped
)

// ---------------------------------------------------------------------------
// Measurement

const agent = new Http.Agent({ keepAlive: true, maxSockets: 1 })

const get = (address: string, path: string, headers: Http.OutgoingHttpHeaders) =>
  new Promise<string>((resolve, reject) => {
    const [host, port] = [
      address.slice(0, address.lastIndexOf(":")),
      Number(address.slice(address.lastIndexOf(":") + 1))
    ]
    const request = Http.request({ host, port, path, agent, headers }, (response) => {
      let body = ""
      response.setEncoding("utf8")
      response.on("data", (chunk: string) => (body += chunk))
      response.on(
        "end",
        () => response.statusCode === 200 ? resolve(body) : reject(new Error(`${path}: ${response.statusCode} ${body}`))
      )
    })
    request.on("error", reject)
    request.end()
  })

const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

/** One request for x: its wall latency and the server's CPU time for it (read before and after), in µs. */
const request = async (address: string, x: number, traced: boolean, cpuBefore: number) => {
  const headers: Http.OutgoingHttpHeaders = traced
    ? { traceparent: `00-${Crypto.randomBytes(16).toString("hex")}-${Crypto.randomBytes(8).toString("hex")}-01` }
    : {}
  const start = performance.now()
  const body = await get(address, `/?x=${x}`, headers)
  const wall = (performance.now() - start) * 1000
  if (body !== String(x === 1 ? 0 : CALLS)) throw new Error(`x=${x}: answered ${body}`)
  const cpuAfter = Number(await get(address, "/cpu", {}))
  return { wall, cpu: cpuAfter - cpuBefore, cpuAfter }
}

interface System {
  readonly name: string
  readonly address: string
  readonly traced: boolean
}

/**
 * Per-call µs: what 111 calls add to a trivial request. Requests for x = 1 and x = 27 alternate (in turns of
 * which goes first), each pair read as one sample, and the median of the pairs' differences is taken: another
 * process's burst of CPU on a shared machine then skews a few samples, not a whole batch of one kind. Each
 * request's CPU time is the server's, read before and after it (the reading's own cost is the same for both).
 */
const perCall = async (system: System, n: number) => {
  const trivial: Array<number> = []
  const full: Array<number> = []
  const cpu: Array<number> = []
  const wall: Array<number> = []
  let cpuBefore = Number(await get(system.address, "/cpu", {}))
  for (let i = 0; i < n; i++) {
    const pair: Record<number, Awaited<ReturnType<typeof request>>> = {}
    for (const x of i % 2 === 0 ? [1, X] : [X, 1]) {
      const result = await request(system.address, x, system.traced, cpuBefore)
      cpuBefore = result.cpuAfter
      pair[x] = result
    }
    trivial.push(pair[1]!.cpu)
    full.push(pair[X]!.cpu)
    cpu.push((pair[X]!.cpu - pair[1]!.cpu) / CALLS)
    wall.push((pair[X]!.wall - pair[1]!.wall) / CALLS)
  }
  return { trivial: median(trivial), full: median(full), perCall: median(cpu), wallPerCall: median(wall) }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** `weaver single deploy` of this file's app; resolves with the listener address and the deploy process. */
const deploy = async (dir: string) => {
  const config = Path.join(dir, "weaver.toml")
  Fs.writeFileSync(
    config,
    `[serviceweaver]
name = "collatz"
binary = ${JSON.stringify(self)}
args = ["app"]

[single]
listeners.collatz = { address = "127.0.0.1:0" }
`
  )
  const env = {
    ...process.env,
    XDG_DATA_HOME: Path.join(dir, "data"),
    NODE_OPTIONS: `--import tsx ${process.env.BENCH_NODE_OPTIONS ?? ""}`
  }
  delete env.WEAVER_TRACE_SAMPLE
  const child = ChildProcess.spawn(process.execPath, [
    Path.join(root, "packages/cli/bin/weaver.js"),
    "single",
    "deploy",
    config
  ], {
    cwd: root,
    env,
    stdio: ["ignore", "pipe", "pipe"]
  })
  let output = ""
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (output += chunk))
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (output += chunk))
  const start = performance.now()
  let address: string | undefined
  while (address === undefined && performance.now() - start < 30_000 && child.exitCode === null) {
    address = /collatz listener available on (\S+)/.exec(output)?.[1]
    if (address === undefined) await sleep(20)
  }
  if (address === undefined) {
    child.kill("SIGKILL")
    throw new Error(`weaver single deploy: no listener within 30 s\n${output}`)
  }
  return { child, address, pid: () => appPid(child.pid!) }
}

const appPid = (deployPid: number) =>
  Number(/(\d+)/.exec(ChildProcess.execFileSync("pgrep", ["-P", String(deployPid)], { encoding: "utf8" }))?.[1])

const stop = async (child: ChildProcess.ChildProcess) => {
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
  child.kill("SIGTERM")
  await Promise.race([exited, sleep(10_000)])
  if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
}

const main = async () => {
  process.on("exit", killChildren)
  for (
    const file of [Path.join(root, "packages/cli/dist/weaver.mjs"), Path.join(root, "packages/core/dist/index.js")]
  ) {
    if (!Fs.existsSync(file)) throw new Error(`${file} is missing: run "npm run build" (npm run bench does)`)
  }
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "weaver-collatz-bench-"))
  // As the deployer starts the app: with source maps on.
  process.env.NODE_OPTIONS = "--enable-source-maps"
  const plain = await startServer(self, ["plain"])
  const deployed = await deploy(dir)
  try {
    const systems: ReadonlyArray<System> = [
      { name: "plain", address: `127.0.0.1:${plain.port}`, traced: false },
      { name: "weaver", address: deployed.address, traced: false },
      { name: "weaver, traced", address: deployed.address, traced: true }
    ]
    for (const system of systems) await perCall(system, WARMUP_REQUESTS)
    const results = new Map(systems.map((s) => [s.name, [] as Array<Awaited<ReturnType<typeof perCall>>>]))
    for (let round = 0; round < ROUNDS; round++) {
      // Rotate which system goes first, so none always runs on a warmer (or busier) machine.
      for (let i = 0; i < systems.length; i++) {
        const system = systems[(round + i) % systems.length]!
        results.get(system.name)!.push(await perCall(system, REQUESTS))
      }
    }
    const ratio = (a: string, b: string) =>
      median(results.get(a)!.map((r, i) => r.perCall / results.get(b)![i]!.perCall))
    const callRatio = ratio("weaver", "plain")
    const tracedRatio = ratio("weaver, traced", "weaver")
    const fmt = (n: number) => n.toFixed(1)
    const rows = [
      ["system", "x=1 CPU µs/req", `x=${X} CPU µs/req`, "CPU µs/call", "per round", "wall p50 µs/call"],
      ...systems.map((s) => {
        const rs = results.get(s.name)!
        return [
          s.name,
          fmt(median(rs.map((r) => r.trivial))),
          fmt(median(rs.map((r) => r.full))),
          fmt(median(rs.map((r) => r.perCall))),
          rs.map((r) => fmt(r.perCall)).join(" "),
          fmt(median(rs.map((r) => r.wallPerCall)))
        ]
      })
    ]
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)))
    const line = (row: ReadonlyArray<string>) => `| ${row.map((cell, i) => cell.padEnd(widths[i]!)).join(" | ")} |`
    const callPass = callRatio <= CALL_TARGET
    const tracedPass = tracedRatio <= TRACED_TARGET
    process.stdout.write(
      [
        `collatz over HTTP, ${CALLS} calls per request (x=${X}) against x=1, ${ROUNDS} rounds × ${REQUESTS} requests`,
        "",
        line(rows[0]!),
        `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`,
        ...rows.slice(1).map(line),
        "",
        `component call vs Context.Tag call (median of per-round ratios): ${
          callRatio.toFixed(2)
        }× (target ≤ ${CALL_TARGET}×) ${callPass ? "PASS" : "FAIL"}`,
        `traced call vs untraced call (median of per-round ratios): ${
          tracedRatio.toFixed(2)
        }× (target ≤ ${TRACED_TARGET}×) ${tracedPass ? "PASS" : "FAIL"}`,
        `(load average ${Os.loadavg().map((n) => n.toFixed(1)).join(" ")} on ${Os.cpus().length} cores)`,
        ""
      ].join("\n")
    )
    if (!callPass || !tracedPass) process.exitCode = 1
  } finally {
    agent.destroy()
    await stop(deployed.child)
    killChildren()
    Fs.rmSync(dir, { recursive: true, force: true })
  }
}

if (process.argv[2] === "app") {
  Weaver.run(weaverApp).pipe(NodeRuntime.runMain)
} else if (process.argv[2] === "server") {
  exitWithParent()
  NodeRuntime.runMain(plainApp)
} else {
  main().catch((error) => {
    killChildren()
    process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`)
    process.exit(1)
  })
}
