/**
 * Fuzzes the control plane: the newline-delimited JSON an envelope reads from its weavelet's control socket
 * (`Control.serialization`, under `@effect/rpc`'s server), with random and mutated lines; and the log lines an
 * envelope reads from its weavelet's stderr (`Envelope.logEntry`). Seeded: set FUZZ_SEED to replay a run.
 */
import { Control, Envelope, Logging } from "@effect-weaver/runtime"
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import * as RpcClient from "@effect/rpc/RpcClient"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Layer, Logger, Stream } from "effect"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"

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
  const pick = <A>(items: ReadonlyArray<A>): A => items[int(items.length)]!
  const string = (max: number) => {
    let s = ""
    for (let i = int(max + 1); i > 0; i--) {
      const kind = int(10)
      s += kind < 7 ? String.fromCharCode(32 + int(95)) : kind < 9 ? String.fromCharCode(0x80 + int(0x700)) : "😀"
    }
    return s
  }
  return { next, int, chance, pick, string }
}
type Random = ReturnType<typeof makeRandom>

const seed = Number(process.env["FUZZ_SEED"] ?? Date.now() % 2 ** 31)

/** A message the server must answer (or ignore) without closing the connection. */
const valid = (random: Random, id: number): string => {
  switch (random.int(8)) {
    case 0:
      return JSON.stringify({ _tag: "Ping" })
    case 1:
      return JSON.stringify({ _tag: "Request", id: String(id), tag: "Health", payload: {}, headers: [] })
    case 2:
      // A payload of the wrong shape: answered with a failed Exit.
      return JSON.stringify({
        _tag: "Request",
        id: String(id),
        tag: random.pick(["Activate", "ExportListener", "Ready", "TraceSpans"]),
        payload: random.pick([null, 5, "x", [], { component: 5 }, { address: random.string(10) }]),
        headers: [[random.string(5), random.string(5)]]
      })
    case 3:
      return JSON.stringify({
        _tag: "Request",
        id: String(id),
        tag: "Activate",
        payload: { component: random.string(20) },
        headers: [],
        traceId: random.string(8),
        spanId: random.string(8),
        sampled: random.chance(0.5)
      })
    case 4:
      // An unknown method: answered with a defect.
      return JSON.stringify({ _tag: "Request", id: String(id), tag: random.string(12), payload: {}, headers: [] })
    case 5:
      return JSON.stringify({ _tag: random.pick(["Ack", "Interrupt"]), requestId: String(random.next()) })
    case 6:
      return JSON.stringify({
        _tag: "Request",
        id: String(id),
        tag: "ExportListener",
        payload: { listener: "l", address: random.string(15) },
        headers: []
      })
    default:
      return ""
  }
}

