/**
 * The RPC transport against its baselines, client and server in separate
 * processes on 127.0.0.1, all measured in the same run:
 *
 * - raw: a Node TCP echo with length-prefixed frames that batches its writes
 *   (one `write` per turn on both sides): the practical limit;
 * - @effect/rpc: `RpcServer`/`RpcClient` over a socket with msgpack;
 * - weaver: a component method called through `@effect-weaver/transport-rpc`,
 *   over plain TCP as `weaver multi deploy` calls by default;
 * - weaver mTLS: the same over mutual TLS 1.3, as `weaver multi deploy` calls
 *   with `[multi] mtls = true` (and kube by default); aim (issue #13): ≤ 20 %
 *   below weaver's throughput, p50 still ≤ 1.25× raw;
 * - raw TLS: the raw echo over the same mutual TLS 1.3 options: what TLS
 *   itself costs in Node, the floor of weaver mTLS.
 *
 * For 16-byte and 1 KiB string payloads: p50/p99 latency with one call in
 * flight, then throughput and CPU per call (client + server) with 64 in
 * flight. Targets (ratios to raw): throughput ≥ 50 %, p50 ≤ 1.25×, CPU/call ≤ 4×.
 *
 * `npm run build && node --import tsx bench/rpc.bench.ts [seconds]`
 * The script starts its own servers (`rpc.bench.ts server <kind>`) and kills them by pid.
 */
import { Certificates } from "@effect-weaver/runtime"
import { NodeSocket, NodeSocketServer } from "@effect/platform-node"
import * as SocketServer from "@effect/platform/SocketServer"
import { Rpc, RpcClient, RpcGroup, RpcSerialization, RpcServer } from "@effect/rpc"
import { Context, Effect, Exit, Layer, Schema, Scope } from "effect"
import type * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import { fileURLToPath } from "node:url"
import { echoClient, exitWithParent, killChildren, rawClient, rawServer, serveEcho, startServer } from "./echo.js"

type Kind = "raw" | "effect-rpc" | "weaver" | "weaver mTLS" | "raw TLS"
const KINDS: ReadonlyArray<Kind> = ["raw", "effect-rpc", "weaver", "weaver mTLS", "raw TLS"]
/** The credentials of the mTLS server, handed to its process in the environment (a bench, not a deployment). */
const TLS_ENV = "WEAVER_BENCH_TLS"
const PAYLOADS = [{ name: "16 B", text: "x".repeat(16) }, { name: "1 KiB", text: "y".repeat(1024) }]
const THROUGHPUT_SECONDS = Number(process.argv[2] ?? 1)
const ROUNDS = 7
const LATENCY_CALLS = 2000
const WARMUP_CALLS = 2000
const IN_FLIGHT = 64
const DEPLOYMENT = "bench-rpc"
const self = fileURLToPath(import.meta.url)

// ---------------------------------------------------------------------------
// The three systems

class EchoRpc extends Rpc.make("Echo", { payload: { text: Schema.String }, success: Schema.String }) {}
const Group = RpcGroup.make(EchoRpc)

const serveEffectRpc = Effect.gen(function*() {
  const context = yield* Layer.build(
    RpcServer.layer(Group).pipe(
      Layer.provide(Group.toLayer({ Echo: (payload) => Effect.succeed(payload.text) })),
      Layer.provide(RpcServer.layerProtocolSocketServer),
      Layer.provide(RpcSerialization.layerMsgPack),
      Layer.provideMerge(NodeSocketServer.layer({ host: "127.0.0.1", port: 0 }))
    )
  )
  const address = Context.get(context, SocketServer.SocketServer).address
  return address._tag === "TcpAddress" ? address.port : 0
})

