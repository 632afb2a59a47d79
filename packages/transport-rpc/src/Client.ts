/**
 * The client side of the RPC transport: one connection per replica address,
 * with one reader (the socket's `data` handler, resuming calls by id) and one
 * batched writer, a balancer per component, deadlines carried on the wire,
 * cancellation and reconnection with backoff. A replica that leaves a
 * component's routing fails that component's calls in flight on it at once,
 * as Unreachable. Retries are the call pipeline's, in core.
 *
 * @since 0.1.0
 */
import { Transport } from "@effect-weaver/runtime"
import {
  Address,
  Certificates,
  Component,
  ComponentError,
  MethodMetrics,
  RemoteCallError,
  Transport as CoreTransport
} from "@effect-weaver/runtime"
import * as Cause from "effect/Cause"
import type * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Net from "node:net"
import * as Tls from "node:tls"
import { Balancer } from "./Balancer.js"
import * as Wire from "./Wire.js"

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
  /**
   * How long a call made while its component has no known replica waits for
   * one (default 10 seconds). Retries after transport failures are the call
   * pipeline's (see `Weavelet.RetryPolicy`), not the client's.
   */
  readonly replicaWait?: Duration.DurationInput | undefined
  readonly maxFrameBytes?: number | undefined
  /**
   * Runs every retriable call twice and discards the first result, as
   * Service Weaver's RPC test runner does, to expose methods that should be
   * marked `retry: false`.
   */
  readonly duplicateRetriable?: boolean | undefined
  /**
   * Call over mutual TLS with these credentials: a replica is trusted only if
   * its certificate, signed by the deployment's authority, names the
   * component it was dialed for.
   */
  readonly tls?: Certificates.Credentials | undefined
  /**
   * The elements a stream's consumer accepts ahead of what it has taken
   * (default {@link Wire.defaultStreamWindow}, at most
   * {@link Wire.maxStreamCredit}): the most a producer sends before it waits,
   * and so the most this side buffers per stream.
   */
  readonly streamWindow?: number | undefined
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

/** What a connection knows of a call in flight on it. */
interface Pending {
  readonly prepared: Prepared
  /** The balancer that picked the replica. */
  readonly route: Route
  /** A reply frame arrived (for a stream: its end or error frame): its body is `bytes` from `start` to `end`. */
  complete(type: number, bytes: Buffer, start: number, end: number): void
  /** The connection failed. */
  fail(error: RemoteCallError): void
}

interface Prepared {
  readonly call: Transport.Call
  readonly codec: Wire.MethodCodec
  readonly prefix: Buffer
  /** The request head of a call without deadline or trace context. */
  readonly plainHead: Buffer
  readonly series: MethodMetrics.Series
}

const knownReasons = new Set<string>(ComponentError.RemoteCallReason.literals)

const remoteError = (call: Transport.Call, reason: RemoteCallError["reason"], detail: string) =>
  new RemoteCallError({ component: call.component, method: call.method, reason, detail })

/** A call that failed before it was sent. */
const unsent = (prepared: Prepared, reason: RemoteCallError["reason"], detail: string) =>
  Exit.fail(remoteError(prepared.call, reason, detail))

const describe = (error: unknown): string => error instanceof Error ? error.message : String(error)

const cancelFrame = (id: number) => Wire.frame(Wire.FrameType.Cancel, id)

/**
 * The calls in flight on a connection, by id: a table indexed by the id's low
 * bits and kept at most half full. The connection picks the ids, skipping
 * those whose slot is taken, so a lookup is one array read; a `Map` costs
 * several times that per call, which shows at 100k calls a second.
 */
class CallTable {
  private slots: Array<Pending | undefined> = new Array(64).fill(undefined)
  private ids = new Uint32Array(64)
  private nextId = 1
  size = 0

  /** Adds a call and returns the id it is sent with (never 0, which the protocol reserves). */
  add(pending: Pending): number {
    if (2 * (this.size + 1) > this.slots.length) this.grow()
    const mask = this.slots.length - 1
    let id = this.nextId
    while (this.slots[id & mask] !== undefined) id = id === 0xffffffff ? 1 : id + 1
    this.nextId = id === 0xffffffff ? 1 : id + 1
    this.slots[id & mask] = pending
    this.ids[id & mask] = id
    this.size++
    return id
  }

