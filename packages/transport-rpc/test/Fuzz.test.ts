/**
 * Fuzzes the wire server: more than a million frames with random contents, mutated or broken, over
 * thousands of connections, while a well-behaved client keeps calling. Seeded: set FUZZ_SEED to replay a run.
 *
 * Each connection sends a hello (or a broken one), then frames the server must survive (valid frames,
 * frames with valid envelopes and random contents: methods, payloads, flags, deadlines, trace contexts,
 * construction paths, cancels; and frames whose payload bytes are mutated), then maybe a tail: a frame the
 * server must refuse (it closes the connection and logs why), or a frame mutated anywhere or random bytes
 * (no expectation but no crash).
 */
import { Logging } from "@effect-weaver/runtime"
import { Wire } from "@effect-weaver/transport-rpc"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as Net from "node:net"
import * as V8 from "node:v8"
import * as Vm from "node:vm"
import { clientOf, Echo, makeHooks, serveReplica } from "./utils/fixture.js"

const deploymentId = "dep-fuzz"
const targetFrames = 1_000_000
const timeBudgetMillis = 120_000
const concurrency = 24
const maxFrameBytes = 64 * 1024

/** xorshift32: small, fast and seeded. */
const makeRandom = (seed: number) => {
  let state = seed >>> 0 || 0x9e3779b9
  const next = () => {
    state ^= state << 13
    state >>>= 0
    state ^= state >>> 17
    state ^= state << 5
    state >>>= 0
    return state
  }
  const int = (n: number) => next() % n
  const chance = (p: number) => next() / 2 ** 32 < p
  const bytes = (n: number) => {
    const out = Buffer.allocUnsafe(n)
    for (let i = 0; i < n; i++) out[i] = next() & 0xff
    return out
  }
  const pick = <A>(items: ReadonlyArray<A>): A => items[int(items.length)]!
  const string = (max: number) => {
    const length = int(max + 1)
    let s = ""
    for (let i = 0; i < length; i++) {
      const kind = int(10)
      s += kind < 6
        ? String.fromCharCode(32 + int(95))
        : kind < 8
        ? String.fromCharCode(0x80 + int(0x700))
        : kind < 9
        ? String.fromCodePoint(0x10000 + int(0x1000))
        : String.fromCharCode(0xd800 + int(0x800)) // a lone surrogate, now and then
    }
    return s
  }
  return { next, int, chance, bytes, pick, string }
}
type Random = ReturnType<typeof makeRandom>

const methods = ["echo", "stamp", "ping", "fail", "die", "whoami", "count", "hasDeadline", "routed", "traceId"]

const validPayload = (random: Random, method: string): unknown => {
  switch (method) {
    case "stamp":
      return { at: new Date(random.int(2 ** 31)).toISOString(), n: String(random.int(1000)) }
    case "echo":
    case "fail":
    case "die":
    case "routed":
      return random.string(40)
    default:
      return undefined
  }
}

const request = (method: string, suffix: Buffer, payload: Buffer) =>
  Wire.frame(Wire.FrameType.Request, 0, ...Wire.requestBody(Wire.encodeHeaderPrefix(method, "main"), suffix, payload))

/** A frame the server must answer or ignore, never close the connection for; `payload` is where mutations go. */
interface Template {
  readonly bytes: Buffer
  readonly payloadStart: number
}

