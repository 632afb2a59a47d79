/**
 * The client side of the RPC transport: one connection per replica address,
 * with one reader (the socket's `data` handler, resuming calls by id) and one
 * batched writer, a balancer per component, deadlines, cancellation,
 * reconnection with backoff and bounded retries.
 *
 * @since 0.1.0
 */
import type { Component, Transport } from "@effect-weaver/core"
import { ComponentError, MethodMetrics, RemoteCallError } from "@effect-weaver/core"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import { dual } from "effect/Function"
import * as GlobalValue from "effect/GlobalValue"
import type * as MetricLabel from "effect/MetricLabel"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Net from "node:net"
import { Balancer } from "./Balancer.js"
import * as Wire from "./Wire.js"

/**
 * The absolute deadline (milliseconds since the epoch) of the calls the
 * fiber makes, or `undefined` for none. Handlers of remote calls run with the
 * caller's deadline, so it propagates down a call chain.
 *
 * @since 0.1.0
 * @category deadlines
 */
export const currentDeadline: FiberRef.FiberRef<number | undefined> = GlobalValue.globalValue(
  Symbol.for("@effect-weaver/transport-rpc/currentDeadline"),
  () => FiberRef.unsafeMake<number | undefined>(undefined)
)

/**
 * Runs `self` with a deadline `duration` from now for every remote call it
 * makes (an earlier deadline already in force is kept). A call whose deadline
 * expires fails with `RemoteCallError` (reason `Timeout`).
 *
 * @since 0.1.0
 * @category deadlines
 */
export const withTimeout: {
  (duration: Duration.DurationInput): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  <A, E, R>(self: Effect.Effect<A, E, R>, duration: Duration.DurationInput): Effect.Effect<A, E, R>
} = dual(2, <A, E, R>(self: Effect.Effect<A, E, R>, duration: Duration.DurationInput) =>
  Effect.suspend(() => {
    const at = Date.now() + Duration.toMillis(duration)
    return Effect.locallyWith(self, currentDeadline, (current) => current !== undefined && current < at ? current : at)
  }))

/**
 * Client options.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The deployment this process belongs to; servers of other deployments are refused. */
  readonly deploymentId: string
  /**
   * The replica addresses (`host:port`) of a component: a stream of replica
   * sets, each replacing the previous one. `Stream.make([address])` for a
   * fixed set.
   */
  readonly resolve: (component: string) => Stream.Stream<ReadonlyArray<string>>
  /** A deadline for calls made without one (see {@link withTimeout}). None by default. */
  readonly timeout?: Duration.DurationInput | undefined
  /** Bounds on retries of retriable methods. */
  readonly retry?: {
    /** Attempts in all, first included (default 10). */
    readonly attempts?: number | undefined
    /** Time after which no new attempt starts (default 10 seconds). */
    readonly within?: Duration.DurationInput | undefined
  } | undefined
  readonly maxFrameBytes?: number | undefined
  /**
   * Runs every retriable call twice and discards the first result, as
   * Service Weaver's RPC test runner does, to expose methods that should be
   * marked `retry: false`.
   */
  readonly duplicateRetriable?: boolean | undefined
}

/**
 * A client: hands out connections to components.
 *
 * @since 0.1.0
 * @category models
 */
export interface Client {
  readonly connect: (component: Component.Any) => Effect.Effect<Transport.Connection>
}

interface Pending {
  readonly prepared: Prepared
  readonly resume: (effect: Effect.Effect<unknown, unknown>) => void
  timer: ReturnType<typeof setTimeout> | undefined
}

interface Prepared {
  readonly call: Transport.Call
  readonly codec: Wire.MethodCodec
  readonly prefix: Buffer
  readonly labels: ReadonlyArray<MetricLabel.MetricLabel>
}

const knownReasons = new Set<string>(ComponentError.RemoteCallReason.literals)

const remoteError = (call: Transport.Call, reason: RemoteCallError["reason"], detail: string) =>
  new RemoteCallError({ component: call.component, method: call.method, reason, detail })

