/**
 * The messages between threads, and both ends of a call over a MessagePort: payloads and results are encoded with
 * the method's schemas (a structured clone would lose classes and keep what the schema leaves out), deadlines and
 * construction paths travel with the call, interruption travels back.
 */
import * as Component from "@effect-weaver/runtime/Component"
import { RemoteCallError, type RemoteCallReason } from "@effect-weaver/runtime/ComponentError"
import * as Transport from "@effect-weaver/runtime/Transport"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"

export interface CallMessage {
  readonly t: "call"
  readonly id: number
  readonly component: string
  readonly method: string
  readonly caller: string
  readonly payload: unknown
  /** Milliseconds left when sent. */
  readonly remaining: number | undefined
  readonly constructing: ReadonlyArray<string>
  /** For a streaming method: the elements the caller accepts before it grants more. */
  readonly credit?: number | undefined
}

/** The elements a stream's consumer accepts ahead of those it processed. */
export const streamWindow = 256

/** The most elements one `items` message carries. */
const maxBatch = 64

export type Outcome =
  | { readonly _tag: "Success"; readonly value: unknown }
  | { readonly _tag: "Failure"; readonly error: unknown }
  | { readonly _tag: "System"; readonly reason: RemoteCallReason; readonly detail: string }

export type Message =
  | CallMessage
  | { readonly t: "reply"; readonly id: number; readonly outcome: Outcome }
  | { readonly t: "interrupt"; readonly id: number }
  /** A batch of a stream's encoded elements (callee → caller). */
  | { readonly t: "items"; readonly id: number; readonly values: ReadonlyArray<unknown> }
  /** A stream completed (callee → caller); a failed one ends with a `reply` instead. */
  | { readonly t: "end"; readonly id: number }
  /** The caller accepts `n` more elements of a stream (caller → callee). */
  | { readonly t: "credit"; readonly id: number; readonly n: number }

export interface Port {
  readonly postMessage: (message: Message) => void
}

const describe = (u: unknown): string => u instanceof Error ? u.message : String(u)

const remoteError = (call: { component: string; method: string }, reason: RemoteCallReason, detail: string) =>
  new RemoteCallError({ component: call.component, method: call.method, reason, detail })

/** The calling end: sends calls on a port and completes them when their replies arrive. */
export class Caller {
  private nextId = 1
  private readonly pending = new Map<
    number,
    { readonly call: Transport.Call; readonly resume: (exit: Exit.Exit<unknown, unknown>) => void }
  >()

  constructor(private readonly port: () => Effect.Effect<Port, RemoteCallError>) {}

  invoke(call: Transport.Call, payload: unknown): Effect.Effect<unknown, unknown> {
    return Effect.flatMap(
      Effect.mapError(this.port(), (error) => remoteError(call, "Unreachable", error.detail)),
      (port) =>
        Effect.async<unknown, unknown>((resume) => {
          const message = this.message(call, payload, Option.getOrThrow(Fiber.getCurrentFiber()), undefined)
          if (message instanceof RemoteCallError) return resume(Exit.fail(message))
          const id = message.id
          this.pending.set(id, { call, resume })
          port.postMessage(message)
          // The caller gave up: the callee's handler is interrupted too.
          return Effect.sync(() => {
            if (this.pending.delete(id)) port.postMessage({ t: "interrupt", id })
          })
        })
    )
  }

  private readonly streams = new Map<number, Consumer>()

  /**
   * The message of a call made by `fiber`, with a fresh id (and the initial credit of a streaming method), or
   * why it cannot be sent: its deadline passed, or its payload does not encode.
   */
  private message(
    call: Transport.Call,
    payload: unknown,
    fiber: Fiber.RuntimeFiber<unknown, unknown>,
    credit: number | undefined
  ): CallMessage | RemoteCallError {
    const deadline = fiber.getFiberRef(Component.currentDeadline)
    const remaining = deadline === undefined ? undefined : deadline - Date.now()
    if (remaining !== undefined && remaining <= 0) {
      return remoteError(call, "Timeout", "deadline exceeded before the call was sent")
    }
    let encoded: unknown
    try {
      encoded = Component.codec(call.spec).encodePayload(payload)
    } catch (error) {
      return remoteError(call, "Decode", `payload: ${describe(error)}`)
    }
    return {
      t: "call",
      id: this.nextId++,
      component: call.component,
      method: call.method,
      caller: call.caller,
      payload: encoded,
      remaining,
      constructing: fiber.getFiberRef(Transport.constructing),
      credit
    }
  }