  /** The call sent with `id`, if it is in flight. */
  get(id: number): Pending | undefined {
    const slot = id & (this.slots.length - 1)
    return this.ids[slot] === id ? this.slots[slot] : undefined
  }

  /** Removes the call sent with `id` and returns it; undefined if it is not in flight (cancelled, timed out). */
  take(id: number): Pending | undefined {
    const slot = id & (this.slots.length - 1)
    const pending = this.slots[slot]
    if (pending === undefined || this.ids[slot] !== id) return undefined
    this.slots[slot] = undefined
    this.ids[slot] = 0
    this.size--
    return pending
  }

  /** Removes and returns the calls `select` picks. */
  takeWhere(select: (pending: Pending) => boolean): Array<Pending> {
    const taken: Array<Pending> = []
    for (let slot = 0; slot < this.slots.length; slot++) {
      const pending = this.slots[slot]
      if (pending === undefined || !select(pending)) continue
      this.slots[slot] = undefined
      this.ids[slot] = 0
      this.size--
      taken.push(pending)
    }
    return taken
  }

  /** Removes and returns every call. */
  clear(): Array<Pending> {
    const calls = this.slots.filter((pending) => pending !== undefined)
    this.slots.fill(undefined)
    this.ids.fill(0)
    this.size = 0
    return calls
  }

  private grow(): void {
    const slots: Array<Pending | undefined> = new Array(this.slots.length * 2).fill(undefined)
    const ids = new Uint32Array(slots.length)
    const mask = slots.length - 1
    for (let i = 0; i < this.slots.length; i++) {
      if (this.slots[i] === undefined) continue
      slots[this.ids[i]! & mask] = this.slots[i]
      ids[this.ids[i]! & mask] = this.ids[i]!
    }
    this.slots = slots
    this.ids = ids
  }
}

/** One connection to one replica address. */
class Connection {
  readonly socket: Net.Socket
  readonly writer: Wire.FrameWriter
  readonly reader: Wire.FrameReader
  readonly pending = new CallTable()
  /** Calls the last chunk of replies completed; their callers' next calls are batched, not written one by one. */
  resumed = 0
  closed = false
  ready = false

  constructor(readonly peer: Peer) {
    const { host, port } = Address.split(peer.address, "127.0.0.1")
    const tls = peer.client.tls
    const socket = tls === undefined
      ? Net.connect({ host, port })
      : Tls.connect({ host, port, ...Certificates.clientOptions(tls, peer.component) })
    socket.setNoDelay(true)
    this.socket = socket
    this.writer = new Wire.FrameWriter(socket)
    this.reader = new Wire.FrameReader(peer.client.maxFrameBytes, this.onFrame)
    this.writer.write(Wire.encodeHello(peer.client.hello))
    socket.on("data", (chunk: Buffer) => {
      this.resumed = 0
      const error = this.reader.push(chunk)
      if (error !== undefined) this.fail("Protocol", `${peer.address} broke the protocol: ${error.reason}`)
    })
    socket.on("error", (error) => this.fail("Unreachable", `connection to ${peer.address} failed: ${error.message}`))
    socket.on("close", () => this.fail("Unreachable", `connection to ${peer.address} closed`))
  }