const describe = (error: unknown): string => error instanceof Error ? error.message : String(error)

const parseAddress = (address: string): { readonly host: string; readonly port: number } => {
  const index = address.lastIndexOf(":")
  const host = address.slice(address.startsWith("tcp://") ? 6 : 0, index).replace(/^\[(.*)\]$/, "$1")
  return { host: host === "" ? "127.0.0.1" : host, port: Number(address.slice(index + 1)) }
}

const cancelFrame = (id: number) => Wire.frame(Wire.FrameType.Cancel, id)

/** One connection to one replica address. */
class Connection {
  readonly socket: Net.Socket
  readonly writer: Wire.FrameWriter
  readonly reader: Wire.FrameReader
  readonly pending = new Map<number, Pending>()
  private nextId = 1
  closed = false
  ready = false

  constructor(readonly peer: Peer) {
    const { host, port } = parseAddress(peer.address)
    const socket = Net.connect({ host, port })
    socket.setNoDelay(true)
    this.socket = socket
    this.writer = new Wire.FrameWriter(socket)
    this.reader = new Wire.FrameReader(peer.client.maxFrameBytes, this.onFrame)
    this.writer.write(Wire.encodeHello(peer.client.hello))
    socket.on("data", (chunk: Buffer) => {
      const error = this.reader.push(chunk)
      if (error !== undefined) this.fail("Protocol", `${peer.address} broke the protocol: ${error.reason}`)
    })
    socket.on("error", (error) => this.fail("Unreachable", `connection to ${peer.address} failed: ${error.message}`))
    socket.on("close", () => this.fail("Unreachable", `connection to ${peer.address} closed`))
  }

  register(pending: Pending): number {
    const id = this.nextId
    this.nextId = id === 0xffffffff ? 1 : id + 1
    this.pending.set(id, pending)
    return id
  }

  readonly onFrame = (type: number, id: number, body: Buffer): void => {
    if (type === Wire.FrameType.Response || (type === Wire.FrameType.Error && id !== 0)) {
      const pending = this.pending.get(id)
      if (pending === undefined) return // cancelled or timed out: the reply is dropped
      this.pending.delete(id)
      if (pending.timer !== undefined) clearTimeout(pending.timer)
      complete(pending, type, body)
    } else if (type === Wire.FrameType.Hello) {
      const hello = Wire.decodeHello(body)
      const refused = hello instanceof Wire.ProtocolError
        ? hello.reason
        : Wire.checkHello(this.peer.client.hello, hello)
      if (refused !== undefined) {
        this.fail("Protocol", `refused server ${this.peer.address}: ${refused}`)
      } else {
        this.ready = true
        this.peer.failures = 0
      }
    } else if (type === Wire.FrameType.Error) {
      const { detail } = Wire.decodeSystemError(body.subarray(1))
      this.fail("Protocol", `server ${this.peer.address} refused the connection: ${detail}`)
    } else {
      this.fail("Protocol", `server ${this.peer.address} sent an unexpected frame of type ${type}`)
    }
  }

  fail(reason: "Unreachable" | "Protocol", detail: string): void {
    if (this.closed) return
    this.closed = true
    this.writer.close()
    this.reader.stop()
    this.socket.destroy()
    const peer = this.peer
    if (peer.connection === this) peer.connection = undefined
    if (!this.ready || reason === "Protocol") {
      peer.failures++
      const backoff = Math.min(1000, 10 * 2 ** Math.min(peer.failures, 10))
      peer.retryAt = Date.now() + backoff * (0.6 + 0.4 * Math.random())
    }
    const pending = [...this.pending.values()]
    this.pending.clear()
    for (const call of pending) {
      if (call.timer !== undefined) clearTimeout(call.timer)
      call.resume(Effect.fail(remoteError(call.prepared.call, reason, detail)))
    }
  }
}

