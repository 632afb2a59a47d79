/**
 * Remote calls written the way users write them: an HTTP handler of an app
 * deployed with `weaver multi deploy` (the built CLI, one replica of main and
 * one of the Echo component, each its own process; default sampling) calls
 * Echo with `Effect.forEach(…, { concurrency: 64 })`, 16-byte strings.
 * Driven by one HTTP request at a time, each making CALLS calls; measured in
 * completed calls per second. `WEAVER_TRACE_SAMPLE=never|always` in the
 * bench's environment deploys with that sampling instead, for comparison.
 *
 * Baseline, in the same run and alternating with it: the raw TCP echo that
 * batches its writes (bench/echo.ts), 64 calls in flight, server in another
 * process. Target: ≥ 40 % of raw.
 *
 * Also measured, to show the ceiling: `Effect.forEach(…, { concurrency: 64 })`
 * alone, in this process, over calls that are no more than an `Effect.async`
 * resumed from a batched callback (no I/O, no encoding): a fiber per element
 * is what this way of writing a handler costs whatever the transport does,
 * and main (where each element runs) is the busy process of the deployment.
 *
 * `npm run build && node --import tsx bench/handler.bench.ts [seconds per round]`
 * The script is also the app (`handler.bench.ts app`, the deployment's
 * binary) and the raw echo server (`handler.bench.ts server raw`); it stops
 * the deployment with SIGTERM and kills the raw server by pid.
 * `BENCH_NODE_OPTIONS` is added to the deployed processes' NODE_OPTIONS (e.g.
 * `--import $PWD/bench/profile.mjs` to profile them).
 */
import { Component, Weaver } from "@effect-weaver/core"
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Schema } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Http from "node:http"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { exitWithParent, killChildren, rawClient, rawServer, startServer } from "./echo.js"

const ROUND_MILLIS = Number(process.argv[2] ?? 2) * 1000
const ROUNDS = 5
const IN_FLIGHT = 64
const CALLS = 2000
const PAYLOAD = "x".repeat(16)
const TARGET = 0.4
const self = fileURLToPath(import.meta.url)
const root = Path.resolve(Path.dirname(self), "..")

// ---------------------------------------------------------------------------
// The app

class Echo extends Component.Tag("handler/Echo")<Echo>()({
  echo: Component.method({ payload: Schema.String, success: Schema.String })
}) {}

const app = Weaver.app({
  main: Weaver.main(
    Effect.gen(function*() {
      const echo = yield* Echo
      return yield* Weaver.serve(
        "handler",
        HttpRouter.empty.pipe(HttpRouter.get(
          "/echo",
          Effect.gen(function*() {
            const params = yield* HttpServerRequest.ParsedSearchParams
            const n = Number(params.n ?? 1)
            let bytes = 0
            yield* Effect.forEach(
              Array.from({ length: n }, (_, i) => `${PAYLOAD.slice(0, 12)}${1000 + (i % 9000)}`),
              (s) =>
                Effect.map(echo.echo(s), (reply) => {
                  bytes += reply.length
                }),
              { concurrency: IN_FLIGHT, discard: true }
            )
            return HttpServerResponse.text(String(bytes))
          })
        ))
      )
    }),
    { listeners: ["handler"] }
  ),
  components: [Component.implement(Echo, Effect.succeed({ echo: (s: string) => Effect.succeed(s) }))]
})

// ---------------------------------------------------------------------------
// Measurement

const agent = new Http.Agent({ keepAlive: true, maxSockets: 1 })

const get = (address: string, path: string) =>
  new Promise<string>((resolve, reject) => {
    const colon = address.lastIndexOf(":")
    const request = Http.request(
      { host: address.slice(0, colon), port: Number(address.slice(colon + 1)), path, agent },
      (response) => {
        let body = ""
        response.setEncoding("utf8")
        response.on("data", (chunk: string) => (body += chunk))
        response.on("end", () =>
          response.statusCode === 200 ? resolve(body) : reject(new Error(`${path}: ${response.statusCode} ${body}`)))
      }
    )
    request.on("error", reject)
    request.end()
  })