  readonly onFrame = (type: number, id: number, bytes: Buffer, start: number, end: number): void => {
    if (type === Wire.FrameType.Response || (type === Wire.FrameType.Error && id !== 0)) {
      if (type === Wire.FrameType.Response && this.pending.get(id) instanceof StreamCall) {
        return this.fail("Protocol", `${this.peer.address} broke the protocol: a response frame for stream ${id}`)
      }
      const pending = this.pending.take(id)
      if (pending === undefined) return // cancelled or timed out: the reply is dropped
      this.resumed++
      pending.complete(type, bytes, start, end)
    } else if (type === Wire.FrameType.StreamItems || type === Wire.FrameType.StreamEnd) {
      // A stream's id stays reserved until its end, error or cancel acknowledgement: any other id is a violation.
      const pending = this.pending.get(id)
      if (!(pending instanceof StreamCall)) {
        return this.fail(
          "Protocol",
          `${this.peer.address} broke the protocol: stream ${
            type === Wire.FrameType.StreamEnd ? "end" : "elements"
          } for call ${id}, which is not a stream in flight`
        )
      }
      if (type === Wire.FrameType.StreamEnd) {
        this.pending.take(id)
        return pending.complete(type, bytes, start, end)
      }
      const violation = pending.items(bytes, start, end)
      if (violation !== undefined) this.fail("Protocol", `${this.peer.address} broke the protocol: ${violation}`)
    } else if (type === Wire.FrameType.Hello) {
      const hello = Wire.decodeHello(bytes.subarray(start, end))
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
      const { detail } = Wire.decodeSystemError(bytes.subarray(start + 1, end))
      this.fail("Protocol", `server ${this.peer.address} refused the connection: ${detail}`)
    } else {
      this.fail("Protocol", `server ${this.peer.address} sent an unexpected frame of type ${type}`)
    }
  }

  /**
   * Closes the connection and fails every call in flight on it. A broken
   * connection (`backoff`) delays the next dial to its replica.
   */
  fail(reason: "Unreachable" | "Protocol", detail: string, backoff = true): void {
    if (this.closed) return
    this.closed = true
    this.writer.close()
    this.reader.stop()
    this.socket.destroy()
    const peer = this.peer
    if (peer.connection === this) peer.connection = undefined
    if (backoff && (!this.ready || reason === "Protocol")) {
      peer.failures++
      const backoff = Math.min(1000, 10 * 2 ** Math.min(peer.failures, 10))
      peer.retryAt = Date.now() + backoff * (0.6 + 0.4 * Math.random())
    }
    for (const call of this.pending.clear()) call.fail(remoteError(call.prepared.call, reason, detail))
  }
}

/** The outcome of a call from its reply frame. */
const decodeReply = (
  prepared: Prepared,
  type: number,
  bytes: Buffer,
  start: number,
  end: number
): Exit.Exit<unknown, unknown> => {
  const { call, codec } = prepared
  if (type === Wire.FrameType.Response) {
    try {
      return Exit.succeed(codec.decodeSuccess(Wire.unpack(bytes, start, end)))
    } catch (error) {
      return Exit.fail(remoteError(call, "Decode", `result: ${describe(error)}`))
    }
  }
  if (bytes[start] === Wire.ErrorKind.Application) {
    let value: unknown
    try {
      value = codec.decodeError(Wire.unpack(bytes, start + 1, end))
    } catch (error) {
      return Exit.fail(remoteError(call, "Decode", `error: ${describe(error)}`))
    }
    return Exit.fail(value)
  }
  let system: { readonly reason: string; readonly detail: string }
  try {
    system = Wire.decodeSystemError(bytes.subarray(start + 1, end))
  } catch (error) {
    system = { reason: "Protocol", detail: `malformed error frame: ${describe(error)}` }
  }
  const reason = knownReasons.has(system.reason) ? system.reason as RemoteCallError["reason"] : "Protocol"
  return Exit.fail(remoteError(call, reason, system.detail))
}

/** A component's balancer, and the calls waiting for it to know a replica. */
interface Route {
  readonly balancer: Balancer<Peer>
  readonly waiting: Set<{ wake(): void }>
}

/**
 * One invocation: sends the request to a replica (waiting for one to be
 * known if there is none), enforces the deadline, and resumes the calling
 * fiber exactly once.
 */
class Invocation implements Pending {
  /** When the call began waiting for a replica to become known. */
  private waitingSince = 0
  /** Whether the call already waited for a replica's dial backoff to end. */
  private backedOff = false
  private connection: Connection | undefined = undefined
  private id = 0
  private deadlineTimer: ReturnType<typeof setTimeout> | undefined = undefined
  private waitTimer: ReturnType<typeof setTimeout> | undefined = undefined
  private done = false

