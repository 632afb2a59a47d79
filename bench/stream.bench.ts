/**
 * Streaming methods over the RPC transport, client and server in separate
 * processes on 127.0.0.1, against baselines measured in the same run:
 *
 * - raw echo: the raw Node TCP echo of the RPC bench (16 B, 64 calls in
 *   flight, writes batched per turn): calls/s, the bar every RPC figure is
 *   held to;
 * - raw push: the practical limit for a stream, a server writing
 *   length-prefixed 16 B frames in 64 KiB writes (honouring backpressure) to
 *   a client that reads each as a string: elements/s;
 * - weaver: `Stream.runCount` of a streaming method (`stream: true`) whose
 *   handler streams 16 B strings from `Stream.range` (chunks of 4096), and
 *   the same from a source of one-element chunks (each element pulled on
 *   its own, as `Stream.repeatEffect` does): elements/s, under the default
 *   credit window (256).
 *
 * `npm run build && node --import tsx bench/stream.bench.ts [elements]`
 * The script starts its own servers (`stream.bench.ts server <kind>`) and kills them by pid.
 */
import { Component, Transport, Weaver, WeaverConfig } from "@effect-weaver/core"
import { App, Weavelet } from "@effect-weaver/runtime"
import { Server, TransportRpc } from "@effect-weaver/transport-rpc"
import { Context, Effect, Schema, Stream } from "effect"
import * as Net from "node:net"
import { fileURLToPath } from "node:url"
import { exitWithParent, killChildren, rawClient, rawServer, startServer } from "./echo.js"

const ELEMENTS = Number(process.argv[2] ?? 300_000)
const ROUNDS = 3
const ECHO_SECONDS = 1
const IN_FLIGHT = 64
const DEPLOYMENT = "bench-stream"
const ELEMENT = "z".repeat(16)
const self = fileURLToPath(import.meta.url)

class Streamer extends Component.Tag("bench/Streamer")<Streamer>()({
  chunked: Component.method({ payload: Schema.Number, success: Schema.String, stream: true }),
  single: Component.method({ payload: Schema.Number, success: Schema.String, stream: true })
}) {}

const StreamerImpl = Component.implement(
  Streamer,
  Effect.succeed({
    chunked: (n: number) => Stream.map(Stream.range(1, n), () => ELEMENT),
    single: (n: number) => Stream.map(Stream.rechunk(Stream.range(1, n), 1), () => ELEMENT)
  })
)

const serveWeaver = Effect.gen(function*() {
  const transport = yield* TransportRpc.make({ resolve: () => Stream.empty })
  const weavelet = yield* App.makeWeavelet(Weaver.app({ components: [StreamerImpl] }), {
    config: WeaverConfig.empty(),
    deploymentId: DEPLOYMENT
  }).pipe(Effect.provideService(Transport.Transport, transport), Effect.orDie)
  const server = yield* Server.serve({ port: 0 }).pipe(Effect.provideService(Weavelet.Weavelet, weavelet), Effect.orDie)
  return server.port
})

const weaverClient = (port: number) =>
  Effect.gen(function*() {
    const transport = yield* TransportRpc.make({
      deploymentId: DEPLOYMENT,
      resolve: () => Stream.make([`127.0.0.1:${port}`])
    })
    const weavelet = yield* App.makeWeavelet(Weaver.app({ components: [] }), {
      config: WeaverConfig.empty(),
      deploymentId: DEPLOYMENT,
      extraComponents: [Streamer]
    }).pipe(Effect.provideService(Transport.Transport, transport), Effect.orDie)
    return Context.unsafeGet(weavelet.clients("main"), Streamer)
  })

/** Raw push: a client sends `count:u32`, the server answers with `count` frames `length:u32 payload`. */
const rawPushServer = () =>
  new Promise<number>((resolve) => {
    const frame = Buffer.allocUnsafe(4 + ELEMENT.length)
    frame.writeUInt32LE(ELEMENT.length, 0)
    frame.write(ELEMENT, 4)
    const perWrite = Math.floor(64 * 1024 / frame.length)
    const batch = Buffer.concat(Array.from({ length: perWrite }, () => frame))
    const server = Net.createServer((socket) => {
      socket.setNoDelay(true)
      socket.on("data", (chunk: Buffer) => {
        let left = chunk.readUInt32LE(0)
        const push = () => {
          while (left > 0) {
            const n = Math.min(left, perWrite)
            left -= n
            if (!socket.write(n === perWrite ? batch : batch.subarray(0, n * frame.length))) {
              return void socket.once("drain", push)
            }
          }
        }
        push()
      })
      socket.on("error", () => {})
    })
    server.listen(0, "127.0.0.1", () => resolve((server.address() as Net.AddressInfo).port))
  })

