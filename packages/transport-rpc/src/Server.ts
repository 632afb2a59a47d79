/**
 * The server side of the RPC transport: serves the components a weavelet
 * hosts on a TCP address. Each request runs through the weavelet's handlers
 * (the same pipeline as a local call); bad frames close only the connection
 * they arrived on.
 *
 * Any process that can reach the address can connect, so the server expects
 * hostile peers: before the handshake it reads nothing but a small hello
 * frame, within a deadline; it bounds the connections open and those still
 * waiting for their hello, closes idle ones, buffers partial frames in linear
 * time and memory, and rate-limits its warnings about bad connections.
 *
 * @since 0.1.0
 */
import {
  Certificates,
  Component,
  Control,
  Logging,
  Tracing,
  Transport as CoreTransport,
  Weavelet
} from "@effect-weaver/runtime"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import * as Stream from "effect/Stream"
import * as Tracer from "effect/Tracer"
import * as Net from "node:net"
import * as Tls from "node:tls"
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
  /** The largest frame accepted after the handshake, in bytes after the length field (default 16 MiB). */
  readonly maxFrameBytes?: number | undefined
  /** The largest hello frame accepted (default {@link Wire.defaultMaxHelloBytes}, 4 KiB). */
  readonly maxHelloBytes?: number | undefined
  /** How long a client has, from connecting, to send its hello (default {@link defaults}, 5 seconds). */
  readonly handshakeTimeout?: Duration.DurationInput | undefined
  /**
   * A connection that sends nothing and has no call in flight for this long
   * is closed (default 10 minutes); its client reconnects on its next call.
   * Checked every half of it, so a connection goes after 1 to 1.5 times it.
   */
  readonly idleTimeout?: Duration.DurationInput | undefined
  /** The most connections open at once (default 4096); connections beyond it are dropped as they are accepted. */
  readonly maxConnections?: number | undefined
  /**
   * The most connections still waiting for their hello (default 256), and under TLS as many still in their TLS
   * handshake; one more closes the oldest of them.
   */
  readonly maxPendingHandshakes?: number | undefined
  /**
   * At most `lines` warnings about bad connections per `interval` (default
   * 10 per 10 seconds); then one line counts those not written.
   */
  readonly badConnectionLog?: {
    readonly lines?: number | undefined
    readonly interval?: Duration.DurationInput | undefined
  } | undefined
  /**
   * The component the server's log entries are attributed to, e.g. the
   * process's colocation group (default: the first component it serves, or
   * `main` if it serves none).
   */
  readonly component?: string | undefined
  /**
   * Serve over mutual TLS: only a peer whose certificate the deployment's
   * authority signed gets past the TLS handshake, and it may call only the
   * components `authorize` lists for the group its certificate names (the
   * call graph; `Control.anyComponent` for all). A call to another is refused
   * with a `RemoteCallError` of reason `Unauthorized`, after asking
   * `authorize` once more (an edge of the graph may be newer than the
   * connection).
   */
  readonly tls?: {
    readonly credentials: Certificates.Credentials
    readonly authorize: (peer: Certificates.Identity) => Effect.Effect<ReadonlyArray<string>>
  } | undefined
}

/**
 * Calls refused because the caller's group may not call the component (see
 * {@link Options.tls}), by component and calling group.
 *
 * @since 0.1.0
 * @category metrics
 */
export const refusedCalls = Metric.counter("serviceweaver_refused_calls", {
  description: "Calls refused by mutual TLS authorization: the calling group's components do not require the component",
  incremental: true
})

/**
 * The defaults of {@link Options}.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaults = {
  maxFrameBytes: Wire.defaultMaxFrameBytes,
  maxHelloBytes: Wire.defaultMaxHelloBytes,
  handshakeTimeout: Duration.seconds(5),
  idleTimeout: Duration.minutes(10),
  maxConnections: 4096,
  maxPendingHandshakes: 256,
  badConnectionLogLines: 10,
  badConnectionLogInterval: Duration.seconds(10)
} as const

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
  /**
   * Connections closed or dropped for a reason since the server started: a
   * bad frame, a refused or late handshake, a limit. Each is logged, or
   * counted in a summary line when the log is rate-limited.
   */
  readonly badConnections: () => number
}