/** Calls per second through the deployed handler, one request of CALLS calls at a time, for `millis`. */
const weaverRate = async (address: string, millis: number) => {
  const start = performance.now()
  let calls = 0
  while (performance.now() - start < millis) {
    const body = await get(address, `/echo?n=${CALLS}`)
    if (body !== String(CALLS * 16)) throw new Error(`the handler answered ${body}`)
    calls += CALLS
  }
  return calls / ((performance.now() - start) / 1000)
}

/** Calls per second through the raw echo, IN_FLIGHT loops, for `millis`. */
const rawRate = async (call: (payload: Buffer) => Promise<Buffer>, millis: number) => {
  const bytes = Buffer.from(PAYLOAD)
  const start = performance.now()
  const end = start + millis
  let count = 0
  await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
    while (performance.now() < end) {
      await call(bytes)
      count++
    }
  }))
  return count / ((performance.now() - start) / 1000)
}

/**
 * Elements per second of the handler's `Effect.forEach` shape alone: CALLS elements, IN_FLIGHT at a time, each an
 * `Effect.async` resumed in a batch on the next turn (as replies arrive), for `millis`.
 */
const forEachRate = (millis: number) => {
  let waiting: Array<() => void> = []
  const resumeAll = () => {
    const batch = waiting
    waiting = []
    for (const resume of batch) resume()
  }
  const call = (s: string) =>
    Effect.async<string>((resume) => {
      if (waiting.push(() => resume(Effect.succeed(s))) === 1) setImmediate(resumeAll)
    })
  const payloads = Array.from({ length: CALLS }, (_, i) => `${PAYLOAD.slice(0, 12)}${1000 + (i % 9000)}`)
  const request = Effect.forEach(payloads, (s) => Effect.map(call(s), (reply) => reply.length), {
    concurrency: IN_FLIGHT,
    discard: true
  })
  return Effect.runPromise(Effect.gen(function*() {
    const start = performance.now()
    let calls = 0
    while (performance.now() - start < millis) {
      yield* request
      calls += CALLS
    }
    return calls / ((performance.now() - start) / 1000)
  }))
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** `weaver multi deploy` of this file's app; resolves with the listener proxy's address. */
const deploy = async (dir: string) => {
  const config = Path.join(dir, "weaver.toml")
  Fs.writeFileSync(
    config,
    `[serviceweaver]
name = "handler"
binary = ${JSON.stringify(self)}
args = ["app"]

[multi]
listeners.handler = { address = "127.0.0.1:0" }
replicas = 1
`
  )
  const env: Record<string, string | undefined> = {
    ...process.env,
    XDG_DATA_HOME: Path.join(dir, "data"),
    SERVICEWEAVER_LOG_DIR: Path.join(dir, "logs"),
    NODE_OPTIONS: `--import tsx ${process.env.BENCH_NODE_OPTIONS ?? ""}`
  }
  // Default sampling unless WEAVER_TRACE_SAMPLE says otherwise (to compare, e.g. "never" or "always").
  const child = ChildProcess.spawn(
    process.execPath,
    [Path.join(root, "packages/cli/bin/weaver.js"), "multi", "deploy", config],
    { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] }
  )
  let output = ""
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (output += chunk))
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (output += chunk))
  const start = performance.now()
  let address: string | undefined
  while (address === undefined && performance.now() - start < 60_000 && child.exitCode === null) {
    address = /proxy for listener handler on (\S+)/.exec(output)?.[1]
    if (address === undefined) await sleep(20)
  }
  if (address === undefined) {
    child.kill("SIGKILL")
    throw new Error(`weaver multi deploy: no listener proxy within 60 s\n${output}`)
  }
  return { child, address }
}

const stop = async (child: ChildProcess.ChildProcess) => {
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
  child.kill("SIGTERM")
  await Promise.race([exited, sleep(15_000)])
  if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
}

const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