const complete = (pending: Pending, type: number, body: Buffer): void => {
  const { call, codec, labels } = pending.prepared
  MethodMetrics.bytesReply.unsafeUpdate(body.length + Wire.headerBytes, labels)
  if (type === Wire.FrameType.Response) {
    let value: unknown
    try {
      value = codec.decodeSuccess(Wire.unpack(body))
    } catch (error) {
      return pending.resume(Effect.fail(remoteError(call, "Decode", `result: ${describe(error)}`)))
    }
    return pending.resume(Effect.succeed(value))
  }
  if (body[0] === Wire.ErrorKind.Application) {
    let value: unknown
    try {
      value = codec.decodeError(Wire.unpack(body.subarray(1)))
    } catch (error) {
      return pending.resume(Effect.fail(remoteError(call, "Decode", `error: ${describe(error)}`)))
    }
    return pending.resume(Effect.fail(value))
  }
  let system: { readonly reason: string; readonly detail: string }
  try {
    system = Wire.decodeSystemError(body.subarray(1))
  } catch (error) {
    system = { reason: "Protocol", detail: `malformed error frame: ${describe(error)}` }
  }
  const reason = knownReasons.has(system.reason) ? system.reason as RemoteCallError["reason"] : "Protocol"
  pending.resume(Effect.fail(remoteError(call, reason, system.detail)))
}

/** A replica address and its current connection. */
class Peer {
  connection: Connection | undefined = undefined
  failures = 0
  retryAt = 0
  constructor(readonly address: string, readonly client: State) {}

  /** Whether a call may be sent now; dials if there is no connection and backoff allows. */
  readonly usable = (): boolean => {
    const connection = this.connection
    if (connection !== undefined && !connection.closed) return true
    if (this.client.closed || Date.now() < this.retryAt) return false
    this.connection = new Connection(this)
    return true
  }

  close(): void {
    this.connection?.fail("Unreachable", `client closed`)
  }
}

interface State {
  readonly hello: Wire.Hello
  readonly maxFrameBytes: number
  closed: boolean
}

const usable = (peer: Peer) => peer.usable()