const runServer = async (kind: Kind) => {
  const announce = (port: number) => process.stdout.write(`PORT ${port}\n`)
  exitWithParent()
  const credentials = () => Schema.decodeSync(Schema.parseJson(Certificates.Credentials))(process.env[TLS_ENV]!)
  if (kind === "raw") return announce(await rawServer())
  if (kind === "raw TLS") return announce(await rawServer(credentials()))
  const serve = kind === "weaver"
    ? serveEcho(DEPLOYMENT)
    : kind === "weaver mTLS"
    ? serveEcho(DEPLOYMENT, credentials())
    : serveEffectRpc
  await Effect.runPromise(
    Effect.scoped(Effect.gen(function*() {
      const port: number = yield* (serve as Effect.Effect<number, unknown, Scope.Scope>)
      announce(port)
      return yield* Effect.never
    }))
  )
}

// ---------------------------------------------------------------------------
// Measurement

interface Caller {
  /** Runs `calls` sequential calls, returning each latency in µs. */
  readonly latency: (payload: string, calls: number) => Promise<Array<number>>
  /** Runs `inFlight` concurrent call loops for `millis`, returning the number of calls. */
  readonly throughput: (payload: string, inFlight: number, millis: number) => Promise<number>
}

const rawCaller = async (port: number, tls?: Certificates.Credentials): Promise<Caller> => {
  const call = await rawClient(port, tls)
  return {
    latency: async (payload, calls) => {
      const bytes = Buffer.from(payload)
      const out: Array<number> = []
      for (let i = 0; i < calls; i++) {
        const start = performance.now()
        const reply = await call(bytes)
        out.push((performance.now() - start) * 1000)
        if (reply.length !== bytes.length) throw new Error("raw echo returned the wrong reply")
      }
      return out
    },
    throughput: async (payload, inFlight, millis) => {
      const bytes = Buffer.from(payload)
      const end = performance.now() + millis
      let count = 0
      await Promise.all(Array.from({ length: inFlight }, async () => {
        while (performance.now() < end) {
          await call(bytes)
          count++
        }
      }))
      return count
    }
  }
}

const effectCaller = (call: (payload: string) => Effect.Effect<string, unknown>): Caller => ({
  latency: (payload, calls) =>
    Effect.runPromise(Effect.gen(function*() {
      const out: Array<number> = []
      for (let i = 0; i < calls; i++) {
        const start = performance.now()
        const reply = yield* call(payload)
        out.push((performance.now() - start) * 1000)
        if (reply.length !== payload.length) throw new Error("echo returned the wrong reply")
      }
      return out
    })),
  throughput: (payload, inFlight, millis) =>
    Effect.runPromise(Effect.gen(function*() {
      const end = performance.now() + millis
      let count = 0
      const loop = Effect.gen(function*() {
        while (performance.now() < end) {
          yield* call(payload)
          count++
        }
      })
      yield* Effect.all(Array.from({ length: inFlight }, () => loop), { concurrency: "unbounded", discard: true })
      return count
    }))
})

const connect = (
  kind: Kind,
  port: number,
  scope: Scope.CloseableScope,
  tls: Certificates.Credentials
): Promise<Caller> => {
  if (kind === "raw") return rawCaller(port)
  if (kind === "raw TLS") return rawCaller(port, tls)
  if (kind === "effect-rpc") {
    return Effect.runPromise(
      Effect.gen(function*() {
        const context = yield* Layer.build(
          RpcClient.layerProtocolSocket().pipe(
            Layer.provide(NodeSocket.layerNet({ host: "127.0.0.1", port })),
            Layer.provide(RpcSerialization.layerMsgPack)
          )
        )
        const client = yield* RpcClient.make(Group).pipe(Effect.provide(context))
        return effectCaller((text) => client.Echo({ text }))
      }).pipe(Scope.extend(scope))
    )
  }
  return Effect.runPromise(
    echoClient(DEPLOYMENT, port, kind === "weaver mTLS" ? tls : undefined).pipe(
      Effect.map((echo) => effectCaller((text) => echo.echo(text))),
      Scope.extend(scope)
    )
  )
}

const cpuTicks = (pid: number): number => {
  const stat = Fs.readFileSync(`/proc/${pid}/stat`, "utf8")
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return Number(fields[11]) + Number(fields[12]) // utime + stime, in clock ticks (1/100 s)
}