const main = async () => {
  process.on("exit", killChildren)
  for (
    const file of [Path.join(root, "packages/cli/dist/weaver.mjs"), Path.join(root, "packages/core/dist/index.js")]
  ) {
    if (!Fs.existsSync(file)) throw new Error(`${file} is missing: run "npm run build" (npm run bench does)`)
  }
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "weaver-handler-bench-"))
  const raw = await startServer(self, ["raw"])
  const call = await rawClient(raw.port)
  const deployed = await deploy(dir)
  try {
    // The first request waits for the replicas; then warm both up.
    await get(deployed.address, "/echo?n=1")
    // The weavelets' code is still being optimized for a few seconds (rounds climbed for ~4 s after 1 s of it).
    await weaverRate(deployed.address, 4000)
    await rawRate(call, 500)
    await forEachRate(500)
    const rawRates: Array<number> = []
    const weaverRates: Array<number> = []
    const forEachRates: Array<number> = []
    for (let round = 0; round < ROUNDS; round++) {
      // Alternate which goes first, so neither always runs on a warmer (or busier) machine.
      if (round % 2 === 0) {
        rawRates.push(await rawRate(call, ROUND_MILLIS))
        weaverRates.push(await weaverRate(deployed.address, ROUND_MILLIS))
      } else {
        weaverRates.push(await weaverRate(deployed.address, ROUND_MILLIS))
        rawRates.push(await rawRate(call, ROUND_MILLIS))
      }
      forEachRates.push(await forEachRate(ROUND_MILLIS / 2))
    }
    const ceiling = median(forEachRates.map((rate, i) => rate / rawRates[i]!))
    const ratio = median(weaverRates.map((rate, i) => rate / rawRates[i]!))
    const pass = ratio >= TARGET
    const fmt = (n: number) => (n / 1000).toFixed(1)
    process.stdout.write(
      [
        `16 B echo, ${IN_FLIGHT} calls in flight, ${ROUNDS} rounds × ${ROUND_MILLIS / 1000} s each`,
        "",
        "| system                                         | k calls/s (median) | rounds (k calls/s) |",
        "|------------------------------------------------|--------------------|--------------------|",
        `| raw TCP echo, batched writes (baseline)        | ${fmt(median(rawRates)).padStart(18)} | ${
          rawRates.map(fmt).join(" ")
        } |`,
        `| weaver multi deploy, Effect.forEach in handler | ${fmt(median(weaverRates)).padStart(18)} | ${
          weaverRates.map(fmt).join(" ")
        } |`,
        `| Effect.forEach alone, no I/O (the ceiling)     | ${fmt(median(forEachRates)).padStart(18)} | ${
          forEachRates.map(fmt).join(" ")
        } |`,
        "",
        `handler calls vs raw (median of per-round ratios): ${(ratio * 100).toFixed(1)} % (target ≥ ${
          TARGET * 100
        } %) ${pass ? "PASS" : "FAIL"}`,
        `Effect.forEach alone vs raw: ${(ceiling * 100).toFixed(1)} %; the handler reaches ${
          (median(weaverRates.map((rate, i) => rate / forEachRates[i]!)) * 100).toFixed(0)
        } % of that ceiling`,
        `(${CALLS} calls per request, sampling ${process.env.WEAVER_TRACE_SAMPLE ?? "default"}; load average ${
          Os.loadavg().map((n) => n.toFixed(1)).join(" ")
        } on ${Os.cpus().length} cores)`,
        ""
      ].join("\n")
    )
    if (!pass) process.exitCode = 1
  } finally {
    agent.destroy()
    await stop(deployed.child)
    killChildren()
    Fs.rmSync(dir, { recursive: true, force: true })
  }
}

if (process.argv[2] === "app") {
  Weaver.run(app).pipe(NodeRuntime.runMain)
} else if (process.argv[2] === "server") {
  exitWithParent()
  void rawServer().then((port) => process.stdout.write(`PORT ${port}\n`))
} else {
  main().catch((error) => {
    killChildren()
    process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`)
    process.exit(1)
  })
}