/**
 * Makes a client. Its connections close when the scope closes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = Effect.fnUntraced(function*(options: Options) {
  const scope = yield* Effect.scope
  const state: State = {
    hello: { version: Wire.version, deploymentId: options.deploymentId },
    maxFrameBytes: options.maxFrameBytes ?? Wire.defaultMaxFrameBytes,
    closed: false
  }
  const peers = new Map<string, Peer>()
  const peer = (address: string) => {
    let found = peers.get(address)
    if (found === undefined) {
      found = new Peer(address, state)
      peers.set(address, found)
    }
    return found
  }
  yield* Scope.addFinalizer(
    scope,
    Effect.sync(() => {
      state.closed = true
      for (const p of peers.values()) p.close()
    })
  )
  const maxAttempts = Math.max(1, options.retry?.attempts ?? 10)
  const within = Duration.toMillis(options.retry?.within ?? Duration.seconds(10))
  const defaultTimeout = options.timeout === undefined ? undefined : Duration.toMillis(options.timeout)
  const prepared = new WeakMap<Transport.Call, Prepared>()

  const prepare = (call: Transport.Call): Prepared => {
    let found = prepared.get(call)
    if (found === undefined) {
      found = {
        call,
        codec: Wire.codec(call.spec),
        prefix: Wire.encodeHeaderPrefix(`${call.component}.${call.method}`, call.caller),
        labels: MethodMetrics.labels({ caller: call.caller, component: call.component, method: call.method, remote: true })
      }
      prepared.set(call, found)
    }
    return found
  }

  const connection = (balancer: Balancer<Peer>): Transport.Connection => {
    const attempt = (
      p: Prepared,
      parts: ReadonlyArray<Uint8Array>,
      key: string | number | undefined,
      deadline: number | undefined
    ) =>
      Effect.async<unknown, unknown>((resume) => {
        const target = balancer.pick(key, usable)
        const c = target?.connection
        if (c === undefined) {
          const known = balancer.current.map((r) => r.address).join(", ") || "none known"
          return resume(Effect.fail(remoteError(p.call, "Unreachable", `no replica is reachable (replicas: ${known})`)))
        }
        const pending: Pending = { prepared: p, resume, timer: undefined }
        const id = c.register(pending)
        const frame = Wire.frame(Wire.FrameType.Request, id, ...parts)
        MethodMetrics.bytesRequest.unsafeUpdate(frame.length, p.labels)
        c.writer.write(frame)
        if (deadline !== undefined) {
          pending.timer = setTimeout(() => {
            if (c.pending.delete(id)) {
              resume(Effect.fail(remoteError(p.call, "Timeout", `deadline exceeded`)))
            }
          }, Math.max(0, deadline - Date.now()))
        }
        return Effect.sync(() => {
          if (c.pending.delete(id)) {
            if (pending.timer !== undefined) clearTimeout(pending.timer)
            c.writer.write(cancelFrame(id))
          }
        })
      })

    const retrying = (
      p: Prepared,
      parts: ReadonlyArray<Uint8Array>,
      key: string | number | undefined,
      deadline: number | undefined
    ): Effect.Effect<unknown, unknown> => {
      if (!p.call.spec.retry) return attempt(p, parts, key, deadline)
      const started = Date.now()
      const loop = (n: number): Effect.Effect<unknown, unknown> =>
        Effect.catchIf(
          attempt(p, parts, key, deadline),
          (error) => error instanceof RemoteCallError && error.reason === "Unreachable",
          (error) => {
            const now = Date.now()
            const delay = 10 * 1.3 ** n * (1 - 0.4 * Math.random())
            if (
              n + 1 >= maxAttempts || now + delay - started > within ||
              (deadline !== undefined && now + delay >= deadline)
            ) return Effect.fail(error)
            return Effect.zipRight(Effect.sleep(delay), loop(n + 1))
          }
        )
      const once = loop(0)
      return options.duplicateRetriable ? Effect.zipRight(Effect.exit(once), loop(0)) : once
    }

    return {
      remote: true,
      invoke: (call, payload) =>
        Effect.withFiberRuntime<unknown, unknown>((fiber) => {
          const p = prepare(call)
          let deadline = fiber.getFiberRef(currentDeadline)
          if (deadline === undefined && defaultTimeout !== undefined) deadline = Date.now() + defaultTimeout
          const remaining = deadline === undefined ? undefined : deadline - Date.now()
          if (remaining !== undefined && remaining <= 0) {
            return Effect.fail(remoteError(call, "Timeout", "deadline exceeded before the call was sent"))
          }
          let encoded: Buffer
          let key: string | number | undefined
          try {
            encoded = Buffer.from(Wire.pack(p.codec.encodePayload(payload)))
            key = call.spec.routeBy?.(payload)
          } catch (error) {
            return Effect.fail(remoteError(call, "Decode", `payload: ${describe(error)}`))
          }
          const span = fiber.currentSpan
          const trace = span === undefined
            ? undefined
            : { traceId: span.traceId, spanId: span.spanId, sampled: span.sampled }
          const suffix = Wire.encodeHeaderSuffix(remaining === undefined ? undefined : remaining * 1000, trace)
          return retrying(p, Wire.requestBody(p.prefix, suffix, encoded), key, deadline)
        })
    }
  }

  const connect = (component: Component.Any): Effect.Effect<Transport.Connection> =>
    Effect.gen(function*() {
      const balancer = new Balancer<Peer>((p) => p.address)
      const first = yield* Deferred.make<void>()
      yield* options.resolve(component.componentName).pipe(
        Stream.runForEach((addresses) =>
          Effect.sync(() => {
            balancer.update([...new Set(addresses)].map(peer))
          }).pipe(Effect.zipRight(Deferred.succeed(first, undefined)))
        ),
        Effect.forkIn(scope)
      )
      yield* Deferred.await(first).pipe(Effect.timeout(Duration.millis(within)), Effect.ignore)
      return connection(balancer)
    })

  return { connect } satisfies Client
})