  /** Calls a streaming method: its elements arrive under flow control; closing the stream early interrupts it. */
  stream(call: Transport.Call, payload: unknown): Stream.Stream<unknown, unknown> {
    const opening = Effect.flatMap(
      Effect.mapError(this.port(), (error) => remoteError(call, "Unreachable", error.detail)),
      (port) =>
        Effect.flatMap(Effect.withFiberRuntime<Fiber.RuntimeFiber<unknown, unknown>>(Effect.succeed), (fiber) => {
          const message = this.message(call, payload, fiber, streamWindow)
          if (message instanceof RemoteCallError) return Effect.fail(message)
          const id = message.id
          const consumer = new Consumer(call, id, port)
          this.streams.set(id, consumer)
          port.postMessage(message)
          return Effect.as(
            Effect.addFinalizer(() =>
              Effect.sync(() => {
                // Still running: the callee's producer is interrupted.
                if (this.streams.delete(id) && consumer.ended === null) port.postMessage({ t: "interrupt", id })
              })
            ),
            consumer.pull
          )
        })
    )
    return Stream.fromPull(Effect.catchAll(opening, (error) => Effect.succeed(Effect.fail(Option.some(error)))))
  }

  /** A batch of a stream's elements arrived. */
  items(id: number, values: ReadonlyArray<unknown>): void {
    this.streams.get(id)?.items(values)
  }

  /** A stream completed. */
  end(id: number): void {
    const consumer = this.streams.get(id)
    if (consumer === undefined) return
    this.streams.delete(id)
    consumer.finish(undefined)
  }

  /** A reply arrived (for a stream: its failure). */
  complete(id: number, outcome: Outcome): void {
    const consumer = this.streams.get(id)
    if (consumer !== undefined) {
      this.streams.delete(id)
      return consumer.finish({ error: decodeOutcome(consumer.call, outcome) })
    }
    const entry = this.pending.get(id)
    if (entry === undefined) return
    this.pending.delete(id)
    const { call, resume } = entry
    const codec = Component.codec(call.spec)
    try {
      resume(
        outcome._tag === "Success"
          ? Exit.succeed(codec.decodeSuccess(outcome.value))
          : outcome._tag === "Failure"
          ? Exit.fail(codec.decodeError(outcome.error))
          : Exit.fail(remoteError(call, outcome.reason, outcome.detail))
      )
    } catch (error) {
      resume(Exit.fail(remoteError(call, "Decode", `reply: ${describe(error)}`)))
    }
  }

  /** The other end is gone: every call in flight fails as unreachable. */
  failAll(detail: string): void {
    const streams = [...this.streams.values()]
    this.streams.clear()
    for (const consumer of streams) consumer.finish({ error: remoteError(consumer.call, "Unreachable", detail) })
    const entries = [...this.pending.values()]
    this.pending.clear()
    for (const { call, resume } of entries) resume(Exit.fail(remoteError(call, "Unreachable", detail)))
  }
}

/** The failure a stream's final reply carries. */
const decodeOutcome = (call: Transport.Call, outcome: Outcome): unknown => {
  if (outcome._tag === "System") return remoteError(call, outcome.reason, outcome.detail)
  if (outcome._tag === "Success") return remoteError(call, "Protocol", "a stream ended with a result")
  try {
    return Component.codec(call.spec).decodeError(outcome.error)
  } catch (error) {
    return remoteError(call, "Decode", `error: ${describe(error)}`)
  }
}

/**
 * The consuming end of one stream (a `Transport.StreamInbox`), granting credit back once the consumer has taken
 * half the window.
 */