const survivable = (random: Random): Template => {
  const roll = random.int(100)
  if (roll < 4) {
    // A cancel of any id: ignored, or it interrupts a call of the connection.
    const frame = Wire.frame(Wire.FrameType.Cancel, 0, random.bytes(random.int(8)))
    return { bytes: frame, payloadStart: frame.length }
  }
  let method = `test/Echo.${random.pick(methods)}`
  let payload: Buffer = Buffer.from(Wire.pack(validPayload(random, method.slice(10))))
  if (roll < 14) method = random.chance(0.5) ? random.bytes(random.int(80)).toString("latin1") : `${method}x`
  else if (roll < 24) payload = random.bytes(random.int(64))
  else if (roll < 25) method = "test/Echo.hangBriefly" // in flight until its 50 ms deadline
  const deadline = random.chance(0.2)
    ? random.pick([-1, 0, 1e3, 1e6, 1e9, 1e13, 1e300, -1e300, Number.MAX_VALUE, Number.MIN_VALUE])
    : undefined
  const trace = random.chance(0.05)
    ? {
      traceId: random.bytes(random.int(40)).toString("hex").slice(0, random.int(64)),
      spanId: random.string(8),
      sampled: random.chance(0.3)
    }
    : undefined
  const path = random.chance(0.03)
    ? Array.from({ length: random.int(5) }, () => random.pick(["test/Echo", "main", random.string(12)]))
    : undefined
  const suffix = Buffer.from(Wire.encodeHeaderSuffix(deadline, trace, path))
  // Flags the protocol does not define are ignored.
  if (random.chance(0.05)) suffix[0] |= 0x20 << random.int(3)
  const frame = request(method, suffix, payload)
  return { bytes: frame, payloadStart: frame.length - payload.length }
}

/** A frame the server must refuse: it closes the connection with a logged reason. */
const fatal = (random: Random, hangId: number): Buffer => {
  switch (random.int(7)) {
    case 0:
      return Wire.frame((8 + random.int(248)) as Wire.FrameType, random.next(), random.bytes(random.int(40)))
    case 1:
      // Frames only servers send (stream items and end included).
      return Wire.frame(random.pick([0, 2, 3, 5, 6]) as Wire.FrameType, random.next(), random.bytes(random.int(40)))
    case 2: {
      const short = Buffer.alloc(9)
      short.writeUInt32LE(random.int(5), 0)
      return short
    }
    case 3: {
      const big = random.bytes(9)
      big.writeUInt32LE(maxFrameBytes + 1 + random.int(2 ** 31), 0)
      big[4] = Wire.FrameType.Request
      return big
    }
    case 4: {
      // A header length past the end of the frame, or no header length at all.
      const body = random.chance(0.5) ? random.bytes(random.int(2)) : Buffer.from([0xff, 0xff, 1, 2, 3])
      return Wire.frame(Wire.FrameType.Request, random.next(), body)
    }
    case 5: {
      const suffix = Buffer.alloc(9)
      suffix[0] = 1
      suffix.writeDoubleLE(random.pick([NaN, Infinity, -Infinity]), 1)
      return request("test/Echo.echo", suffix, Buffer.from(Wire.pack("x")))
    }
    default: {
      // The same call id twice while the first call is in flight.
      const hang = request("test/Echo.hang", Buffer.from([0]), Buffer.from(Wire.pack(undefined)))
      hang.writeUInt32LE(hangId, 5)
      return Buffer.concat([hang, hang])
    }
  }
}

/** Broken first frames: the server refuses them before any handshake. */
const badHello = (random: Random): Buffer => {
  switch (random.int(5)) {
    case 0:
      return Wire.encodeHello({ version: Wire.version, deploymentId: random.string(30) + "!" })
    case 1:
      return Wire.encodeHello({ version: 2 + random.int(60000), deploymentId })
    case 2: {
      const hello = Wire.encodeHello({ version: Wire.version, deploymentId })
      hello.writeUInt16LE(hello.readUInt16LE(11) + 1 + random.int(100), 11)
      return hello
    }
    case 3:
      return request("test/Echo.echo", Buffer.from([0]), Buffer.from(Wire.pack("before hello")))
    default: {
      const big = random.bytes(9 + random.int(100))
      big.writeUInt32LE(Wire.defaultMaxHelloBytes + 1 + random.int(2 ** 24), 0)
      big[4] = Wire.FrameType.Hello
      return big
    }
  }
}

