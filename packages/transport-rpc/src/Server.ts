/**
 * The server side of the RPC transport: serves the components a weavelet
 * hosts on a TCP address. Each request runs through the weavelet's handlers
 * (the same pipeline as a local call); bad frames close only the connection
 * they arrived on.
 *
 * @since 0.1.0
 */
import { Component, Tracing, Transport as CoreTransport, Weavelet } from "@effect-weaver/runtime"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import * as Tracer from "effect/Tracer"
import * as Net from "node:net"
import * as Wire from "./Wire.js"

/**
 * The server could not listen.
 *
 * @since 0.1.0
 * @category errors
 */
export class ServeError extends Data.TaggedError("ServeError")<{
  readonly address: string
  readonly cause: unknown
}> {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `cannot serve RPC on ${this.address}: ${this.cause instanceof Error ? this.cause.message : this.cause}`
  }
}

/**
 * Server options.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Host to bind (default `127.0.0.1`). */
  readonly host?: string | undefined
  /** Port to bind (default 0: any free port). */
  readonly port?: number | undefined
  readonly maxFrameBytes?: number | undefined
}

/**
 * A running server.
 *
 * @since 0.1.0
 * @category models
 */
export interface Server {
  /** `host:port` to give clients. */
  readonly address: string
  readonly port: number
  /** Open connections (for tests and status pages). */
  readonly connections: () => number
}

interface Entry {
  readonly component: string
  readonly method: string
  readonly codec: Wire.MethodCodec
}

type AnyHandlers = Weavelet.AnyHandlers

const maxBufferedReplies = 8 * 1024 * 1024

const describeCause = (cause: Cause.Cause<unknown>): string => {
  const defect = Cause.dieOption(cause)
  if (Option.isSome(defect)) {
    const value = defect.value
    return value instanceof Error ? value.message : String(value)
  }
  return Cause.pretty(cause)
}

const describe = (error: unknown): string => error instanceof Error ? error.message : String(error)