class Consumer {
  private taken = 0
  readonly inbox = new Transport.StreamInbox((count) => {
    this.taken += count
    if (this.taken >= streamWindow / 2 && this.inbox.ended === null) {
      this.port.postMessage({ t: "credit", id: this.id, n: this.taken })
      this.taken = 0
    }
  })

  constructor(readonly call: Transport.Call, readonly id: number, readonly port: Port) {}

  get ended() {
    return this.inbox.ended
  }

  get pull() {
    return this.inbox.pull
  }

  items(values: ReadonlyArray<unknown>): void {
    if (this.inbox.ended !== null) return
    let decoded: ReadonlyArray<unknown>
    try {
      decoded = Component.codec(this.call.spec).decodeElements(values)
    } catch (error) {
      this.port.postMessage({ t: "interrupt", id: this.id })
      return this.inbox.finish({ error: remoteError(this.call, "Decode", `stream elements: ${describe(error)}`) })
    }
    this.inbox.push(decoded)
  }

  finish(ended: { readonly error: unknown } | undefined): void {
    this.inbox.finish(ended)
  }
}

/** A stream a dispatcher is producing: the credit granted, and the producer waiting for more. */
interface Producing {
  credit: number
  wake: (() => void) | undefined
}

/** The serving end: runs calls that arrive on a port against local handlers and posts their outcomes. */
export class Dispatcher {
  private readonly inflight = new Map<number, Fiber.RuntimeFiber<unknown, unknown>>()

  constructor(
    private readonly port: Port,
    private readonly specOf: (component: string, method: string) => Component.AnyMethod | undefined,
    private readonly handlersOf: (
      component: string
    ) => Effect.Effect<Record<string, (payload: unknown) => Effect.Effect<unknown, unknown>>>
  ) {}

  private reply(id: number, outcome: Outcome): void {
    this.port.postMessage({ t: "reply", id, outcome })
  }

  call(message: CallMessage): void {
    const spec = this.specOf(message.component, message.method)
    if (spec === undefined) {
      return this.reply(message.id, {
        _tag: "System",
        reason: "Protocol",
        detail: `no method ${message.component}.${message.method} here`
      })
    }
    const codec = Component.codec(spec)
    let payload: unknown
    try {
      payload = codec.decodePayload(message.payload)
    } catch (error) {
      return this.reply(message.id, { _tag: "System", reason: "Decode", detail: `payload: ${describe(error)}` })
    }
    const producing: Producing | undefined = message.credit === undefined
      ? undefined
      : { credit: message.credit, wake: undefined }
    if (spec.stream !== (producing !== undefined)) {
      return this.reply(message.id, {
        _tag: "System",
        reason: "Protocol",
        detail: `${message.component}.${message.method} ${spec.stream ? "is" : "is not"} a streaming method`
      })
    }
    let effect: Effect.Effect<unknown, unknown> = producing === undefined
      ? Effect.flatMap(this.handlersOf(message.component), (handlers) => handlers[message.method]!(payload))
      : this.produce(
        message.id,
        codec,
        Stream.unwrap(
          Effect.map(
            this.handlersOf(message.component),
            (handlers) => handlers[message.method]!(payload) as unknown as Stream.Stream<unknown, unknown>
          )
        ),
        producing
      )
    let timer: ReturnType<typeof setTimeout> | undefined
    if (message.remaining !== undefined) {
      effect = Effect.locally(effect, Component.currentDeadline, Date.now() + message.remaining)
      timer = setTimeout(() => {
        const fiber = this.inflight.get(message.id)
        if (fiber === undefined) return
        this.inflight.delete(message.id)
        fiber.unsafeInterruptAsFork(FiberId.none)
        this.reply(message.id, {
          _tag: "System",
          reason: "Timeout",
          detail: "deadline exceeded while the handler was running"
        })
      }, Math.max(0, message.remaining))
    }
    if (message.constructing.length > 0) effect = Effect.locally(effect, Transport.constructing, message.constructing)
    const fiber = Effect.runFork(effect)
    this.inflight.set(message.id, fiber)
    if (producing !== undefined) this.producing.set(message.id, producing)
    fiber.addObserver((exit) => {
      if (timer !== undefined) clearTimeout(timer)
      if (this.inflight.get(message.id) !== fiber) return
      this.inflight.delete(message.id)
      this.producing.delete(message.id)
      if (producing !== undefined && Exit.isSuccess(exit)) return this.port.postMessage({ t: "end", id: message.id })
      this.reply(message.id, this.outcome(codec, exit))
    })
  }