const rawPush = (port: number, count: number) =>
  new Promise<number>((resolve, reject) => {
    const socket = Net.connect({ host: "127.0.0.1", port })
    const frameBytes = 4 + ELEMENT.length
    let received = 0
    const start = performance.now()
    socket.on("connect", () => {
      const request = Buffer.allocUnsafe(4)
      request.writeUInt32LE(count, 0)
      socket.write(request)
    })
    let pending: Buffer | undefined
    let elements = 0
    socket.on("data", (chunk: Buffer) => {
      // Each element is read as a string, as a consumer would use it.
      const buffer = pending === undefined ? chunk : Buffer.concat([pending, chunk])
      let offset = 0
      while (buffer.length - offset >= 4) {
        const length = buffer.readUInt32LE(offset)
        if (buffer.length - offset < 4 + length) break
        if (buffer.toString("latin1", offset + 4, offset + 4 + length).length === length) elements++
        offset += 4 + length
      }
      pending = offset === buffer.length ? undefined : buffer.subarray(offset)
      received = elements * frameBytes
      if (received >= count * frameBytes) {
        const seconds = (performance.now() - start) / 1000
        socket.destroy()
        resolve(count / seconds)
      }
    })
    socket.on("error", reject)
  })

const rawEcho = async (port: number) => {
  const call = await rawClient(port)
  const payload = Buffer.from("x".repeat(16))
  let calls = 0
  const until = performance.now() + ECHO_SECONDS * 1000
  const worker = async () => {
    while (performance.now() < until) {
      await call(payload)
      calls++
    }
  }
  const start = performance.now()
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker))
  return calls / ((performance.now() - start) / 1000)
}

const median = (values: ReadonlyArray<number>) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!
const k = (n: number) => `${(n / 1000).toFixed(0)}k`

const main = async () => {
  const [echo, push, weaver] = await Promise.all([
    startServer(self, ["raw-echo"]),
    startServer(self, ["raw-push"]),
    startServer(self, ["weaver"])
  ])
  const results = {
    echo: [] as Array<number>,
    push: [] as Array<number>,
    chunked: [] as Array<number>,
    single: [] as Array<number>
  }
  await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const streamer = yield* weaverClient(weaver.port)
    const count = (stream: Stream.Stream<string, unknown>) =>
      Effect.gen(function*() {
        const start = performance.now()
        const n = yield* Stream.runCount(stream)
        if (n !== ELEMENTS) return yield* Effect.dieMessage(`received ${n} elements, not ${ELEMENTS}`)
        return ELEMENTS / ((performance.now() - start) / 1000)
      })
    // Warm-up of both paths.
    yield* Stream.runDrain(streamer.chunked(20_000))
    yield* Stream.runDrain(streamer.single(20_000))
    for (let round = 0; round < ROUNDS; round++) {
      results.echo.push(yield* Effect.promise(() => rawEcho(echo.port)))
      results.push.push(yield* Effect.promise(() => rawPush(push.port, ELEMENTS)))
      results.chunked.push(yield* count(streamer.chunked(ELEMENTS)))
      results.single.push(yield* count(streamer.single(ELEMENTS)))
    }
  })))
  const echoRate = median(results.echo)
  const pushRate = median(results.push)
  const line = (name: string, rate: number) =>
    `| ${name} | ${k(rate)}/s | ${(rate / echoRate).toFixed(2)}× | ${(100 * rate / pushRate).toFixed(1)} % |`
  process.stdout.write(
    `${ELEMENTS} elements of 16 B per stream, median of ${ROUNDS} rounds\n\n` +
      `| | rate | vs raw echo calls/s | vs raw push |\n|---|---|---|---|\n` +
      `${line("raw echo (calls, 64 in flight)", echoRate)}\n` +
      `${line("raw push (elements)", pushRate)}\n` +
      `${line("weaver stream, chunked source", median(results.chunked))}\n` +
      `${line("weaver stream, one-element chunks", median(results.single))}\n`
  )
}

if (process.argv[2] === "server") {
  exitWithParent()
  const kind = process.argv[3]
  const announce = (port: number) => process.stdout.write(`PORT ${port}\n`)
  if (kind === "raw-echo") rawServer().then(announce)
  else if (kind === "raw-push") rawPushServer().then(announce)
  else {Effect.runFork(Effect.scoped(Effect.flatMap(serveWeaver, (port) =>
      Effect.zipRight(
        Effect.sync(() => announce(port)),
        Effect.never
      ))))}
} else {
  main().then(killChildren, (error) => {
    killChildren()
    process.stderr.write(`${error}\n`)
    process.exit(1)
  })
}