  constructor(
    readonly prepared: Prepared,
    /** The request body before the payload; a call's own copy when it has a deadline. */
    readonly head: Buffer,
    /** The payload, encoded by its schema. */
    readonly payload: unknown,
    readonly key: string | number | undefined,
    readonly deadline: number | undefined,
    readonly route: Route,
    /** How long to wait for a replica to become known, in milliseconds. */
    readonly replicaWait: number,
    readonly resume: (exit: Exit.Exit<unknown, unknown>) => void,
    readonly caller: Caller
  ) {
    if (deadline !== undefined) {
      this.deadlineTimer = setTimeout(() => this.expire(), Math.max(0, deadline - Date.now()))
    }
    // A fiber that makes a call has stopped waiting for any earlier one: it was interrupted out of it.
    caller.current?.interrupt()
    caller.current = this
  }

  send(): void {
    const balancer = this.route.balancer
    const target = balancer.pick(this.key, usable)
    const c = target?.connection
    if (c === undefined) {
      if (balancer.current.length === 0) return this.awaitReplica()
      // Every known replica refused its last dial and is backing off: gone and about to leave the routing (the one
      // replica of a singleton, restarting), or about to accept again. Nothing was sent: wait as for no replica, once
      // per attempt (the call pipeline's retries bound how many dials a call makes).
      const retryAt = Math.min(...balancer.current.map((r) => r.retryAt))
      if (retryAt > Date.now() && !this.backedOff) {
        this.backedOff = true
        return this.awaitReplica(retryAt)
      }
      const known = balancer.current.map((r) => r.address).join(", ")
      return this.fail(remoteError(this.prepared.call, "Unreachable", `no replica is reachable (replicas: ${known})`))
    }
    if (this.deadline !== undefined) {
      // The deadline travels as time remaining when the frame is sent.
      this.head.writeDoubleLE((this.deadline - Date.now()) * 1000, this.deadlineOffset())
    }
    const id = c.pending.add(this)
    let size: number
    try {
      size = c.writer.writeValue(Wire.FrameType.Request, id, this.head, this.payload)
    } catch (error) {
      c.pending.take(id)
      return this.finish(
        Exit.fail(remoteError(this.prepared.call, "Decode", `payload cannot be packed: ${describe(error)}`))
      )
    }
    this.connection = c
    this.id = id
    this.prepared.series.bytesRequest.update(size)
    // The only call in flight on the connection, and no other caller just resumed: nothing to batch it with.
    if (c.pending.size === 1 && c.resumed <= 1) c.writer.flush()
  }

  /**
   * The component has no replica: none has started yet, or all are being
   * restarted. Nothing was sent, so any call (retriable or not) may wait for
   * the next replica set, as Service Weaver's callers wait for a connection,
   * up to the retry time bound or the deadline. With `until` (the known
   * replicas are all backing off a failed dial), the call tries again then,
   * if the replica set has not changed first.
   */
  private awaitReplica(until = Infinity): void {
    const now = Date.now()
    if (this.waitingSince === 0) this.waitingSince = now
    const giveUpAt = this.waitingSince + this.replicaWait
    if (now >= giveUpAt) {
      const known = this.route.balancer.current.map((r) => r.address).join(", ") || "none known"
      const detail = `no replica became reachable within ${this.replicaWait} ms (replicas: ${known})`
      return this.finish(Exit.fail(remoteError(this.prepared.call, "Unreachable", detail)))
    }
    this.route.waiting.add(this)
    // The deadline timer, if earlier, ends the wait first.
    this.waitTimer = setTimeout(() => this.wake(), Math.min(giveUpAt, until) - now)
  }

  /** The replica set changed (or the wait is over): try again. */
  wake(): void {
    this.route.waiting.delete(this)
    if (this.waitTimer !== undefined) clearTimeout(this.waitTimer)
    this.waitTimer = undefined
    if (!this.done) this.send()
  }

