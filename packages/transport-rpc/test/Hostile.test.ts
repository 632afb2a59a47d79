/**
 * The wire server against hostile peers: limits before the handshake, deadlines, idle connections, caps,
 * rate-limited logging, refusals that reveal nothing, and memory under a flood of large frames. Plain TCP
 * (`weaver multi deploy`'s default) throughout, but for one test of the same protections under mutual TLS.
 */
import { Certificates, Logging } from "@effect-weaver/runtime"
import { Wire } from "@effect-weaver/transport-rpc"
import { assert, describe, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Logger from "effect/Logger"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Tls from "node:tls"
import { clientOf, Echo, makeHooks, sendRaw, serveReplica, spawnReplica } from "./utils/fixture.js"

const deploymentId = "dep-hostile-0123456789"
const hello = Wire.encodeHello({ version: Wire.version, deploymentId })

/** A logger that keeps the entries the server writes (with their component and attributes). */
const captureLogs = () => {
  const entries: Array<Logging.Entry> = []
  const origin = { app: "test", deploymentId, replicaId: "r1" }
  const layer = Logger.replace(
    Logger.defaultLogger,
    Logger.make((options) => entries.push(Logging.toEntry(origin, options)))
  )
  return { entries, layer }
}

const peerOf = (entry: Logging.Entry) => entry.attrs.find(([key]) => key === "peer")?.[1]

/** Polls `condition` every 10 ms for up to `millis`. */
const eventually = (condition: () => boolean, millis = 5_000) =>
  Effect.gen(function*() {
    const until = Date.now() + millis
    while (!condition() && Date.now() < until) yield* Effect.sleep("10 millis")
    return condition()
  })

/** A raw connection that records whether the server closed it and when; destroyed when the scope closes. */
const connectRaw = (address: string) =>
  Effect.async<
    {
      readonly socket: Net.Socket
      readonly closed: () => number | undefined
      readonly received: () => number
    }
  >((resume) => {
    const [host, port] = address.split(":")
    const socket = Net.connect({ host: host!, port: Number(port) })
    let closedAt: number | undefined
    let received = 0
    socket.on("data", (chunk) => received += chunk.length)
    socket.on("error", () => {})
    socket.on("close", () => closedAt ??= Date.now())
    socket.on("connect", () => resume(Effect.succeed({ socket, closed: () => closedAt, received: () => received })))
  }).pipe(Effect.tap(({ socket }) => Effect.addFinalizer(() => Effect.sync(() => socket.destroy()))))

/** A raw TLS connection with `credentials`, once its TLS handshake is done, recorded as {@link connectRaw}'s. */
const connectTls = (address: string, credentials: Certificates.Credentials) =>
  Effect.async<
    {
      readonly socket: Tls.TLSSocket
      readonly closed: () => number | undefined
      readonly received: () => Buffer
    },
    Error
  >((resume) => {
    const [host, port] = address.split(":")
    const socket = Tls.connect({
      ...Certificates.clientOptions(credentials, "test/Echo"),
      host: host!,
      port: Number(port)
    })
    let closedAt: number | undefined
    const chunks: Array<Buffer> = []
    socket.on("data", (chunk: Buffer) => chunks.push(chunk))
    socket.on("error", (error) => resume(Effect.fail(error)))
    socket.on("close", () => closedAt ??= Date.now())
    socket.on("secureConnect", () =>
      resume(Effect.succeed({ socket, closed: () => closedAt, received: () => Buffer.concat(chunks) })))
  }).pipe(Effect.tap(({ socket }) =>
    Effect.addFinalizer(() => Effect.sync(() => socket.destroy()))
  ))

/**
 * A replica serving over mutual TLS with `options`, its captured logs, and the credentials of a certified caller
 * (group main) of the same authority.
 */
const serveTls = (options: {
  readonly handshakeTimeout: Duration.DurationInput
  readonly maxPendingHandshakes?: number
}) =>
  Effect.gen(function*() {
    const logs = captureLogs()
    const authority = yield* Certificates.makeAuthority(deploymentId)
    const credentials = yield* authority.issue({ group: "test/Echo", components: ["test/Echo"] })
    const caller = yield* authority.issue({ group: "main", components: ["main"] })
    const server = yield* serveReplica(yield* makeHooks(), {
      deploymentId,
      ...options,
      tls: { credentials, authorize: () => Effect.succeed(["test/Echo"]) }
    }).pipe(Effect.provide(logs.layer))
    return { caller, logs, server }
  })

const rssOf = (pid: number): number => {
  const status = Fs.readFileSync(`/proc/${pid}/status`, "utf8")
  const match = /VmRSS:\s+(\d+) kB/.exec(status)
  return match ? Number(match[1]) * 1024 : 0
}

describe("the wire server against hostile peers", () => {
  it.live("refuses a wrong deployment id without revealing the right one", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      const server = yield* serveReplica(yield* makeHooks(), { deploymentId }).pipe(Effect.provide(logs.layer))
      const wrong = Wire.encodeHello({ version: Wire.version, deploymentId: "dep-hostile-0123456788" })
      const { closedByServer, received } = yield* sendRaw(server.address, wrong, 2_000)
      assert.isTrue(closedByServer)
      const frames: Array<{ type: number; id: number; body: Buffer }> = []
      new Wire.FrameReader(1 << 20, (type, id, bytes, start, end) =>
        frames.push({ type, id, body: Buffer.from(bytes.subarray(start, end)) })).push(received)
      assert.strictEqual(frames.length, 1)
      assert.strictEqual(frames[0]!.type, Wire.FrameType.Error)
      assert.strictEqual(frames[0]!.id, 0)
      const { detail, reason } = Wire.decodeSystemError(frames[0]!.body.subarray(1))
      assert.strictEqual(reason, "Protocol")
      assert.include(detail, "does not match")
      assert.notInclude(received.toString("latin1"), deploymentId, "no byte sequence of the reply is the right id")
      assert.notInclude(received.toString("latin1"), "0123456789", "nor a part of it")
      // A real client of another deployment gets the same: a clear reason, not the id.
      const stranger = yield* clientOf(Echo, { deploymentId: "dep-other", addresses: [server.address] })
      const error = yield* Effect.flip(stranger.echo("x"))
      assert.include(error.message, "deployment mismatch")
      assert.notInclude(error.message, deploymentId)
      // The server's own log names the id the peer claimed, which helps find a stale replica.
      assert.isTrue(
        yield* eventually(() =>
          logs.entries.length >= 2
        )
      )
      assert.include(logs.entries[0]!.msg, `refused a client: deployment mismatch`)
      assert.include(logs.entries[0]!.msg, `it claims "dep-hostile-0123456788"`)
    }).pipe(Effect.scoped))

  it.live("reads nothing larger than a small hello before the handshake", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      const server = yield* serveReplica(yield* makeHooks(), { deploymentId, maxHelloBytes: 512 })
        .pipe(Effect.provide(logs.layer))
      const header = Buffer.alloc(9)
      header.writeUInt32LE(513, 0)
      const big = yield* sendRaw(server.address, header, 2_000)
      assert.isTrue(big.closedByServer, "closed as soon as the length field arrives")
      // A request before the hello is refused too, however small.
      const early = yield* sendRaw(
        server.address,
        Wire.frame(Wire.FrameType.Request, 1, Buffer.from([0, 0])),
        2_000
      )
      assert.isTrue(early.closedByServer)
      assert.isTrue(yield* eventually(() => logs.entries.length >= 2))
      const messages = logs.entries.map((entry) => entry.msg)
      assert.include(messages[0], "before the handshake: frame of 513 bytes exceeds the limit of 512")
      assert.include(messages[1], "expected a hello frame, got type 1")
      for (const entry of logs.entries) {
        assert.strictEqual(entry.level, "warn")
        assert.strictEqual(entry.component, "test/Echo", "attributed to the served component, not main")
        assert.match(peerOf(entry) ?? "", /^127\.0\.0\.1:\d+$/)
      }
      assert.strictEqual(server.badConnections(), 2)
      // After the handshake, the frame limit is the larger one.
      const echo = yield* clientOf(Echo, { deploymentId, addresses: [server.address] })
      assert.strictEqual(yield* echo.echo("x".repeat(4000)), "x".repeat(4000))
    }).pipe(Effect.scoped))

  it.live("closes a connection that sends no hello within the handshake deadline", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      const server = yield* serveReplica(yield* makeHooks(), { deploymentId, handshakeTimeout: "200 millis" })
        .pipe(Effect.provide(logs.layer))
      const start = Date.now()
      const silent = yield* connectRaw(server.address)
      // A partial hello does not extend the deadline.
      const partial = yield* connectRaw(server.address)
      partial.socket.write(hello.subarray(0, 6))
      assert.isTrue(yield* eventually(() => silent.closed() !== undefined && partial.closed() !== undefined))
      assert.isAtLeast(silent.closed()! - start, 150)
      assert.isBelow(silent.closed()! - start, 2_000)
      assert.isTrue(yield* eventually(() => logs.entries.length >= 2))
      assert.include(logs.entries[0]!.msg, "no hello within 200 ms of connecting")
      // A client that says hello in time is served.
      const echo = yield* clientOf(Echo, { deploymentId, addresses: [server.address] })
      yield* Effect.sleep("300 millis")
      assert.strictEqual(yield* echo.echo("in time"), "in time")
    }).pipe(Effect.scoped))

  it.live("closes idle connections; their clients reconnect on the next call", () =>
    Effect.gen(function*() {
      const server = yield* serveReplica(yield* makeHooks(), { deploymentId, idleTimeout: "100 millis" })
      const echo = yield* clientOf(Echo, { deploymentId, addresses: [server.address] })
      assert.strictEqual(yield* echo.echo("one"), "one")
      assert.strictEqual(server.connections(), 1)
      assert.isTrue(yield* eventually(() => server.connections() === 0, 2_000))
      assert.strictEqual(server.badConnections(), 0, "an idle connection is not a bad one")
      assert.strictEqual(yield* echo.echo("two"), "two")
      // A busy connection is not idle, nor one with a call in flight.
      const hooks = yield* makeHooks()
      const busy = yield* serveReplica(hooks, { deploymentId, idleTimeout: "100 millis" })
      const slow = yield* clientOf(Echo, { deploymentId, addresses: [busy.address] })
      const fiber = yield* Effect.fork(slow.hang())
      yield* Effect.sleep("400 millis")
      assert.strictEqual(busy.connections(), 1)
      yield* Effect.forEach(Array.from({ length: 8 }), () => Effect.zipRight(Effect.sleep("30 millis"), slow.ping()))
      assert.strictEqual(busy.connections(), 1)
      yield* Fiber.interrupt(fiber)
    }).pipe(Effect.scoped))

  it.live("caps connections awaiting their hello (closing the oldest) and connections in all", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      const server = yield* serveReplica(yield* makeHooks(), {
        deploymentId,
        maxPendingHandshakes: 3,
        maxConnections: 6
      }).pipe(Effect.provide(logs.layer))
      const silent = yield* Effect.forEach(Array.from({ length: 5 }), () => connectRaw(server.address))
      assert.isTrue(yield* eventually(() => silent[0]!.closed() !== undefined && silent[1]!.closed() !== undefined))
      yield* Effect.sleep("50 millis")
      assert.deepStrictEqual(silent.map((c) => c.closed() !== undefined), [true, true, false, false, false])
      assert.include(logs.entries[0]!.msg, "3 connections are waiting for their hello (the limit)")
      // A real client still gets in (evicting another silent one), and keeps its connection.
      const echo = yield* clientOf(Echo, { deploymentId, addresses: [server.address] })
      assert.strictEqual(yield* echo.echo("in"), "in")
      // Fill up to the total cap with greeted raw connections, then one more is dropped.
      for (const c of silent) c.socket.destroy()
      assert.isTrue(yield* eventually(() => server.connections() === 1))
      const greeted = yield* Effect.forEach(
        Array.from({ length: 5 }),
        () =>
          Effect.tap(connectRaw(server.address), (c) =>
            Effect.sync(() => c.socket.write(hello)).pipe(
              Effect.zipRight(eventually(() => c.received() > 0))
            ))
      )
      assert.strictEqual(server.connections(), 6)
      const extra = yield* connectRaw(server.address)
      assert.isTrue(yield* eventually(() => extra.closed() !== undefined))
      assert.isTrue(yield* eventually(() => logs.entries.some((e) => e.msg.includes("6 are open (the limit)"))))
      assert.strictEqual(yield* echo.echo("still in"), "still in")
      for (const c of greeted) c.socket.destroy()
    }).pipe(Effect.scoped))

  it.live("rate-limits its warnings about bad connections and counts the rest", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      const server = yield* serveReplica(yield* makeHooks(), {
        deploymentId,
        badConnectionLog: { lines: 5, interval: "300 millis" }
      }).pipe(Effect.provide(logs.layer))
      const garbage = Buffer.from([0xff, 0xff, 0xff, 0xff, 0])
      yield* Effect.forEach(Array.from({ length: 40 }), () => sendRaw(server.address, garbage, 2_000), {
        concurrency: 8
      })
      assert.strictEqual(server.badConnections(), 40)
      // The summary comes when the window ends, with no further bad connection to trigger it.
      assert.isTrue(yield* eventually(() => logs.entries.some((e) => e.msg.startsWith("suppressed"))))
      const lines = logs.entries.filter((e) => !e.msg.startsWith("suppressed"))
      const suppressed = logs.entries
        .filter((e) => e.msg.startsWith("suppressed"))
        .reduce((sum, e) => sum + Number(/^suppressed (\d+)/.exec(e.msg)![1]), 0)
      assert.isAtMost(lines.length, 10, "at most 5 per window; 40 connections take at most two windows here")
      assert.strictEqual(lines.length + suppressed, 40, "every bad connection is written or counted")
      assert.include(logs.entries.find((e) => e.msg.startsWith("suppressed"))!.msg, "at most 5 per 300ms")
      for (const entry of logs.entries) assert.strictEqual(entry.component, "test/Echo")
    }).pipe(Effect.scoped))

  it.live(
    "under mutual TLS: the deadline holds before and after the TLS handshake, and a wrong id is refused unrevealed",
    () =>
      Effect.gen(function*() {
        const { caller, logs, server } = yield* serveTls({ handshakeTimeout: "200 millis" })
        // A peer that never starts TLS, and one that finishes TLS but sends no hello.
        const start = Date.now()
        const silent = yield* connectRaw(server.address)
        const mute = yield* connectTls(server.address, caller)
        assert.isTrue(yield* eventually(() => silent.closed() !== undefined && mute.closed() !== undefined))
        for (const closed of [silent.closed()!, mute.closed()!]) {
          assert.isAtLeast(closed - start, 150)
          assert.isBelow(closed - start, 2_000)
        }
        assert.strictEqual(silent.received(), 0)
        assert.strictEqual(mute.received().length, 0)
        assert.isTrue(yield* eventually(() => logs.entries.length >= 2))
        const messages = logs.entries.map((entry) => entry.msg)
        assert.isTrue(messages.some((m) => m.includes("refused a client in the TLS handshake")), messages.join("\n"))
        assert.isTrue(messages.some((m) => m.includes("no hello within 200 ms")), messages.join("\n"))
        // A certified peer with another deployment's id learns only that it does not match.
        const wrong = yield* connectTls(server.address, caller)
        wrong.socket.write(Wire.encodeHello({ version: Wire.version, deploymentId: "dep-hostile-0123456788" }))
        assert.isTrue(yield* eventually(() => wrong.closed() !== undefined))
        const received = wrong.received()
        const frames: Array<{ type: number; body: Buffer }> = []
        new Wire.FrameReader(1 << 20, (type, _id, bytes, start, end) =>
          frames.push({ type, body: Buffer.from(bytes.subarray(start, end)) })).push(received)
        assert.deepStrictEqual(
          frames.map((f) =>
            f.type
          ),
          [Wire.FrameType.Error]
        )
        assert.include(Wire.decodeSystemError(frames[0]!.body.subarray(1)).detail, "does not match")
        assert.notInclude(received.toString("latin1"), "0123456789", "no part of the right id")
        assert.strictEqual(server.badConnections(), 3)
      }).pipe(Effect.scoped)
  )

  it.live("under mutual TLS, caps connections still in their TLS handshake (closing the oldest)", () =>
    Effect.gen(function*() {
      // A handshake deadline long enough that only the cap closes anything during the test.
      const { caller, logs, server } = yield* serveTls({ handshakeTimeout: "20 seconds", maxPendingHandshakes: 3 })
      // Peers that open a TCP connection and never start TLS.
      const silent = yield* Effect.forEach(Array.from({ length: 5 }), () => connectRaw(server.address))
      assert.isTrue(yield* eventually(() => silent[0]!.closed() !== undefined && silent[1]!.closed() !== undefined))
      yield* Effect.sleep("50 millis")
      assert.deepStrictEqual(silent.map((c) => c.closed() !== undefined), [true, true, false, false, false])
      assert.include(logs.entries[0]!.msg, "3 connections are in it (the limit)")
      // A certified client still gets in (evicting another silent one) and keeps its connection: once its TLS
      // handshake is done it no longer counts among those in one.
      const echo = yield* clientOf(Echo, { deploymentId, addresses: [server.address], tls: caller })
      assert.strictEqual(yield* echo.echo("in"), "in")
      assert.deepStrictEqual(silent.map((c) => c.closed() !== undefined), [true, true, true, false, false])
      const more = yield* Effect.forEach(Array.from({ length: 3 }), () => connectRaw(server.address))
      assert.isTrue(yield* eventually(() => silent.every((c) => c.closed() !== undefined)))
      assert.isTrue(more.every((c) => c.closed() === undefined))
      assert.strictEqual(yield* echo.echo("still in"), "still in")
    }).pipe(Effect.scoped))

  it.live("a bad server option is an error naming it", () =>
    Effect.gen(function*() {
      const hooks = yield* makeHooks()
      for (
        const [options, expected] of [
          [{ maxConnections: 0 }, "maxConnections must be an integer of at least 1, got 0"],
          [{ handshakeTimeout: "soon" }, `handshakeTimeout must be a positive duration, got "soon"`],
          [{ badConnectionLog: { lines: 1.5 } }, "badConnectionLog.lines must be an integer of at least 0, got 1.5"]
        ] as const
      ) {
        const exit = yield* Effect.exit(serveReplica(hooks, { deploymentId, ...options } as never))
        assert.isTrue(Exit.isFailure(exit))
        assert.include(String(Cause.squash((exit as Exit.Failure<unknown, unknown>).cause)), expected)
      }
    }).pipe(Effect.scoped))

  it.live("a replica's log lines name its component or group, not main", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      const server = yield* serveReplica(yield* makeHooks(), { deploymentId, component: "hello/Group" })
        .pipe(Effect.provide(logs.layer))
      yield* sendRaw(server.address, Buffer.from([1, 0, 0, 0]), 2_000)
      assert.isTrue(yield* eventually(() => logs.entries.length === 1))
      assert.strictEqual(logs.entries[0]!.component, "hello/Group")
      assert.include(logs.entries[0]!.msg, "frame length 1 is shorter than a frame header")
    }).pipe(Effect.scoped))

  it.live(
    "16 clients sending 16 MiB each before the handshake: each is closed, the server's memory stays flat",
    () =>
      Effect.gen(function*() {
        const replica = yield* spawnReplica(deploymentId)
        const echo = yield* clientOf(Echo, { deploymentId, addresses: [replica.address] })
        // Warm up the server's code paths, then take its resident memory as the baseline.
        yield* Effect.forEach(Array.from({ length: 200 }, (_, i) => `w${i}`), echo.echo, { concurrency: 16 })
        yield* sendRaw(replica.address, Buffer.from([0xff, 0xff, 0xff, 0x00, 0x00]), 2_000)
        yield* Effect.sleep("200 millis")
        const before = rssOf(replica.pid)
        let peak = before
        const sampler = setInterval(() => peak = Math.max(peak, rssOf(replica.pid)), 5)
        const perClient = 16 * 1024 * 1024
        const chunk = Buffer.alloc(64 * 1024, 0x61)
        /** What each client sends first; the rest of its 16 MiB is `chunk` repeated. */
        const openings = (i: number): Buffer => {
          const header = Buffer.alloc(9)
          switch (i % 4) {
            case 0: // a hello that announces 16 MiB
              header.writeUInt32LE(perClient - 4, 0)
              return header
            case 1: // a hello just under the limit, carrying junk
              header.writeUInt32LE(Wire.defaultMaxHelloBytes, 0)
              return header
            case 2: // a request before any hello
              header.writeUInt32LE(perClient - 4, 0)
              header[4] = Wire.FrameType.Request
              return header
            default: // no frame at all
              return Buffer.alloc(0)
          }
        }
        const flood = (i: number) =>
          Effect.async<{ readonly sent: number; readonly closedByServer: boolean }>((resume) => {
            const [host, port] = replica.address.split(":")
            const socket = Net.connect({ host: host!, port: Number(port) })
            let sent = 0
            let done = false
            const finish = (closedByServer: boolean) => {
              if (done) return
              done = true
              clearTimeout(timer)
              socket.destroy()
              resume(Effect.succeed({ sent, closedByServer }))
            }
            const timer = setTimeout(() => finish(false), 20_000)
            const pump = () => {
              while (!done && sent < perClient) {
                sent += chunk.length
                if (!socket.write(chunk)) return socket.once("drain", pump)
              }
            }
            socket.on("connect", () => {
              const first = openings(i)
              sent += first.length
              socket.write(first)
              pump()
            })
            socket.on("data", () => {})
            socket.on("close", () => finish(true))
            socket.on("error", () => finish(true))
          })
        const start = Date.now()
        const results = yield* Effect.forEach(Array.from({ length: 16 }, (_, i) => i), flood, { concurrency: 16 })
        const elapsed = Date.now() - start
        yield* Effect.sleep("100 millis")
        clearInterval(sampler)
        const growth = peak - before
        process.stdout.write(
          `16 clients × 16 MiB before the handshake: all closed by the server in ${elapsed} ms; ` +
            `server RSS ${(before / 2 ** 20).toFixed(1)} MiB before, peak growth ${
              (growth / 2 ** 20).toFixed(1)
            } MiB; ` +
            `bytes written before the close: ${results.map((r) => r.sent).join(", ")}\n`
        )
        for (const result of results) assert.isTrue(result.closedByServer)
        assert.isBelow(growth, 32 * 2 ** 20)
        assert.strictEqual(yield* echo.echo("still serving"), "still serving")
      }).pipe(Effect.scoped),
    60_000
  )
})