const percentile = (xs: ReadonlyArray<number>, p: number) => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!
}

interface Figures {
  p50: number
  p99: number
  throughput: number
  cpuMicrosPerCall: number
  clientCpuMicrosPerCall: number
}

interface Live {
  readonly kind: Kind
  readonly child: ChildProcess.ChildProcess
  readonly caller: Caller
}

const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

/** One round's throughput and CPU (64 in flight) of one system on one payload. */
const throughputRound = async ({ caller, child }: Live, payload: string) => {
  const cpuBefore = process.cpuUsage()
  const serverBefore = cpuTicks(child.pid!)
  const calls = await caller.throughput(payload, IN_FLIGHT, THROUGHPUT_SECONDS * 1000)
  const cpu = process.cpuUsage(cpuBefore)
  const serverMicros = (cpuTicks(child.pid!) - serverBefore) * 10_000
  return {
    throughput: calls / THROUGHPUT_SECONDS,
    cpuMicrosPerCall: (cpu.user + cpu.system + serverMicros) / calls,
    clientCpuMicrosPerCall: (cpu.user + cpu.system) / calls
  }
}

/**
 * Every system is started and warmed up, then measured in ROUNDS rounds. A
 * round measures every system's latency (1 in flight), then every system's
 * throughput, with raw and ours next to each other and first in turn, so that
 * the two figures a ratio compares are taken as close together in time as
 * they can be. Each figure is the median over rounds, and each ratio the
 * median of per-round ratios (this machine is noisy).
 */
const measureAll = async (scope: Scope.CloseableScope) => {
  const authority = await Effect.runPromise(Certificates.makeAuthority("bench"))
  const server = await Effect.runPromise(authority.issue({ group: "echo", components: ["bench/Echo"] }))
  const client = await Effect.runPromise(authority.issue({ group: "main", components: ["main"] }))
  process.env[TLS_ENV] = Schema.encodeSync(Schema.parseJson(Certificates.Credentials))(server)
  const live: Array<Live> = []
  for (const kind of KINDS) {
    const { child, port } = await startServer(self, [kind])
    live.push({ kind, child, caller: await connect(kind, port, scope, client) })
  }
  const figures = new Map<string, Map<Kind, Array<Figures>>>()
  for (const payload of PAYLOADS) {
    const byKind = new Map<Kind, Array<Figures>>(KINDS.map((kind) => [kind, []]))
    figures.set(payload.name, byKind)
    for (const system of live) {
      await system.caller.latency(payload.text, WARMUP_CALLS)
      await system.caller.throughput(payload.text, IN_FLIGHT, 1000)
    }
    const [raw, effectRpc, weaver, mtls, rawTls] = live as [Live, Live, Live, Live, Live]
    for (let r = 0; r < ROUNDS; r++) {
      const order = r % 2 === 0 ? [raw, weaver, mtls, rawTls, effectRpc] : [rawTls, mtls, weaver, raw, effectRpc]
      process.stderr.write(`  ${payload.name} round ${r + 1}\n`)
      const latencies = new Map<Kind, Array<number>>()
      for (const system of order) latencies.set(system.kind, await system.caller.latency(payload.text, LATENCY_CALLS))
      for (const system of order) {
        const ls = latencies.get(system.kind)!
        byKind.get(system.kind)!.push({
          p50: percentile(ls, 0.5),
          p99: percentile(ls, 0.99),
          ...await throughputRound(system, payload.text)
        })
      }
    }
  }
  return figures
}