/**
 * Serves the components the current weavelet hosts until the scope closes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const serve = Effect.fnUntraced(function*(options: Options = {}) {
  const weavelet = yield* Weavelet.Weavelet
  const captured = yield* Effect.runtime<never>()
  // Handlers are parented only on the span their request carries, never on one current where the server started.
  // A call that carries none (its caller is not sampled) runs under a span that records nothing, shared by all:
  // handlers that annotate their span find one, at no cost per call.
  const runtime = Runtime.make({
    ...captured,
    context: Context.add(captured.context, Tracer.ParentSpan, Tracing.unsampledSpan({}))
  })
  const runFork = Runtime.runFork(runtime)
  const maxFrameBytes = options.maxFrameBytes ?? Wire.defaultMaxFrameBytes
  const hello: Wire.Hello = { version: Wire.version, deploymentId: weavelet.deploymentId }
  const entries = new Map<string, Entry>()
  for (const [name, component] of weavelet.components) {
    if (!weavelet.hosts(name)) continue
    for (const [method, spec] of Object.entries(component.methods)) {
      entries.set(`${name}.${method}`, { component: name, method, codec: Wire.codec(spec) })
    }
  }
  const resolved = new Map<string, AnyHandlers>()
  const handlersOf = (component: string): Effect.Effect<AnyHandlers> =>
    Effect.tap(weavelet.handlers(component), (handlers) => {
      resolved.set(component, handlers)
    })
  const open = new Set<ServerConnection>()
  const log = (message: string, remote: string) =>
    runFork(Effect.logWarning(message).pipe(Effect.annotateLogs({ transport: "rpc", peer: remote })))

  class ServerConnection {
    readonly writer: Wire.FrameWriter
    readonly reader: Wire.FrameReader
    readonly inflight = new Map<number, Fiber.RuntimeFiber<unknown, unknown>>()
    readonly remote: string
    greeted = false
    closed = false

    constructor(readonly socket: Net.Socket) {
      socket.setNoDelay(true)
      this.remote = `${socket.remoteAddress}:${socket.remotePort}`
      this.writer = new Wire.FrameWriter(socket)
      this.reader = new Wire.FrameReader(maxFrameBytes, this.onFrame)
      socket.on("data", (chunk: Buffer) => {
        const error = this.reader.push(chunk)
        if (error !== undefined) return this.close(`closing connection: ${error.reason}`)
        // The replies of handlers that answered synchronously go out now, all in one write.
        this.writer.flush()
        // A client that sends but does not read: stop reading its requests until its replies drain.
        if (socket.writableLength > maxBufferedReplies) socket.pause()
      })
      socket.on("drain", () => socket.resume())
      socket.on("error", () => this.close(undefined))
      socket.on("close", () => this.close(undefined))
    }

    close(reason: string | undefined): void {
      if (this.closed) return
      this.closed = true
      open.delete(this)
      if (reason !== undefined) log(reason, this.remote)
      this.reader.stop()
      this.writer.flush()
      this.writer.close()
      this.socket.end()
      this.socket.destroySoon()
      for (const fiber of this.inflight.values()) fiber.unsafeInterruptAsFork(FiberId.none)
      this.inflight.clear()
    }

    readonly onFrame = (type: number, id: number, bytes: Buffer, start: number, end: number): void => {
      if (!this.greeted) {
        if (type !== Wire.FrameType.Hello) {
          return this.close(`closing connection: expected a hello frame, got type ${type}`)
        }
        const theirs = Wire.decodeHello(bytes.subarray(start, end))
        const refused = theirs instanceof Wire.ProtocolError ? theirs.reason : Wire.checkHello(hello, theirs)
        if (refused !== undefined) {
          this.writer.write(Wire.systemError(0, "Protocol", refused))
          return this.close(`refused a client: ${refused}`)
        }
        this.greeted = true
        this.writer.write(Wire.encodeHello(hello))
        return
      }
      if (type === Wire.FrameType.Request) return this.request(id, bytes, start, end)
      if (type === Wire.FrameType.Cancel) {
        const fiber = this.inflight.get(id)
        if (fiber !== undefined) {
          this.inflight.delete(id)
          fiber.unsafeInterruptAsFork(FiberId.none)
        }
        return
      }
      this.close(`closing connection: unexpected frame of type ${type} from a client`)
    }

    request(id: number, bytes: Buffer, start: number, end: number): void {
      const decoded = Wire.decodeRequest(bytes, start, end)
      if (decoded instanceof Wire.ProtocolError) return this.close(`closing connection: ${decoded.reason}`)
      if (this.inflight.has(id)) return this.close(`closing connection: call id ${id} is already in flight`)
      const { header } = decoded
      const entry = entries.get(header.method)
      if (entry === undefined) {
        return this.writer.write(
          Wire.systemError(id, "Protocol", `method ${header.method} is not served here (is the component hosted?)`)
        )
      }
      let payload: unknown
      try {
        payload = entry.codec.decodePayload(Wire.unpack(bytes, decoded.payloadStart, end))
      } catch (error) {
        return this.writer.write(Wire.systemError(id, "Decode", `payload: ${describe(error)}`))
      }
      const handlers = resolved.get(entry.component)
      let effect: Effect.Effect<unknown, unknown>
      if (handlers !== undefined) {
        try {
          effect = handlers[entry.method]!(payload)
        } catch (defect) {
          effect = Effect.die(defect)
        }
        // A handler that answered synchronously (returned an Exit) needs no fiber, unless traced: reply inline.
        if (Exit.isExit(effect) && !(header.sampled && header.traceId !== undefined)) {
          return reply(this.writer, entry, id, effect)
        }
      } else {
        effect = Effect.flatMap(handlersOf(entry.component), (h) => h[entry.method]!(payload))
      }
      let timer: ReturnType<typeof setTimeout> | undefined
      if (header.deadlineMicros !== undefined) {
        const millis = header.deadlineMicros / 1000
        effect = Effect.locally(effect, Component.currentDeadline, Date.now() + millis)
        timer = setTimeout(() => {
          const fiber = this.inflight.get(id)
          if (fiber === undefined) return
          this.inflight.delete(id)
          fiber.unsafeInterruptAsFork(FiberId.none)
          this.writer.write(Wire.systemError(id, "Timeout", "deadline exceeded while the handler was running"))
        }, Math.max(0, millis))
      }
      if (header.constructing.length > 0) {
        effect = Effect.locally(effect, CoreTransport.constructing, header.constructing)
      }
      if (header.traceId !== undefined && header.spanId !== undefined) {
        const parent = Tracer.externalSpan({ traceId: header.traceId, spanId: header.spanId, sampled: header.sampled })
        effect = header.sampled
          ? Effect.withSpan(effect, header.method, {
            kind: "server",
            parent,
            attributes: { component: entry.component, method: entry.method, caller: header.caller, remote: true },
            captureStackTrace: false
          })
          : Effect.withParentSpan(effect, parent)
      }
      const fiber = runFork(effect)
      this.inflight.set(id, fiber)
      fiber.addObserver((exit) => {
        if (timer !== undefined) clearTimeout(timer)
        if (this.inflight.get(id) !== fiber) return
        this.inflight.delete(id)
        reply(this.writer, entry, id, exit)
      })
    }
  }

  const server = Net.createServer((socket) => {
    const connection = new ServerConnection(socket)
    open.add(connection)
  })
  const host = options.host ?? "127.0.0.1"
  const port = yield* Effect.async<number, ServeError>((resume) => {
    const onError = (cause: Error) =>
      resume(Effect.fail(new ServeError({ address: `${host}:${options.port ?? 0}`, cause })))
    server.once("error", onError)
    server.listen({ host, port: options.port ?? 0 }, () => {
      server.off("error", onError)
      const address = server.address()
      resume(Effect.succeed(typeof address === "object" && address !== null ? address.port : 0))
    })
  })
  yield* Effect.addFinalizer(() =>
    Effect.async<void>((resume) => {
      for (const connection of [...open]) connection.close(undefined)
      server.close(() => resume(Effect.void))
    })
  )
  const info: Server = {
    address: `${host.includes(":") ? `[${host}]` : host}:${port}`,
    port,
    connections: () => open.size
  }
  return info
})

const reply = (writer: Wire.FrameWriter, entry: Entry, id: number, exit: Exit.Exit<unknown, unknown>): void => {
  if (Exit.isSuccess(exit)) {
    try {
      writer.writeValue(Wire.FrameType.Response, id, undefined, entry.codec.encodeSuccess(exit.value))
    } catch (error) {
      writer.write(Wire.systemError(id, "Handler", `result does not match the success schema: ${describe(error)}`))
    }
    return
  }
  writer.write(failureFrame(entry, id, exit.cause))
}

const failureFrame = (entry: Entry, id: number, cause: Cause.Cause<unknown>): Buffer => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) {
    try {
      return Wire.applicationError(id, entry.codec.encodeError(failure.value))
    } catch (error) {
      return Wire.systemError(
        id,
        "Handler",
        `failed with an error its error schema does not declare: ${describe(failure.value)} (${describe(error)})`
      )
    }
  }
  if (Cause.isInterruptedOnly(cause)) return Wire.systemError(id, "Cancelled", "the handler was interrupted")
  return Wire.systemError(id, "Handler", describeCause(cause))
}