interface Entry {
  readonly component: string
  readonly method: string
  readonly codec: Wire.MethodCodec
  readonly stream: boolean
}

/** A stream the server is producing: the credit its consumer granted, and the producer waiting for more. */
interface Producing {
  readonly fiber: Fiber.RuntimeFiber<unknown, unknown>
  credit: number
  /** Set while the producer waits for credit. */
  wake: (() => void) | undefined
  /** Cancelled, timed out, failed or the connection closed: the producer writes nothing more. */
  stopped: boolean
  /** Encoded elements not written yet, and whether a write of them is scheduled. */
  readonly pending: Array<unknown>
  scheduled: boolean
  /** Elements could not be packed: the stream ends with this `Handler` error. */
  readonly onUnpackable: (detail: string) => void
}

type AnyHandlers = Weavelet.AnyHandlers

const maxBufferedReplies = 8 * 1024 * 1024

/** The longest delay `setTimeout` takes; a longer one fires at once (Node warns and uses 1 ms). */
const maxTimerMillis = 2 ** 31 - 1

/** How long a connection closed by the server may take to flush its last frames before it is destroyed. */
const lingerMillis = 1_000

/** The options with their defaults, or what is wrong with them. */
const checkOptions = (options: Options) => {
  const count = (name: string, value: number | undefined, fallback: number, min: number): number | string => {
    if (value === undefined) return fallback
    return Number.isSafeInteger(value) && value >= min
      ? value
      : `${name} must be an integer of at least ${min}, got ${value}`
  }
  const millis = (name: string, value: Duration.DurationInput | undefined, fallback: Duration.Duration) => {
    const duration = value === undefined ? Option.some(fallback) : Duration.decodeUnknown(value)
    if (Option.isNone(duration) || !Duration.greaterThan(duration.value, Duration.zero)) {
      return `${name} must be a positive duration, got ${JSON.stringify(value)}`
    }
    return Duration.toMillis(duration.value)
  }
  const settings = {
    // Less could not carry a hello: 5 bytes of type and id, 4 of version and id length, then the id.
    maxFrameBytes: count("maxFrameBytes", options.maxFrameBytes, defaults.maxFrameBytes, 16),
    maxHelloBytes: count("maxHelloBytes", options.maxHelloBytes, defaults.maxHelloBytes, 16),
    maxConnections: count("maxConnections", options.maxConnections, defaults.maxConnections, 1),
    maxPendingHandshakes: count(
      "maxPendingHandshakes",
      options.maxPendingHandshakes,
      defaults.maxPendingHandshakes,
      1
    ),
    logLines: count("badConnectionLog.lines", options.badConnectionLog?.lines, defaults.badConnectionLogLines, 0),
    handshakeMillis: millis("handshakeTimeout", options.handshakeTimeout, defaults.handshakeTimeout),
    idleMillis: millis("idleTimeout", options.idleTimeout, defaults.idleTimeout),
    logIntervalMillis: millis(
      "badConnectionLog.interval",
      options.badConnectionLog?.interval,
      defaults.badConnectionLogInterval
    )
  }
  for (const value of Object.values(settings)) if (typeof value === "string") return `bad server option: ${value}`
  return settings as { readonly [K in keyof typeof settings]: number }
}

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
/** A peer's address as the server's log lines name it. */
const peerOf = (socket: { readonly remoteAddress?: string | undefined; readonly remotePort?: number | undefined }) =>
  `${socket.remoteAddress}:${socket.remotePort}`

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
  const host = options.host ?? "127.0.0.1"
  const settings = checkOptions(options)
  if (typeof settings === "string") {
    return yield* new ServeError({ address: `${host}:${options.port ?? 0}`, cause: new Error(settings) })
  }
  const { handshakeMillis, idleMillis, logIntervalMillis, maxFrameBytes, maxPendingHandshakes } = settings
  const maxHelloBytes = Math.min(settings.maxHelloBytes, maxFrameBytes)
  const hello: Wire.Hello = { version: Wire.version, deploymentId: weavelet.deploymentId }
  const entries = new Map<string, Entry>()
  for (const [name, component] of weavelet.components) {
    if (!weavelet.hosts(name)) continue
    for (const [method, spec] of Object.entries(component.methods)) {
      entries.set(`${name}.${method}`, { component: name, method, codec: Wire.codec(spec), stream: spec.stream })
    }
  }
  const resolved = new Map<string, AnyHandlers>()
  const handlersOf = (component: string): Effect.Effect<AnyHandlers> =>
    Effect.tap(weavelet.handlers(component), (handlers) => {
      resolved.set(component, handlers)
    })
  const open = new Set<ServerConnection>()
  /** Connections still waiting for their hello, oldest first (a Set iterates in insertion order). */
  const awaiting = new Set<ServerConnection>()
  let badConnections = 0
  // The server logs about the components it serves, not as main: a replica's lines name its own component.
  const component = options.component ?? entries.values().next().value?.component ?? "main"
  const limiter = Logging.makeRateLimiter({
    lines: settings.logLines,
    interval: logIntervalMillis,
    about: "bad connections",
    write: (message, peer) =>
      runFork(
        Effect.logWarning(message).pipe(
          Effect.annotateLogs(peer === undefined ? { transport: "rpc" } : { transport: "rpc", peer }),
          Logging.withComponent(component)
        )
      )
  })
  const bad = (reason: string, remote: string | undefined) => {
    badConnections++
    limiter.log(reason, remote)
  }

  class ServerConnection {
    readonly writer: Wire.FrameWriter
    readonly reader: Wire.FrameReader
    readonly inflight = new Map<number, Fiber.RuntimeFiber<unknown, unknown>>()
    /** The streams in flight, by call id (ids are unique across calls and streams). */
    readonly streams = new Map<number, Producing>()
    readonly remote: string
    greeted = false
    closed = false
    /** Whether bytes arrived since the last idle sweep. */
    active = true
    handshakeTimer: ReturnType<typeof setTimeout> | undefined
    lingerTimer: ReturnType<typeof setTimeout> | undefined = undefined
    /** Under mutual TLS: the group the peer's certificate names, and the components it may call (once known). */
    peer: Certificates.Identity | undefined = undefined
    allowed: ReadonlySet<string> | undefined = undefined
    /** Components asked about again after a refusal: a second refusal is final for the connection. */
    rechecked: Set<string> | undefined = undefined

    constructor(readonly socket: Net.Socket) {
      socket.setNoDelay(true)
      this.remote = peerOf(socket)
      if (tls !== undefined) {
        const peer = Certificates.identityOf((socket as Tls.TLSSocket).getPeerCertificate())
        if (peer === undefined) {
          queueMicrotask(() => this.close("refused a client: its certificate names no colocation group"))
        } else {
          this.peer = peer
          // No frame is read until the peer's group is authorized.
          socket.pause()
          this.authorize(() => socket.resume())
        }
      }
      this.writer = new Wire.FrameWriter(socket)
      // Until the handshake, the only frame a client may send is a hello: nothing larger is buffered.
      this.reader = new Wire.FrameReader(maxHelloBytes, this.onFrame)
      this.handshakeTimer = setTimeout(
        () => this.close(`closing connection: no hello within ${handshakeMillis} ms of connecting`),
        Math.min(handshakeMillis, maxTimerMillis)
      )
      socket.on("data", (chunk: Buffer) => {
        this.active = true
        const error = this.reader.push(chunk)
        if (error !== undefined) {
          return this.close(`closing connection${this.greeted ? "" : " before the handshake"}: ${error.reason}`)
        }
        // The replies of handlers that answered synchronously go out now, all in one write.
        this.writer.flush()
        // A client that sends but does not read: stop reading its requests until its replies drain.
        if (socket.writableLength > maxBufferedReplies) socket.pause()
      })
      socket.on("drain", () => socket.resume())
      socket.on("error", () => this.close(undefined))
      socket.on("close", () => {
        if (this.lingerTimer !== undefined) clearTimeout(this.lingerTimer)
        this.close(undefined)
      })
    }

    /** Asks which components the peer's group may call, then `then`. */
    authorize(then: () => void): void {
      const fiber = runFork(tls!.authorize(this.peer!))
      fiber.addObserver((exit) => {
        if (this.closed) return
        const allowed = Exit.isSuccess(exit) ? exit.value : []
        this.allowed = allowed.includes(Control.anyComponent) ? undefined : new Set(allowed)
        then()
      })
    }

    /** A call the peer's group may not make: asked about once more, then refused, counted and logged. */
    unauthorized(id: number, component: string, bytes: Buffer, start: number, end: number): void {
      if (this.rechecked?.has(component) !== true) {
        ;(this.rechecked ??= new Set()).add(component)
        const frame = Buffer.from(bytes.subarray(start, end))
        this.socket.pause()
        return this.authorize(() => {
          this.socket.resume()
          this.request(id, frame, 0, frame.length)
          this.writer.flush()
        })
      }
      const group = this.peer!.group
      runFork(Effect.tagMetrics(Metric.increment(refusedCalls), { component, caller_group: group }))
      limiter.log(
        `refused a call to ${component} from group ${group}: no component of the group requires it`,
        this.remote
      )
      this.writer.write(
        Wire.systemError(
          id,
          "Unauthorized",
          `colocation group ${group} may not call ${component}: none of its components requires it ` +
            `(a component's code resolves the components it calls with yield*)`
        )
      )
    }

    /** Closes the connection; a `reason` marks it as bad, logged (rate-limited) and counted. */
    close(reason: string | undefined): void {
      if (this.closed) return
      this.closed = true
      open.delete(this)
      awaiting.delete(this)
      if (this.handshakeTimer !== undefined) clearTimeout(this.handshakeTimer)
      if (reason !== undefined) bad(reason, this.remote)
      this.reader.stop()
      this.writer.flush()
      this.writer.close()
      this.socket.end()
      this.socket.destroySoon()
      // A peer that does not read would hold the socket, and the frames queued for it, for ever.
      if (!this.socket.destroyed) {
        this.lingerTimer = setTimeout(() => this.socket.destroy(), lingerMillis)
        this.lingerTimer.unref()
      }
      for (const fiber of this.inflight.values()) fiber.unsafeInterruptAsFork(FiberId.none)
      this.inflight.clear()
      for (const producing of this.streams.values()) this.stopStream(producing)
      this.streams.clear()
    }

    /** Stops a stream's producer: its fiber is interrupted (its finalizers run) and writes nothing more. */
    stopStream(producing: Producing): void {
      producing.stopped = true
      producing.fiber.unsafeInterruptAsFork(FiberId.none)
    }

    /** The consumer of stream `id` accepts `grant` more elements. */
    credit(id: number, bytes: Buffer, start: number, end: number): void {
      const grant = Wire.decodeCredit(bytes, start, end)
      if (grant instanceof Wire.ProtocolError) return this.close(`closing connection: ${grant.reason}`)
      const producing = this.streams.get(id)
      if (producing === undefined) {
        if (this.inflight.has(id)) {
          return this.close(`closing connection: credit for call ${id}, which is not a stream`)
        }
        // A stream that ended (or timed out) while the credit was on its way: nothing to do.
        return
      }
      if (producing.credit + grant > Wire.maxStreamCredit) {
        return this.close(
          `closing connection: credit overflow on stream ${id} (${producing.credit} + ${grant} elements, ` +
            `more than ${Wire.maxStreamCredit})`
        )
      }
      producing.credit += grant
      producing.wake?.()
    }

    readonly onFrame = (type: number, id: number, bytes: Buffer, start: number, end: number): void => {
      if (!this.greeted) return this.handshake(type, bytes.subarray(start, end))
      if (type === Wire.FrameType.Request) return this.request(id, bytes, start, end)
      if (type === Wire.FrameType.Cancel) {
        const fiber = this.inflight.get(id)
        if (fiber !== undefined) {
          this.inflight.delete(id)
          fiber.unsafeInterruptAsFork(FiberId.none)
        }
        const producing = this.streams.get(id)
        if (producing !== undefined) {
          this.streams.delete(id)
          this.stopStream(producing)
          // A stream's cancel is acknowledged: its client keeps the id reserved until then, so that any frame for
          // an id it does not know is a violation, not a straggler.
          this.writer.write(Wire.systemError(id, "Cancelled", "the stream was cancelled by its consumer"))
        }
        return
      }
      if (type === Wire.FrameType.Credit) return this.credit(id, bytes, start, end)
      this.close(`closing connection: unexpected frame of type ${type} from a client`)
    }

    handshake(type: number, body: Buffer): void {
      if (type !== Wire.FrameType.Hello) {
        return this.close(`closing connection before the handshake: expected a hello frame, got type ${type}`)
      }
      const theirs = Wire.decodeHello(body)
      if (theirs instanceof Wire.ProtocolError) {
        this.writer.write(Wire.systemError(0, "Protocol", theirs.reason))
        return this.close(`refused a client: ${theirs.reason}`)
      }
      const refused = Wire.checkHello(hello, theirs)
      if (refused !== undefined) {
        // The peer learns only that its id does not match; the log names the id it claimed.
        this.writer.write(Wire.systemError(0, "Protocol", refused))
        const claimed = theirs.version === hello.version ? ` (it claims ${Wire.quote(theirs.deploymentId)})` : ""
        return this.close(`refused a client: ${refused}${claimed}`)
      }
      this.greeted = true
      awaiting.delete(this)
      clearTimeout(this.handshakeTimer)
      this.handshakeTimer = undefined
      this.reader.maxFrameBytes = maxFrameBytes
      this.writer.write(Wire.encodeHello(hello))
    }

    request(id: number, bytes: Buffer, start: number, end: number): void {
      const decoded = Wire.decodeRequest(bytes, start, end)
      if (decoded instanceof Wire.ProtocolError) return this.close(`closing connection: ${decoded.reason}`)
      if (this.inflight.has(id) || this.streams.has(id)) {
        return this.close(`closing connection: call id ${id} is already in flight`)
      }
      const { header } = decoded
      const entry = entries.get(header.method)
      if (entry === undefined) {
        return this.writer.write(
          Wire.systemError(id, "Protocol", `method ${header.method} is not served here (is the component hosted?)`)
        )
      }
      if (this.allowed !== undefined && !this.allowed.has(entry.component)) {
        return this.unauthorized(id, entry.component, bytes, start, end)
      }
      if (entry.stream !== (header.credit !== undefined)) {
        return this.writer.write(
          Wire.systemError(
            id,
            "Protocol",
            entry.stream
              ? `method ${header.method} is a streaming method, called without a stream credit`
              : `method ${header.method} is not a streaming method, called as one`
          )
        )
      }
      let payload: unknown
      try {
        payload = entry.codec.decodePayload(Wire.unpack(bytes, decoded.payloadStart, end))
      } catch (error) {
        return this.writer.write(Wire.systemError(id, "Decode", `payload: ${describe(error)}`))
      }
      if (header.credit !== undefined) return this.stream(id, entry, header, header.credit, payload)
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
        }, Math.min(Math.max(0, millis), maxTimerMillis))
      }
      const fiber = runFork(withCaller(effect, entry, header))
      this.inflight.set(id, fiber)
      fiber.addObserver((exit) => {
        if (timer !== undefined) clearTimeout(timer)
        if (this.inflight.get(id) !== fiber) return
        this.inflight.delete(id)
        reply(this.writer, entry, id, exit)
      })
    }

    /**
     * Opens a stream: a fiber pulls the handler's Stream and sends its elements in batches while the consumer's
     * credit lasts, then waits for more. It ends with a stream end frame or an error frame (one span, one fiber).
     */
    stream(id: number, entry: Entry, header: Wire.RequestHeader, credit: number, payload: unknown): void {
      const handlers = resolved.get(entry.component)
      const source = handlers !== undefined
        ? handlers[entry.method]!(payload) as unknown as Stream.Stream<unknown, unknown>
        : Stream.unwrap(
          Effect.map(
            handlersOf(entry.component),
            (h) => h[entry.method]!(payload) as unknown as Stream.Stream<unknown, unknown>
          )
        )
      const producing = {
        credit,
        wake: undefined,
        stopped: false,
        pending: [],
        scheduled: false,
        onUnpackable: (detail: string) => {
          if (this.streams.get(id) !== producing) return
          this.streams.delete(id)
          this.stopStream(producing)
          this.writer.write(Wire.systemError(id, "Handler", detail))
        }
      } as Omit<Producing, "fiber"> as Producing
      let effect = produce(this.writer, entry, id, source, producing)
      let timer: ReturnType<typeof setTimeout> | undefined
      if (header.deadlineMicros !== undefined) {
        const millis = header.deadlineMicros / 1000
        effect = Effect.locally(effect, Component.currentDeadline, Date.now() + millis)
        timer = setTimeout(() => {
          if (this.streams.get(id) !== producing) return
          this.streams.delete(id)
          this.stopStream(producing)
          this.writer.write(Wire.systemError(id, "Timeout", "deadline exceeded while the stream was running"))
        }, Math.min(Math.max(0, millis), maxTimerMillis))
      }
      const fiber = runFork(withCaller(effect, entry, header))
      ;(producing as { fiber: Fiber.RuntimeFiber<unknown, unknown> }).fiber = fiber
      this.streams.set(id, producing)
      fiber.addObserver((exit) => {
        if (timer !== undefined) clearTimeout(timer)
        if (this.streams.get(id) !== producing) return
        // The elements gathered before the end go first.
        flushBatch(this.writer, id, producing)
        if (this.streams.get(id) !== producing) return
        this.streams.delete(id)
        if (Exit.isSuccess(exit)) this.writer.write(Wire.streamEndFrame(id))
        else this.writer.write(failureFrame(entry, id, exit.cause))
      })
    }
  }

  const tls = options.tls
  /**
   * Under TLS, the connections still in their TLS handshake, by peer address, oldest first: capped as those
   * awaiting their hello are (a connection is one of those once its TLS handshake is done), or peers that never
   * start TLS would hold every slot of maxConnections for the whole handshake deadline.
   */
  const inTls = new Map<string, Net.Socket>()
  const connected = (raw: Net.Socket) => {
    if (inTls.size >= maxPendingHandshakes) {
      const [peer, oldest] = inTls.entries().next().value!
      inTls.delete(peer)
      bad(
        `closing connection in the TLS handshake: ${inTls.size + 1} connections are in it (the limit), this was ` +
          `the oldest`,
        peer
      )
      oldest.destroy()
    }
    const peer = peerOf(raw)
    inTls.set(peer, raw)
    raw.once("close", () => {
      if (inTls.get(peer) === raw) inTls.delete(peer)
    })
  }
  const accept = (socket: Net.Socket) => {
    if (tls !== undefined) inTls.delete(peerOf(socket))
    if (awaiting.size >= maxPendingHandshakes) {
      // The oldest is the likeliest to be a peer that never sends its hello; a real client's arrives at once.
      awaiting.values().next().value!.close(
        `closing connection before the handshake: ${awaiting.size} connections are waiting for their hello ` +
          `(the limit), this was the oldest`
      )
    }
    const connection = new ServerConnection(socket)
    open.add(connection)
    awaiting.add(connection)
  }
  const server = tls === undefined
    ? Net.createServer(accept)
    : Tls.createServer(
      { ...Certificates.serverOptions(tls.credentials), handshakeTimeout: handshakeMillis },
      accept
    ).on(
      "tlsClientError",
      (error, socket) => {
        bad(`refused a client in the TLS handshake: ${error.message}`, peerOf(socket))
        // Node reports a handshake timeout here but leaves the socket open: a peer that never starts TLS would
        // keep its connection (and a slot of maxConnections) for good.
        socket.destroy()
      }
    ).on("connection", connected)
  server.maxConnections = settings.maxConnections
  server.on("drop", (peer) => {
    bad(
      `dropped a connection: ${server.maxConnections} are open (the limit)`,
      peer === undefined ? undefined : peerOf(peer)
    )
  })
  const port = yield* Effect.async<number, ServeError>((resume) => {
    const onError = (cause: Error) =>
      resume(Effect.fail(new ServeError({ address: `${host}:${options.port ?? 0}`, cause })))
    server.once("error", onError)
    server.listen({ host, port: options.port ?? 0 }, () => {
      server.off("error", onError)
      // After listening, errors are those of accepting a connection (e.g. out of file descriptors): the server
      // keeps serving. Without a listener, Node would throw them and end the process.
      server.on("error", (cause) => limiter.log(`cannot accept a connection: ${cause.message}`, undefined))
      const address = server.address()
      resume(Effect.succeed(typeof address === "object" && address !== null ? address.port : 0))
    })
  })
  // Connections that send nothing for a while are closed: a sweep per server, not a timer per connection that
  // every chunk would have to re-arm.
  const sweep = setInterval(() => {
    for (const connection of open) {
      if (!connection.greeted) continue
      if (!connection.active && connection.inflight.size === 0 && connection.streams.size === 0) {
        connection.close(undefined)
      } else connection.active = false
    }
  }, Math.min(Math.max(1, idleMillis / 2), maxTimerMillis))
  sweep.unref()
  yield* Effect.addFinalizer(() =>
    Effect.async<void>((resume) => {
      clearInterval(sweep)
      for (const connection of [...open]) connection.close(undefined)
      limiter.flush()
      server.close(() => resume(Effect.void))
    })
  )
  const info: Server = {
    address: `${host.includes(":") ? `[${host}]` : host}:${port}`,
    port,
    connections: () => open.size,
    badConnections: () => badConnections
  }
  return info
})