  private deadlineOffset(): number {
    // The header length, then the constant prefix and the flags byte.
    return 2 + this.prepared.prefix.length + 1
  }

  complete(type: number, bytes: Buffer, start: number, end: number): void {
    this.connection = undefined
    this.prepared.series.bytesReply.update(end - start + Wire.headerBytes)
    this.finish(decodeReply(this.prepared, type, bytes, start, end))
  }

  fail(error: RemoteCallError): void {
    this.connection = undefined
    this.finish(Exit.fail(error))
  }

  private expire(): void {
    this.deadlineTimer = undefined
    const c = this.connection
    if (c !== undefined) c.pending.take(this.id)
    this.connection = undefined
    this.finish(Exit.fail(remoteError(this.prepared.call, "Timeout", "deadline exceeded")))
  }

  /** The caller was interrupted: tell the server, which interrupts the handler. */
  interrupt(): void {
    const c = this.connection
    if (c !== undefined && c.pending.take(this.id) !== undefined) c.writer.write(cancelFrame(this.id))
    this.connection = undefined
    this.done = true
    this.clearTimers()
  }

  private clearTimers(): void {
    if (this.waitingSince !== 0) this.route.waiting.delete(this)
    if (this.deadlineTimer !== undefined) clearTimeout(this.deadlineTimer)
    if (this.waitTimer !== undefined) clearTimeout(this.waitTimer)
  }

  private finish(exit: Exit.Exit<unknown, unknown>): void {
    if (this.done) return
    this.done = true
    this.clearTimers()
    if (this.caller.current === this) this.caller.current = undefined
    this.resume(exit)
  }
}

/**
 * One call of a streaming method on a connection: the elements received and
 * not yet taken by the consumer (at most the window), the credit granted,
 * and how the stream ended. Its id stays in the connection's table until the
 * server's last frame for it (end, error, or the acknowledgement of a
 * cancel), so that a frame for an id not in the table is a violation.
 */
class StreamCall implements Pending {
  /** Elements received and not yet handed to the consumer; the consumer's pull. */
  private readonly inbox = new Transport.StreamInbox((count) => this.grant(count))
  /** Elements the server may still send: granted and not yet received. */
  private allowance: number
  /** Elements the consumer took since credit was last granted. */
  private taken = 0
  private cancelled = false
  /** Bytes of the frames that carried the stream's elements and end: one `_bytes_reply` observation. */
  private bytes = 0
  id = 0

  constructor(
    readonly prepared: Prepared,
    readonly route: Route,
    readonly connection: Connection,
    readonly window: number
  ) {
    this.allowance = window
  }

  /** The consumer's pull: the elements received, or the end, or waits for either. */
  get pull(): Effect.Effect<Chunk.Chunk<unknown>, Option.Option<unknown>> {
    return this.inbox.pull
  }

  /** A batch of elements arrived; returns a violation of the protocol, if it is one. */
  items(bytes: Buffer, start: number, end: number): string | undefined {
    this.bytes += end - start + Wire.headerBytes
    let decoded: Array<unknown>
    try {
      decoded = this.prepared.codec.decodeElements(Wire.unpack(bytes, start, end))
    } catch (error) {
      if (this.cancelled) return undefined
      this.inbox.finish({ error: remoteError(this.prepared.call, "Decode", `stream elements: ${describe(error)}`) })
      this.cancel()
      return undefined
    }
    this.allowance -= decoded.length
    if (this.allowance < 0) {
      return `stream ${this.id} received ${-this.allowance} elements beyond the credit granted (window ${this.window})`
    }
    if (this.cancelled) return undefined
    this.inbox.push(decoded)
    return undefined
  }

  complete(type: number, bytes: Buffer, start: number, end: number): void {
    this.bytes += end - start + Wire.headerBytes
    this.cancelled = true
    if (type === Wire.FrameType.StreamEnd) return this.inbox.finish(undefined)
    const exit = decodeReply(this.prepared, type, bytes, start, end)
    this.inbox.finish({ error: Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined })
  }

  fail(error: RemoteCallError): void {
    this.cancelled = true
    this.inbox.finish({ error })
  }