/** A valid frame with bytes flipped anywhere, or random bytes: anything may happen but a crash. */
const unknown = (random: Random): Buffer => {
  if (random.chance(0.3)) return random.bytes(1 + random.int(300))
  const frame = Buffer.from(survivable(random).bytes)
  frame.writeUInt32LE(random.next(), 5)
  for (let flips = 1 + random.int(4); flips > 0; flips--) frame[random.int(frame.length)] = random.next() & 0xff
  return frame
}

type Tail = "none" | "fatal" | "unknown"

interface Plan {
  /** The hello is broken (a fatal or unknown first frame): nothing after it is read. */
  readonly preHandshake: "none" | "fatal" | "unknown"
  readonly frames: number
  readonly tail: Tail
}

interface Outcome {
  readonly plan: Plan
  readonly port: number
  readonly frames: number
  readonly closedByServer: boolean
  /** The first bytes of the frame that should have made the server close the connection, for the report. */
  readonly last: string
}

const hello = Wire.encodeHello({ version: Wire.version, deploymentId })

/** A full garbage collection, so that heap figures count what is retained rather than garbage not yet collected. */
const collectGarbage = (): void => {
  V8.setFlagsFromString("--expose-gc")
  ;(Vm.runInNewContext("gc") as () => void)()
}

/** Sends one connection's frames, in writes of about 64 KiB, then waits for the server to close it or ends it. */
const runConnection = (
  address: string,
  random: Random,
  templates: ReadonlyArray<Template>,
  plan: Plan,
  count: { mutated: number }
) =>
  new Promise<Outcome>((resolve) => {
    const [host, port] = address.split(":")
    const socket = Net.connect({ host: host!, port: Number(port) })
    let localPort = 0
    let frames = 0
    let weEnded = false
    let settled = false
    let closedByServer = false
    const finish = () => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.destroy()
      resolve({ plan, port: localPort, frames, closedByServer, last })
    }
    const timer = setTimeout(finish, 15_000)
    socket.on("data", () => {})
    socket.on("error", () => {})
    socket.on("end", () => {
      if (!weEnded) closedByServer = true
    })
    socket.on("close", () => {
      if (!weEnded) closedByServer = true
      finish()
    })
    let first = true
    let last = ""
    let sent = 0
    let nextId = 1
    const pump = () => {
      while (!socket.destroyed) {
        const parts: Array<Buffer> = []
        let size = 0
        if (first) {
          first = false
          parts.push(
            plan.preHandshake === "none" ? hello : plan.preHandshake === "fatal" ? badHello(random) : unknown(random)
          )
          frames++
        }
        while (sent < plan.frames && size < 64 * 1024) {
          const template = random.pick(templates)
          const frame = Buffer.from(template.bytes)
          frame.writeUInt32LE(nextId++, 5)
          if (template.payloadStart < frame.length && random.chance(0.1)) {
            count.mutated++
            const span = frame.length - template.payloadStart
            for (let flips = 1 + random.int(3); flips > 0; flips--) {
              frame[template.payloadStart + random.int(span)] = random.next() & 0xff
            }
          }
          parts.push(frame)
          size += frame.length
          sent++
          frames++
        }
        const done = sent >= plan.frames
        if (done && plan.tail !== "none") {
          parts.push(plan.tail === "fatal" ? fatal(random, nextId++) : unknown(random))
          frames++
        }
        if (done || parts.length === 1) last = parts[parts.length - 1]!.subarray(0, 40).toString("hex")
        const flowing = socket.write(Buffer.concat(parts))
        if (done) {
          // A connection whose frames the server must survive ends itself; one that broke the protocol waits a
          // while for the server to close it (or, after bytes that leave a frame incomplete, ends itself).
          if (plan.tail === "none" && plan.preHandshake === "none") {
            weEnded = true
            socket.end()
          } else {
            const mustClose = plan.tail === "fatal" || plan.preHandshake === "fatal"
            setTimeout(() => {
              weEnded = true
              socket.end()
            }, mustClose ? 3_000 : 100).unref()
          }
          return
        }
        if (!flowing) return socket.once("drain", pump)
      }
    }
    socket.on("connect", () => {
      localPort = socket.localPort!
      pump()
    })
  })

