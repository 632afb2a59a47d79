/**
 * The messages between threads, and both ends of a call over a MessagePort: payloads and results are encoded with
 * the method's schemas (a structured clone would lose classes and keep what the schema leaves out), deadlines and
 * construction paths travel with the call, interruption travels back.
 */
import * as Component from "@effect-weaver/runtime/Component"
import { RemoteCallError, type RemoteCallReason } from "@effect-weaver/runtime/ComponentError"
import * as Transport from "@effect-weaver/runtime/Transport"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"

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
}

export type Outcome =
  | { readonly _tag: "Success"; readonly value: unknown }
  | { readonly _tag: "Failure"; readonly error: unknown }
  | { readonly _tag: "System"; readonly reason: RemoteCallReason; readonly detail: string }

export type Message =
  | CallMessage
  | { readonly t: "reply"; readonly id: number; readonly outcome: Outcome }
  | { readonly t: "interrupt"; readonly id: number }

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
          const fiber = Option.getOrThrow(Fiber.getCurrentFiber())
          const deadline = fiber.getFiberRef(Component.currentDeadline)
          const remaining = deadline === undefined ? undefined : deadline - Date.now()
          if (remaining !== undefined && remaining <= 0) {
            return resume(Exit.fail(remoteError(call, "Timeout", "deadline exceeded before the call was sent")))
          }
          let encoded: unknown
          try {
            encoded = Component.codec(call.spec).encodePayload(payload)
          } catch (error) {
            return resume(Exit.fail(remoteError(call, "Decode", `payload: ${describe(error)}`)))
          }
          const id = this.nextId++
          this.pending.set(id, { call, resume })
          port.postMessage({
            t: "call",
            id,
            component: call.component,
            method: call.method,
            caller: call.caller,
            payload: encoded,
            remaining,
            constructing: fiber.getFiberRef(Transport.constructing)
          })
          // The caller gave up: the callee's handler is interrupted too.
          return Effect.sync(() => {
            if (this.pending.delete(id)) port.postMessage({ t: "interrupt", id })
          })
        })
    )
  }

  /** A reply arrived. */
  complete(id: number, outcome: Outcome): void {
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
    const entries = [...this.pending.values()]
    this.pending.clear()
    for (const { call, resume } of entries) resume(Exit.fail(remoteError(call, "Unreachable", detail)))
  }
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
    let effect: Effect.Effect<unknown, unknown> = Effect.flatMap(
      this.handlersOf(message.component),
      (handlers) => handlers[message.method]!(payload)
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
    fiber.addObserver((exit) => {
      if (timer !== undefined) clearTimeout(timer)
      if (this.inflight.get(message.id) !== fiber) return
      this.inflight.delete(message.id)
      this.reply(message.id, this.outcome(codec, exit))
    })
  }

  interrupt(id: number): void {
    const fiber = this.inflight.get(id)
    if (fiber === undefined) return
    this.inflight.delete(id)
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
  }
}