  /** The consumer took `count` elements: once it took half the window, the server may send that many more. */
  private grant(count: number): void {
    this.taken += count
    if (this.taken < this.window / 2 || this.cancelled || this.inbox.ended !== null) return
    this.allowance += this.taken
    this.connection.writer.write(Wire.creditFrame(this.id, this.taken))
    this.taken = 0
  }

  /** The consumer is done with the stream (its scope closed): a stream still running is cancelled. */
  close(): void {
    this.prepared.series.bytesReply.update(this.bytes)
    this.cancel()
  }

  /** Tells the server to stop producing; the id stays reserved until it acknowledges. */
  private cancel(): void {
    if (this.cancelled) return
    this.cancelled = true
    this.inbox.discard()
    if (!this.connection.closed) this.connection.writer.write(cancelFrame(this.id))
  }
}

/** The trace context a call carries: only a sampled caller's (an unsampled one would tell the server to record nothing). */
const traceOf = (fiber: Transport.CallerFiber) => {
  const span = fiber.currentSpan
  return span === undefined || !span.sampled
    ? undefined
    : { traceId: span.traceId, spanId: span.spanId, sampled: true }
}

/**
 * A calling fiber and the call it is suspended in, if any: a fiber waits for
 * one call at a time. Cancellation: if the fiber ends while a call is in
 * flight, it was interrupted. One observer per fiber, added at its first call,
 * costs far less than a canceler returned to Effect.async (which wraps every
 * call in an uninterruptible onInterrupt region) or an observer added and
 * removed per call.
 */
interface Caller {
  current: Invocation | undefined
}

const callers = new WeakMap<Fiber.RuntimeFiber<unknown, unknown>, Caller>()

const callerOf = (fiber: Fiber.RuntimeFiber<unknown, unknown>): Caller => {
  let caller = callers.get(fiber)
  if (caller === undefined) {
    const created: Caller = { current: undefined }
    callers.set(fiber, created)
    fiber.addObserver(() => created.current?.interrupt())
    caller = created
  }
  return caller
}

/** A replica address and its current connection. */
class Peer {
  connection: Connection | undefined = undefined
  failures = 0
  retryAt = 0
  /** How many balancers list this replica; at 0 its connection drains and closes. */
  users = 0
  constructor(
    readonly address: string,
    /** The component the replica was first dialed for: its certificate must name it. */
    readonly component: string,
    readonly client: State
  ) {}

  /** Whether a call may be sent now; dials if there is no connection and backoff allows. */
  readonly usable = (): boolean => {
    const connection = this.connection
    if (connection !== undefined && !connection.closed) return true
    if (this.client.closed || Date.now() < this.retryAt) return false
    try {
      this.connection = new Connection(this)
    } catch {
      // An address Node cannot even dial (bad port, bad host syntax): back off as for a refused dial.
      this.failures++
      this.retryAt = Date.now() + Math.min(1000, 10 * 2 ** Math.min(this.failures, 10))
      return false
    }
    return true
  }

  /**
   * The replica left the routing of `route`'s component: the deployer took it
   * out because it is gone or unhealthy (a hung process still accepts
   * connections, and would never answer). The calls of that component in
   * flight on it fail now as Unreachable, so that the call pipeline retries
   * the retriable ones on another replica instead of waiting for their
   * deadline; once no balancer lists the replica, its connection closes.
   */
  leave(route: Route): void {
    const connection = this.connection
    if (connection === undefined) return
    const detail = `replica ${this.address} was taken out of routing`
    if (this.users === 0) return connection.fail("Unreachable", detail, false)
    for (const call of connection.pending.takeWhere((pending) => pending.route === route)) {
      call.fail(remoteError(call.prepared.call, "Unreachable", detail))
    }
  }

  close(): void {
    this.connection?.fail("Unreachable", `client closed`)
  }
}