  private readonly producing = new Map<number, Producing>()

  /** The caller of stream `id` accepts `n` more elements. */
  credit(id: number, n: number): void {
    const producing = this.producing.get(id)
    if (producing === undefined) return
    producing.credit += n
    const wake = producing.wake
    producing.wake = undefined
    wake?.()
  }

  /** Pulls `source` and posts its elements while credit lasts, then waits for more. */
  private produce(
    id: number,
    codec: Component.Codec,
    source: Stream.Stream<unknown, unknown>,
    producing: Producing
  ): Effect.Effect<void, unknown> {
    const awaitCredit = Effect.async<void>((resume) => {
      producing.wake = () => resume(Effect.void)
      return Effect.sync(() => {
        producing.wake = undefined
      })
    })
    const send = (batch: ReadonlyArray<unknown>): Effect.Effect<void> => {
      let values: Array<unknown>
      try {
        values = codec.encodeElements(batch)
      } catch (error) {
        return Effect.die(new Error(`a stream element does not match the success schema: ${describe(error)}`))
      }
      this.port.postMessage({ t: "items", id, values })
      return Effect.void
    }
    const sendChunk = (elements: ReadonlyArray<unknown>, from: number): Effect.Effect<void> => {
      if (from >= elements.length) return Effect.void
      if (producing.credit === 0) return Effect.zipRight(awaitCredit, Effect.suspend(() => sendChunk(elements, from)))
      const take = Math.min(producing.credit, maxBatch, elements.length - from)
      producing.credit -= take
      return Effect.zipRight(
        send(elements.slice(from, from + take)),
        Effect.suspend(() => sendChunk(elements, from + take))
      )
    }
    return Effect.scoped(Effect.flatMap(Stream.toPull(source), (pull) => {
      const loop: Effect.Effect<void, unknown> = Effect.matchEffect(pull, {
        onFailure: (error) => Option.isNone(error) ? Effect.void : Effect.fail(error.value),
        onSuccess: (chunk) => Effect.zipRight(sendChunk(Chunk.toReadonlyArray(chunk), 0), loop)
      })
      return loop
    }))
  }

  interrupt(id: number): void {
    const fiber = this.inflight.get(id)
    if (fiber === undefined) return
    this.inflight.delete(id)
    this.producing.delete(id)
    fiber.unsafeInterruptAsFork(FiberId.none)
  }

  private outcome(codec: Component.Codec, exit: Exit.Exit<unknown, unknown>): Outcome {
    if (Exit.isSuccess(exit)) {
      try {
        return { _tag: "Success", value: codec.encodeSuccess(exit.value) }
      } catch (error) {
        return {
          _tag: "System",
          reason: "Handler",
          detail: `result does not match the success schema: ${describe(error)}`
        }
      }
    }
    const failure = Cause.failureOption(exit.cause)
    if (Option.isSome(failure)) {
      try {
        return { _tag: "Failure", error: codec.encodeError(failure.value) }
      } catch (error) {
        return {
          _tag: "System",
          reason: "Handler",
          detail: `failed with an error its error schema does not declare: ${describe(failure.value)} (${
            describe(error)
          })`
        }
      }
    }
    if (Cause.isInterruptedOnly(exit.cause)) {
      return { _tag: "System", reason: "Cancelled", detail: "the handler was interrupted" }
    }
    return { _tag: "System", reason: "Handler", detail: Cause.pretty(exit.cause) }
  }

  /** Stops every call in flight (the port is closing). */
  stop(): void {
    for (const fiber of this.inflight.values()) fiber.unsafeInterruptAsFork(FiberId.none)
    this.inflight.clear()
    this.producing.clear()
  }
}