describe("fuzzing the wire server", () => {
  it.live(
    "a million random and mutated frames: no crash, bounded memory, bad connections closed and logged",
    () =>
      Effect.gen(function*() {
        const seed = Number(process.env["FUZZ_SEED"] ?? Date.now() % 2 ** 31)
        const random = makeRandom(seed)
        const warnings: Array<Logging.Entry> = []
        const origin = { app: "fuzz", deploymentId, replicaId: "r1" }
        const logger = Logger.make<unknown, void>((options) => {
          const entry = Logging.toEntry(origin, options)
          if (entry.level === "warn") warnings.push(entry)
        })
        const server = yield* serveReplica(yield* makeHooks(), {
          deploymentId,
          maxFrameBytes,
          // Every line written, to check that every bad connection has one (the limit is tested elsewhere).
          badConnectionLog: { lines: Number.MAX_SAFE_INTEGER }
        }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)))
        const echo = yield* clientOf(Echo, { deploymentId, addresses: [server.address] })
        const templates = Array.from({ length: 4000 }, () => survivable(random))

        // The well-behaved client calls all along.
        let done = false
        let good = 0
        let failures = 0
        let slowest = 0
        const steady = Effect.gen(function*() {
          while (!done) {
            const text = `steady ${good}`
            const started = performance.now()
            const answer = yield* Effect.either(echo.echo(text))
            slowest = Math.max(slowest, performance.now() - started)
            if (answer._tag === "Right" && answer.right === text) good++
            else failures++
            yield* Effect.sleep("2 millis")
          }
        })
        const steadyFiber = yield* Effect.fork(steady)
        yield* Effect.sleep("50 millis")

        collectGarbage()
        const memory = { baseline: process.memoryUsage(), peakRss: 0, peakHeap: 0, halfway: 0, after: 0 }
        let frames = 0
        const sampler = setInterval(() => {
          const now = process.memoryUsage()
          memory.peakRss = Math.max(memory.peakRss, now.rss)
          memory.peakHeap = Math.max(memory.peakHeap, now.heapUsed)
          if (memory.halfway === 0 && frames >= targetFrames / 2) {
            collectGarbage()
            memory.halfway = process.memoryUsage().heapUsed
          }
        }, 50)

        const outcomes: Array<Outcome> = []
        const count = { mutated: 0 }
        const started = performance.now()
        const plan = (): Plan => {
          const roll = random.int(100)
          if (roll < 15) {
            return { preHandshake: random.chance(0.7) ? "fatal" : "unknown", frames: random.int(3), tail: "none" }
          }
          const size = random.int(100)
          const frames = size < 55 ? 1 + random.int(50) : size < 85 ? 50 + random.int(950) : 1000 + random.int(7000)
          const tail = random.int(100)
          return { preHandshake: "none", frames, tail: tail < 40 ? "none" : tail < 75 ? "fatal" : "unknown" }
        }
        yield* Effect.promise(async () => {
          const worker = async () => {
            while (frames < targetFrames && performance.now() - started < timeBudgetMillis) {
              const outcome = await runConnection(server.address, random, templates, plan(), count)
              frames += outcome.frames
              outcomes.push(outcome)
            }
          }
          await Promise.all(Array.from({ length: concurrency }, worker))
        })
        const elapsed = performance.now() - started
        clearInterval(sampler)
        // The server logs from forked fibers: let the last lines land.
        yield* Effect.sleep("200 millis")
        done = true
        yield* steadyFiber.await
        collectGarbage()
        memory.after = process.memoryUsage().heapUsed

        const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`
        const byPlan = (f: (o: Outcome) => boolean) => outcomes.filter(f).length
        const reasons = new Map<string, number>()
        for (const entry of warnings) {
          const kind = entry.msg.replace(/-?\d[\d.e+]*/g, "N").replace(/".*"/g, "\"…\"").slice(0, 90)
          reasons.set(kind, (reasons.get(kind) ?? 0) + 1)
        }
        process.stdout.write(
          [
            `wire fuzz (seed ${seed}): ${frames} frames (${count.mutated} with mutated payloads) over ${outcomes.length} ` +
            `connections in ${(elapsed / 1000).toFixed(1)} s (${Math.round(frames / (elapsed / 1000))} frames/s)`,
            `  connections: ${byPlan((o) => o.plan.preHandshake === "fatal")} refused hellos, ` +
            `${byPlan((o) => o.plan.preHandshake === "unknown")} random first frames, ` +
            `${byPlan((o) => o.plan.preHandshake === "none" && o.plan.tail === "none")} well-formed only, ` +
            `${byPlan((o) => o.plan.tail === "fatal")} ending in a forbidden frame, ` +
            `${byPlan((o) => o.plan.tail === "unknown")} ending in a mutated frame or random bytes`,
            `  closed by the server with a logged reason: ${warnings.length} (server count ${server.badConnections()})`,
            ...[...reasons].sort((a, b) => b[1] - a[1]).slice(0, 12).map(([kind, n]) => `    ${n} × ${kind}`),
            `  steady client: ${good} calls answered, ${failures} failed, slowest ${slowest.toFixed(0)} ms`,
            `  memory: RSS ${mib(memory.baseline.rss)} at start, peak ${mib(memory.peakRss)}; heap in use ` +
            `${mib(memory.baseline.heapUsed)} at start, peak ${mib(memory.peakHeap)} (garbage included), ` +
            `${mib(memory.halfway)} halfway and ${mib(memory.after)} after the run (after a full collection)`
          ].join("\n") + "\n"
        )

        assert.isAtLeast(frames, targetFrames)
        assert.strictEqual(failures, 0, "the well-behaved client never failed")
        assert.isAtLeast(good, 20)
        assert.strictEqual(yield* echo.echo("after the storm"), "after the storm")
        // Every bad connection is closed with a logged reason, and only bad ones are.
        assert.strictEqual(warnings.length, server.badConnections())
        const logged = new Map<string, number>()
        for (const entry of warnings) {
          const peer = entry.attrs.find(([key]) => key === "peer")?.[1] ?? ""
          logged.set(peer, (logged.get(peer) ?? 0) + 1)
          assert.match(entry.msg, /^(closing connection|refused a client)/)
          assert.strictEqual(entry.component, "test/Echo")
        }
        const byPort = new Map<number, Array<Outcome>>()
        for (const outcome of outcomes) byPort.set(outcome.port, [...(byPort.get(outcome.port) ?? []), outcome])
        for (const [port, list] of byPort) {
          const mustClose = list.filter((o) => o.plan.preHandshake === "fatal" || o.plan.tail === "fatal")
          const mayClose = list.filter((o) => o.plan.preHandshake !== "none" || o.plan.tail !== "none")
          for (const o of mustClose) {
            assert.isTrue(
              o.closedByServer,
              `connection from port ${port} closed by the server: ${JSON.stringify(o.plan)}, last frame ${o.last}`
            )
          }
          const lines = logged.get(`127.0.0.1:${port}`) ?? 0
          assert.isAtLeast(lines, mustClose.length, `a logged reason for each refused connection from port ${port}`)
          assert.isAtMost(lines, mayClose.length, `no warning about a well-behaved connection from port ${port}`)
        }
        // Memory stays bounded while ~24 connections are in flight, and nothing is retained once they are gone.
        assert.isBelow(memory.peakRss - memory.baseline.rss, 384 * 2 ** 20)
        assert.isBelow(memory.halfway - memory.baseline.heapUsed, 64 * 2 ** 20)
        assert.isBelow(memory.after - memory.baseline.heapUsed, 16 * 2 ** 20)
        assert.isAtMost(server.connections(), 1)
      }).pipe(Effect.scoped),
    180_000
  )
})