const main = async () => {
  const watchdog = setTimeout(() => {
    process.stderr.write("rpc bench: time limit (400 s) reached\n")
    killChildren()
    process.exit(1)
  }, 400_000)
  watchdog.unref()
  const scope = Effect.runSync(Scope.make())
  let figures: Map<string, Map<Kind, Array<Figures>>>
  try {
    figures = await measureAll(scope)
  } finally {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    killChildren()
  }
  const lines: Array<string> = [
    `RPC echo, client and server in separate processes on 127.0.0.1. Per round: latency over ${LATENCY_CALLS} calls ` +
    `with 1 in flight; throughput over ${THROUGHPUT_SECONDS} s with ${IN_FLIGHT} in flight; CPU = client + server. ` +
    `Medians of ${ROUNDS} interleaved rounds; ratios are medians of per-round ratios to raw.`,
    "",
    "| payload | system | p50 µs | p99 µs | calls/s | CPU µs/call (client) | p50 ÷ raw | calls/s ÷ raw | CPU ÷ raw |",
    "|---|---|---|---|---|---|---|---|---|"
  ]
  let pass = true
  const verdicts: Array<string> = []
  for (const payload of PAYLOADS) {
    const byKind = figures.get(payload.name)!
    const raw = byKind.get("raw")!
    const ratio = (kind: Kind, f: (x: Figures) => number) => median(byKind.get(kind)!.map((x, i) => f(x) / f(raw[i]!)))
    for (const kind of KINDS) {
      const runs = byKind.get(kind)!
      const m = (f: (x: Figures) => number) => median(runs.map(f))
      lines.push(
        `| ${payload.name} | ${kind} | ${m((x) => x.p50).toFixed(1)} | ${m((x) => x.p99).toFixed(1)} | ${
          Math.round(m((x) => x.throughput))
        } | ${m((x) => x.cpuMicrosPerCall).toFixed(2)} (${m((x) => x.clientCpuMicrosPerCall).toFixed(2)}) | ${
          ratio(kind, (x) => x.p50).toFixed(2)
        }× | ${(ratio(kind, (x) => x.throughput) * 100).toFixed(0)} % | ${
          ratio(kind, (x) => x.cpuMicrosPerCall).toFixed(2)
        }× |`
      )
    }
    const checks = [
      ["throughput ≥ 50 % of raw", ratio("weaver", (x) => x.throughput) >= 0.5],
      ["p50 ≤ 1.25× raw", ratio("weaver", (x) => x.p50) <= 1.25],
      ["CPU/call ≤ 4× raw", ratio("weaver", (x) => x.cpuMicrosPerCall) <= 4]
    ] as const
    for (const [name, ok] of checks) {
      verdicts.push(`${payload.name}: ${name}: ${ok ? "PASS" : "FAIL"}`)
      if (payload.name === "16 B" && !ok) pass = false
    }
    // mTLS against the same transport without it, round by round.
    const weaverRuns = byKind.get("weaver")!
    const mtlsLoss = 1 - median(byKind.get("weaver mTLS")!.map((x, i) => x.throughput / weaverRuns[i]!.throughput))
    verdicts.push(
      `${payload.name}: mTLS throughput loss ${(mtlsLoss * 100).toFixed(0)} % (aim ≤ 20 %): ${
        mtlsLoss <= 0.2 ? "PASS" : "MISS"
      }`,
      `${payload.name}: mTLS p50 ${ratio("weaver mTLS", (x) => x.p50).toFixed(2)}× raw (aim ≤ 1.25×): ${
        ratio("weaver mTLS", (x) => x.p50) <= 1.25 ? "PASS" : "MISS"
      }; raw TLS itself: ${ratio("raw TLS", (x) => x.p50).toFixed(2)}× raw, weaver mTLS ${
        median(byKind.get("weaver mTLS")!.map((x, i) => x.p50 / byKind.get("raw TLS")![i]!.p50)).toFixed(2)
      }× raw TLS`
    )
  }
  process.stdout.write([...lines, "", ...verdicts, ""].join("\n"))
  if (!pass) process.exitCode = 1
}

if (process.argv[2] === "server") {
  void runServer(process.argv[3] as Kind)
} else {
  main().catch((error) => {
    killChildren()
    process.stderr.write(`${error instanceof Error ? error.stack : error}\n`)
    process.exit(1)
  })
}