/** A line the server must refuse: it closes the connection and logs why. */
const fatal = (random: Random): string =>
  random.pick([
    () => "null",
    () => String(random.next()),
    () => random.string(30).replace(/[{["\d-]/g, "x") + "x",
    () => JSON.stringify({ _tag: "Ack", requestId: random.string(6) + "x" }),
    () => JSON.stringify({ _tag: "Request", id: "1.5", tag: "Health", payload: {}, headers: [] }),
    () => JSON.stringify({ _tag: "Request", id: "1", tag: "Health", payload: {}, headers: 5 }),
    () => JSON.stringify({ _tag: random.string(8) + "?" }),
    () => JSON.stringify([{ _tag: "Ping" }]),
    () => "{\"_tag\":\"Ping\"" // cut short
  ])()

/** A valid line with characters changed anywhere: no expectation but no crash. */
const mutated = (random: Random, id: number): string => {
  const chars = [...(valid(random, id) || "{}")]
  for (let flips = 1 + random.int(3); flips > 0; flips--) {
    chars[random.int(chars.length)] = random.pick(["\"", "{", "}", ":", ",", "0", "a", "\\", " ", "é", "\u0000"])
  }
  return chars.join("").replace(/\n/g, " ")
}

describe("fuzzing the control plane", () => {
  it("the control socket's parser: a million random, mutated and split lines", () => {
    const random = makeRandom(seed)
    const started = performance.now()
    let lines = 0
    let accepted = 0
    let refused = 0
    const reasons = new Map<string, number>()
    while (lines < 1_000_000) {
      let reason: string | undefined
      const parser = Control.serialization({ maxLineLength: 4096, onBadInput: (r) => reason = r }).unsafeMake()
      const batch: Array<string> = []
      for (let n = 1 + random.int(200); n > 0; n--) {
        const roll = random.int(100)
        batch.push(roll < 90 ? valid(random, lines + 1) : roll < 95 ? mutated(random, lines) : fatal(random))
        lines++
      }
      if (random.chance(0.02)) batch.push("x".repeat(5000))
      const bytes = Buffer.from(batch.join("\n") + "\n")
      const decoded: Array<unknown> = []
      let failure: unknown
      // Split anywhere, a multi-byte character included.
      for (let at = 0; at < bytes.length && failure === undefined;) {
        const size = 1 + random.int(random.chance(0.5) ? 8 : 600)
        try {
          decoded.push(...parser.decode(bytes.subarray(at, at + size)))
        } catch (error) {
          failure = error
        }
        at += size
      }
      // What was decoded is what a whole-line parse accepts, in order, up to the first refused line.
      const expected: Array<unknown> = []
      for (const line of batch) {
        if (line.trim() === "") continue
        if (line.length > 4096) break
        let value: unknown
        try {
          value = JSON.parse(line)
        } catch {
          break
        }
        if (typeof value !== "object" || value === null || Array.isArray(value)) break
        expected.push(value)
      }
      if (failure === undefined) {
        accepted++
        assert.deepStrictEqual(decoded, expected)
      } else {
        refused++
        assert.strictEqual((failure as { _tag?: string })._tag, "RpcSerializationError")
        assert.isDefined(reason)
        assert.match(reason!, /^line \d+ (is not JSON|is not a message of the RPC protocol|is longer than 4096)/)
        const kind = reason!.replace(/line \d+/, "line N").replace(/[:(].*$/, "")
        reasons.set(kind, (reasons.get(kind) ?? 0) + 1)
        // Every message before the bad line was delivered (the bad one and those after it never are).
        assert.isAtMost(decoded.length, expected.length)
        assert.deepStrictEqual(decoded, expected.slice(0, decoded.length))
      }
    }
    process.stdout.write(
      `control parser fuzz (seed ${seed}): ${lines} lines in ${(performance.now() - started) / 1000 | 0} s; ` +
        `${accepted} connections read whole, ${refused} refused: ` +
        [...reasons].map(([kind, n]) => `${n} × ${kind}`).join(", ") + "\n"
    )
  }, 120_000)

  it("the envelope's reading of log lines from stderr: random and mutated lines never throw", () => {
    const random = makeRandom(seed + 1)
    const origin = { app: "a", deploymentId: "d", node: "r", component: "c" }
    const sample = Control.logMarker + JSON.stringify({
      app: "a",
      version: "d",
      component: "c",
      node: "r",
      timeMicros: 1,
      level: "info",
      source: "f.ts:1",
      msg: "hello",
      attrs: [["k", "v"]]
    })
    for (let i = 0; i < 100_000; i++) {
      const chars = [...sample]
      for (let flips = random.int(4); flips > 0; flips--) chars[random.int(chars.length)] = random.string(1) || "\""
      const line = random.chance(0.1) ? random.string(100) : chars.join("")
      const entry = Envelope.logEntry(origin, random.chance(0.9) ? "stderr" : "stdout", line)
      assert.isString(entry.msg)
      assert.isString(entry.component)
    }
  })

  it.scopedLive("the envelope reads a weavelet's output in linear time, cutting lines longer than 1 MiB", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "weaver-output-"))),
        (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
      )
      const received: Array<number> = []
      let last = ""
      const started = performance.now()
      const envelope = yield* Envelope.make({
        bootstrap: {
          app: "out",
          deploymentId: "d",
          replicaId: crypto.randomUUID(),
          group: "g",
          components: [],
          runMain: false,
          internalAddress: "127.0.0.1:0",
          config: { file: "weaver.toml", dir },
          external: []
        },
        socketDir: dir,
        command: process.execPath,
        // 32 MiB without a newline, then a short line.
        args: ["-e", "process.stdout.write('x'.repeat(32 * 1024 * 1024)); process.stdout.write('\\nend\\n')"],
        env: {},
        handler: {
          ready: () => Effect.void,
          activate: () => Effect.void,
          routing: () => Stream.empty,
          exportListener: (_, address) => Effect.succeed(address)
        },
        output: (stream, line) => {
          if (stream !== "stdout") return
          received.push(line.length)
          last = line
        }
      })
      yield* envelope.exited
      yield* Effect.sleep("50 millis")
      const millis = performance.now() - started
      process.stdout.write(`a 32 MiB line of output: ${received.length} lines in ${millis.toFixed(0)} ms\n`)
      assert.strictEqual(last, "end")
      assert.strictEqual(received.slice(0, -1).reduce((a, b) => a + b, 0), 32 * 1024 * 1024)
      for (const length of received) assert.isAtMost(length, Envelope.maxOutputLine)
      assert.isBelow(millis, 10_000)
    }))

  it.scopedLive(
    "the envelope's control socket under random and mutated lines keeps serving its weavelet",
    () =>
      Effect.gen(function*() {
        const random = makeRandom(seed + 2)
        const dir = yield* Effect.acquireRelease(
          Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "weaver-control-fuzz-"))),
          (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
        )
        const warnings: Array<Logging.Entry> = []
        const origin = { app: "fuzz", deploymentId: "d", replicaId: "envelope" }
        const replicaId = crypto.randomUUID()
        let activated = 0
        yield* Envelope.make({
          bootstrap: {
            app: "fuzz",
            deploymentId: "d",
            replicaId,
            group: "g",
            components: [],
            runMain: false,
            internalAddress: "127.0.0.1:0",
            config: { file: "weaver.toml", dir },
            external: []
          },
          socketDir: dir,
          // A process that never connects: the test plays the weavelet, and a hostile one.
          command: process.execPath,
          args: ["-e", "setTimeout(() => {}, 120000)"],
          env: {},
          handler: {
            ready: () => Effect.void,
            activate: () => Effect.sync(() => void activated++),
            routing: () => Stream.make(["127.0.0.1:1"]),
            exportListener: (_, address) => Effect.succeed(address)
          },
          output: () => {}
        }).pipe(
          Effect.provide(Logger.replace(
            Logger.defaultLogger,
            Logger.make((options) => {
              const entry = Logging.toEntry(origin, options)
              if (entry.level === "warn") warnings.push(entry)
            })
          ))
        )
        const path = Path.join(dir, `${replicaId.slice(0, 8)}.sock`)

        // The weavelet's own client, calling all along.
        const protocol = yield* Layer.build(
          RpcClient.layerProtocolSocket({ retryTransientErrors: false }).pipe(
            Layer.provide(NodeSocket.layerNet({ path })),
            Layer.provide(Control.layerSerialization())
          )
        )
        const client = yield* RpcClient.make(Control.ControlRpcs, { disableTracing: true }).pipe(
          Effect.provide(protocol)
        )
        let done = false
        let good = 0
        let failures = 0
        const steady = yield* Effect.fork(Effect.gen(function*() {
          while (!done) {
            const health = yield* Effect.either(client.Health().pipe(Effect.timeout("5 seconds")))
            const activate = yield* Effect.either(client.Activate({ component: "x" }).pipe(Effect.timeout("5 seconds")))
            if (Either.isRight(health) && Either.isRight(activate)) good++
            else {
              failures++
            }
            yield* Effect.sleep("5 millis")
          }
        }))

        const started = performance.now()
        let lines = 0
        let connections = 0
        let mustClose = 0
        let closedAsExpected = 0
        const connection = () =>
          new Promise<void>((resolve) => {
            connections++
            const socket = Net.connect({ path })
            const tail = random.int(100)
            const ending = tail < 40 ? "fatal" : tail < 60 ? "mutated" : "none"
            const batch: Array<string> = []
            for (let n = 1 + random.int(random.chance(0.8) ? 40 : 800); n > 0; n--) batch.push(valid(random, n))
            if (ending === "fatal") batch.push(fatal(random))
            if (ending === "mutated") batch.push(mutated(random, 1))
            lines += batch.length
            let weEnded = false
            const timer = setTimeout(() => {
              weEnded = true
              socket.end()
            }, ending === "fatal" ? 5_000 : 50)
            socket.on("data", () => {})
            socket.on("error", () => {})
            socket.on("close", () => {
              clearTimeout(timer)
              if (ending === "fatal") {
                mustClose++
                if (!weEnded) closedAsExpected++
              }
              resolve()
            })
            socket.on("connect", () => socket.write(batch.join("\n") + "\n"))
          })
        yield* Effect.promise(async () => {
          const worker = async () => {
            while (lines < 100_000 && performance.now() - started < 60_000) await connection()
          }
          await Promise.all(Array.from({ length: 8 }, worker))
        })
        yield* Effect.sleep("200 millis")
        done = true
        yield* steady.await
        const elapsed = (performance.now() - started) / 1000
        process.stdout.write(
          `control socket fuzz (seed ${seed + 2}): ${lines} lines over ${connections} connections in ` +
            `${
              elapsed.toFixed(1)
            } s; ${closedAsExpected}/${mustClose} connections ending in a bad line closed by the ` +
            `envelope; ${warnings.length} warning lines; the weavelet's client: ${good} rounds answered, ` +
            `${failures} failed\n`
        )
        assert.isAtLeast(lines, 100_000)
        assert.strictEqual(closedAsExpected, mustClose)
        assert.strictEqual(failures, 0)
        assert.isAtLeast(good, 10)
        assert.strictEqual(yield* client.Health(), "ok")
        // Rate-limited: at most 10 lines per 10 s and the counts of the rest.
        const written = warnings.filter((w) => !w.msg.startsWith("suppressed"))
        assert.isAtLeast(written.length, 1)
        assert.isAtMost(written.length, 10 * Math.ceil(elapsed / 10 + 1))
        for (const warning of written) {
          assert.match(warning.msg, /^control socket of replica .+: closing a connection: line \d+ /)
        }
      }),
    120_000
  )
})
