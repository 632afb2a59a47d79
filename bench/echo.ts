/**
 * What the RPC benchmarks share: the echo component, its server and client
 * over `@effect-weaver/transport-rpc`, and server processes started from a
 * bench script (`<script> server ...`, announcing `PORT <n>` on stdout) and
 * killed by pid.
 */
import { Component, Transport, Weaver, WeaverConfig } from "@effect-weaver/core"
import { App, Certificates, Control, Weavelet } from "@effect-weaver/runtime"
import { Server, TransportRpc } from "@effect-weaver/transport-rpc"
import { Context, Effect, Schema, type Scope, Stream } from "effect"
import * as ChildProcess from "node:child_process"
import * as Net from "node:net"
import * as Tls from "node:tls"

export class Echo extends Component.Tag("bench/Echo")<Echo>()({
  echo: Component.method({ payload: Schema.String, success: Schema.String })
}) {}
const EchoImpl = Component.implement(Echo, Effect.succeed({ echo: (s: string) => Effect.succeed(s) }))

/** Serves the echo component on 127.0.0.1 (over mutual TLS with `tls`); succeeds with the port. */
export const serveEcho = (
  deploymentId: string,
  tls?: Certificates.Credentials
): Effect.Effect<number, never, Scope.Scope> =>
  Effect.gen(function*() {
    const transport = yield* TransportRpc.make({ resolve: () => Stream.empty })
    const weavelet = yield* App.makeWeavelet(Weaver.app({ components: [EchoImpl] }), {
      config: WeaverConfig.empty(),
      deploymentId
    }).pipe(Effect.provideService(Transport.Transport, transport), Effect.orDie)
    const server = yield* Server.serve({
      port: 0,
      tls: tls === undefined ? undefined : { credentials: tls, authorize: () => Effect.succeed([Control.anyComponent]) }
    }).pipe(
      Effect.provideService(Weavelet.Weavelet, weavelet),
      Effect.orDie
    )
    return server.port
  })

/** The echo component's client, as a component of another process calls it: through the RPC transport. */
export const echoClient = (
  deploymentId: string,
  port: number,
  tls?: Certificates.Credentials
): Effect.Effect<Echo["Type"], never, Scope.Scope> =>
  Effect.gen(function*() {
    const transport = yield* TransportRpc.make({
      deploymentId,
      resolve: () => Stream.make([`127.0.0.1:${port}`]),
      tls
    })
    const weavelet = yield* App.makeWeavelet(Weaver.app({ components: [] }), {
      config: WeaverConfig.empty(),
      deploymentId,
      extraComponents: [Echo]
    }).pipe(Effect.provideService(Transport.Transport, transport), Effect.orDie)
    return Context.unsafeGet(weavelet.clients("main"), Echo)
  })

/**
 * The raw TCP echo the benches compare with: frames `length:u32 id:u32 payload`,
 * one `write` per `data` event (server) or per tick (client). The server
 * succeeds with its port on 127.0.0.1. With `tls`, the same over mutual TLS
 * 1.3 with the transport's own options (the floor of any TLS transport).
 */
export const rawServer = (tls?: Certificates.Credentials) =>
  new Promise<number>((resolve) => {
    const serve = (socket: Net.Socket) => {
      socket.setNoDelay(true)
      let pending: Buffer | undefined
      socket.on("data", (chunk: Buffer) => {
        const buffer = pending === undefined ? chunk : Buffer.concat([pending, chunk])
        const out: Array<Buffer> = []
        let offset = 0
        while (buffer.length - offset >= 4) {
          const length = buffer.readUInt32LE(offset)
          if (buffer.length - offset < 4 + length) break
          out.push(buffer.subarray(offset, offset + 4 + length))
          offset += 4 + length
        }
        pending = offset === buffer.length ? undefined : buffer.subarray(offset)
        if (out.length > 0) socket.write(out.length === 1 ? out[0]! : Buffer.concat(out))
      })
      socket.on("error", () => {})
    }
    const server = tls === undefined
      ? Net.createServer(serve)
      : Tls.createServer(Certificates.serverOptions(tls), serve)
    server.listen(0, "127.0.0.1", () => resolve((server.address() as Net.AddressInfo).port))
  })

/** The raw echo's client (over mutual TLS with `tls`, to a server whose certificate names bench/Echo). */
export const rawClient = (port: number, tls?: Certificates.Credentials) =>
  new Promise<(payload: Buffer) => Promise<Buffer>>((resolve, reject) => {
    const socket = tls === undefined
      ? Net.connect({ host: "127.0.0.1", port })
      : Tls.connect({ host: "127.0.0.1", port, ...Certificates.clientOptions(tls, "bench/Echo") })
    socket.setNoDelay(true)
    const waiting = new Map<number, (reply: Buffer) => void>()
    let nextId = 1
    let queue: Array<Buffer> = []
    let scheduled = false
    const flush = () => {
      scheduled = false
      const data = queue.length === 1 ? queue[0]! : Buffer.concat(queue)
      queue = []
      socket.write(data)
    }
    let pending: Buffer | undefined
    socket.on("data", (chunk: Buffer) => {
      const buffer = pending === undefined ? chunk : Buffer.concat([pending, chunk])
      let offset = 0
      while (buffer.length - offset >= 4) {
        const length = buffer.readUInt32LE(offset)
        if (buffer.length - offset < 4 + length) break
        const id = buffer.readUInt32LE(offset + 4)
        const done = waiting.get(id)
        waiting.delete(id)
        done?.(buffer.subarray(offset + 8, offset + 4 + length))
        offset += 4 + length
      }
      pending = offset === buffer.length ? undefined : buffer.subarray(offset)
    })
    socket.on("error", reject)
    socket.on(
      tls === undefined ? "connect" : "secureConnect",
      () =>
        resolve((payload) =>
          new Promise<Buffer>((done) => {
            const id = nextId++
            const frame = Buffer.allocUnsafe(8 + payload.length)
            frame.writeUInt32LE(4 + payload.length, 0)
            frame.writeUInt32LE(id, 4)
            payload.copy(frame, 8)
            waiting.set(id, done)
            queue.push(frame)
            if (!scheduled) {
              scheduled = true
              process.nextTick(flush)
            }
          })
        )
    )
  })

const children = new Set<ChildProcess.ChildProcess>()

/** SIGKILLs every server process started by {@link startServer} that still runs. */
export const killChildren = (): void => {
  for (const child of children) {
    if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, "SIGKILL")
  }
  children.clear()
}

/** Runs `script server ...args` with this process's Node flags until it prints `PORT <n>`. */
export const startServer = (script: string, args: ReadonlyArray<string>) =>
  new Promise<{ readonly child: ChildProcess.ChildProcess; readonly port: number }>((resolve, reject) => {
    const child = ChildProcess.spawn(process.execPath, [...process.execArgv, script, "server", ...args], {
      stdio: ["pipe", "pipe", "inherit"]
    })
    children.add(child)
    let out = ""
    child.stdout!.on("data", (chunk: Buffer) => {
      out += chunk.toString()
      const match = /PORT (\d+)/.exec(out)
      if (match) resolve({ child, port: Number(match[1]) })
    })
    const name = args.join(" ")
    child.on("exit", (code) => reject(new Error(`${name} server exited (${code}) before listening`)))
    setTimeout(() => reject(new Error(`${name} server did not start within 20 s`)), 20_000).unref()
  })

/** In a server process: exits when the bench (its parent) closes stdin, so no server outlives it. */
export const exitWithParent = (): void => {
  process.stdin.on("end", () => process.exit(0))
  process.stdin.resume()
}