/** Runs a handler with what its caller sent: construction path and trace context (a server span when sampled). */
const withCaller = <A, E>(
  effect: Effect.Effect<A, E>,
  entry: Entry,
  header: Wire.RequestHeader
): Effect.Effect<A, E> => {
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
  return effect
}

/** Waits until the consumer grants credit (or the producer is interrupted). */
const awaitCredit = (producing: Producing): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    producing.wake = () => {
      producing.wake = undefined
      resume(Effect.void)
    }
    return Effect.sync(() => {
      producing.wake = undefined
    })
  })

/** Encodes one element, or says why it cannot be (a defect of the handler). */
const encodeElement = (entry: Entry, element: unknown): { readonly value: unknown } | Error => {
  try {
    return { value: entry.codec.encodeSuccess(element) }
  } catch (error) {
    return new Error(`a stream element does not match the success schema: ${describe(error)}`)
  }
}

/**
 * Pulls `source` and sends its elements: at most the credit granted, in
 * frames of at most {@link Wire.maxBatchElements}; with no credit left it
 * waits for more, holding at most the chunk it pulled last. Elements are
 * encoded as they are pulled and gathered across chunks until a frame is
 * full, the credit runs out or the turn of the event loop ends, so that a
 * source of one-element chunks does not cost a frame per element.
 */