interface State {
  readonly hello: Wire.Hello
  readonly maxFrameBytes: number
  readonly tls: Certificates.Credentials | undefined
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
    tls: options.tls,
    closed: false
  }
  const peers = new Map<string, Peer>()
  const peer = (address: string, component: string) => {
    let found = peers.get(address)
    if (found === undefined) {
      found = new Peer(address, component, state)
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
  const replicaWait = Duration.toMillis(options.replicaWait ?? Duration.seconds(10))
  const prepared = new WeakMap<Transport.Call, Prepared>()

  const prepare = (call: Transport.Call): Prepared => {
    let found = prepared.get(call)
    if (found === undefined) {
      const prefix = Wire.encodeHeaderPrefix(`${call.component}.${call.method}`, call.caller)
      found = {
        call,
        codec: Wire.codec(call.spec),
        prefix,
        plainHead: Wire.requestHead(prefix, Wire.noFlags),
        series: MethodMetrics.series({
          caller: call.caller,
          component: call.component,
          method: call.method,
          remote: true
        })
      }
      prepared.set(call, found)
    }
    return found
  }

  const window = options.streamWindow ?? Wire.defaultStreamWindow
  if (!Number.isSafeInteger(window) || window < 2 || window > Wire.maxStreamCredit) {
    return yield* Effect.dieMessage(
      `RPC client option streamWindow must be an integer from 2 to ${Wire.maxStreamCredit}, got ${window}`
    )
  }

  /** Waits for the component's first replica set, up to `replicaWait`: a stream opened before any is known. */
  const awaitReplica = (route: Route, call: Transport.Call): Effect.Effect<void, RemoteCallError> =>
    Effect.async<void, RemoteCallError>((resume) => {
      const waiter = {
        wake: () => {
          route.waiting.delete(waiter)
          clearTimeout(timer)
          resume(
            route.balancer.current.length > 0 ? Effect.void : Effect.fail(
              remoteError(
                call,
                "Unreachable",
                `no replica became known within ${replicaWait} ms (replicas: none known)`
              )
            )
          )
        }
      }
      const timer = setTimeout(waiter.wake, replicaWait)
      route.waiting.add(waiter)
      return Effect.sync(() => {
        route.waiting.delete(waiter)
        clearTimeout(timer)
      })
    })

  const connection = (route: Route): Transport.Connection => {
    /**
     * Prepares a call and sends it; `resume` gets its outcome. It runs as the
     * register function of `Effect.async`, where the calling fiber is the
     * current one: a fiber step and a closure fewer per call than reading the
     * fiber with `Effect.withFiberRuntime` first.
     */
    const send = (
      call: Transport.Call,
      payload: unknown,
      fiber: Transport.CallerFiber,
      resume: (exit: Exit.Exit<unknown, unknown>) => void
    ): void => {
      const p = prepare(call)
      const deadline = fiber.getFiberRef(Component.currentDeadline)
      const remaining = deadline === undefined ? undefined : deadline - Date.now()
      if (remaining !== undefined && remaining <= 0) {
        return resume(unsent(p, "Timeout", "deadline exceeded before the call was sent"))
      }
      let encoded: unknown
      let key: string | number | undefined
      try {
        encoded = p.codec.encodePayload(payload)
        key = call.spec.routeBy?.(payload)
      } catch (error) {
        return resume(unsent(p, "Decode", `payload: ${describe(error)}`))
      }
      const trace = traceOf(fiber)
      const suffix = Wire.encodeHeaderSuffix(
        remaining === undefined ? undefined : remaining * 1000,
        trace,
        fiber.getFiberRef(CoreTransport.constructing)
      )
      const head = suffix === Wire.noFlags ? p.plainHead : Wire.requestHead(p.prefix, suffix)
      new Invocation(p, head, encoded, key, deadline, route, replicaWait, resume, callerOf(fiber)).send()
    }

    /**
     * Opens a stream on a replica when the Stream is run: the request carries the window as the initial credit.
     * Nothing is retried here (the call pipeline retries before the first element); a component with no replica
     * yet is waited for, as an ordinary call waits.
     */
    const openStream = (call: Transport.Call, payload: unknown): Stream.Stream<unknown, unknown> =>
      Stream.fromPull(
        Effect.catchAll(opening(call, payload), (error) => Effect.succeed(Effect.fail(Option.some(error))))
      )
    const opening = (call: Transport.Call, payload: unknown) =>
      Effect.flatMap(Effect.withFiberRuntime<Transport.CallerFiber>(Effect.succeed), (fiber) => {
        const p = prepare(call)
        const deadline = fiber.getFiberRef(Component.currentDeadline)
        let encoded: unknown
        let key: string | number | undefined
        try {
          encoded = p.codec.encodePayload(payload)
          key = call.spec.routeBy?.(payload)
        } catch (error) {
          return unsent(p, "Decode", `payload: ${describe(error)}`)
        }
        const trace = traceOf(fiber)
        const constructing = fiber.getFiberRef(CoreTransport.constructing)
        const open = (): Effect.Effect<
          Effect.Effect<Chunk.Chunk<unknown>, Option.Option<unknown>>,
          unknown,
          Scope.Scope
        > => {
          const c = route.balancer.pick(key, usable)?.connection
          if (c === undefined) {
            const known = route.balancer.current.map((r) => r.address).join(", ")
            return Effect.fail(remoteError(call, "Unreachable", `no replica is reachable (replicas: ${known})`))
          }
          const remaining = deadline === undefined ? undefined : deadline - Date.now()
          if (remaining !== undefined && remaining <= 0) {
            return unsent(p, "Timeout", "deadline exceeded before the call was sent")
          }
          const head = Wire.requestHead(
            p.prefix,
            Wire.encodeHeaderSuffix(remaining === undefined ? undefined : remaining * 1000, trace, constructing, window)
          )
          const stream = new StreamCall(p, route, c, window)
          const id = c.pending.add(stream)
          stream.id = id
          let size: number
          try {
            size = c.writer.writeValue(Wire.FrameType.Request, id, head, encoded)
          } catch (error) {
            c.pending.take(id)
            return unsent(p, "Decode", `payload cannot be packed: ${describe(error)}`)
          }
          p.series.bytesRequest.update(size)
          if (c.pending.size === 1) c.writer.flush()
          return Effect.as(Effect.addFinalizer(() => Effect.sync(() => stream.close())), stream.pull)
        }
        return route.balancer.current.length > 0
          ? open()
          : Effect.zipRight(awaitReplica(route, call), Effect.suspend(open))
      })

    const sendNow = (call: Transport.Call, payload: unknown) =>
      Effect.async<unknown, unknown>((resume) =>
        send(call, payload, Option.getOrThrow(Fiber.getCurrentFiber()), resume)
      )
    return {
      remote: true,
      invoke: (call, payload) =>
        options.duplicateRetriable && call.spec.retry
          ? Effect.zipRight(Effect.exit(sendNow(call, payload)), sendNow(call, payload))
          : sendNow(call, payload),
      // The test transport runs every retriable call twice, which only `invoke` does.
      send: options.duplicateRetriable ? undefined : send,
      stream: openStream
    }
  }

  const connect = (component: Component.Any): Effect.Effect<Transport.Connection> =>
    Effect.gen(function*() {
      const route: Route = { balancer: new Balancer<Peer>((p) => p.address), waiting: new Set() }
      const balancer = route.balancer
      const first = yield* Deferred.make<void>()
      yield* options.resolve(component.componentName).pipe(
        Stream.runForEach((addresses) =>
          Effect.sync(() => {
            const next = [...new Set(addresses)].map((address) => peer(address, component.componentName))
            for (const p of next) p.users++
            const previous = balancer.current
            balancer.update(next)
            const kept = new Set(next)
            for (const p of previous) {
              p.users--
              if (!kept.has(p)) p.leave(route)
            }
            if (next.length > 0) { for (const call of [...route.waiting]) call.wake() }
          }).pipe(Effect.zipRight(Deferred.succeed(first, undefined)))
        ),
        Effect.forkIn(scope)
      )
      yield* Deferred.await(first).pipe(Effect.timeout(Duration.millis(replicaWait)), Effect.ignore)
      return connection(route)
    })

  return { connect } satisfies Client
})