const produce = (
  writer: Wire.FrameWriter,
  entry: Entry,
  id: number,
  source: Stream.Stream<unknown, unknown>,
  producing: Producing
): Effect.Effect<void, unknown> =>
  Effect.scoped(Effect.flatMap(Stream.toPull(source), (pull) => {
    const pending = producing.pending
    const flushLater = () => {
      if (producing.scheduled) return
      producing.scheduled = true
      process.nextTick(() => flushBatch(writer, id, producing))
    }
    /** Sends `elements` from `from` on, waiting for credit whenever it runs out. */
    const sendChunk = (elements: ReadonlyArray<unknown>, from: number): Effect.Effect<void> => {
      for (let at = from; at < elements.length; at++) {
        if (producing.credit === 0) {
          flushBatch(writer, id, producing)
          return Effect.zipRight(awaitCredit(producing), Effect.suspend(() => sendChunk(elements, at)))
        }
        const encoded = encodeElement(entry, elements[at])
        if (encoded instanceof Error) return Effect.die(encoded)
        producing.credit--
        pending.push(encoded.value)
        if (pending.length >= Wire.maxBatchElements) flushBatch(writer, id, producing)
      }
      if (pending.length > 0) flushLater()
      return Effect.void
    }
    const loop: Effect.Effect<void, unknown> = Effect.matchEffect(pull, {
      onFailure: (error) => Option.isNone(error) ? Effect.void : Effect.fail(error.value),
      onSuccess: (chunk) => Effect.zipRight(sendChunk(Chunk.toReadonlyArray(chunk), 0), loop)
    })
    return loop
  }))

/**
 * Writes the elements gathered for stream `id` as one items frame. Elements
 * msgpack cannot pack stop the stream with a `Handler` error.
 */
const flushBatch = (writer: Wire.FrameWriter, id: number, producing: Producing): void => {
  producing.scheduled = false
  if (producing.pending.length === 0) return
  const batch = producing.pending.splice(0, producing.pending.length)
  if (producing.stopped) return
  try {
    writer.writeValue(Wire.FrameType.StreamItems, id, undefined, batch)
  } catch (error) {
    producing.onUnpackable(`stream elements cannot be packed: ${describe(error)}`)
  }
}

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
