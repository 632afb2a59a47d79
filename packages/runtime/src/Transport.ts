/**
 * The Transport SPI: how a call made in this process reaches an
 * implementation. Core defines the contract and no implementation; each
 * `@effect-weaver/transport-*` package provides a Layer for this one tag.
 *
 * @since 0.1.0
 */
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import type * as Stream from "effect/Stream"
import type * as Component from "./Component.js"
import * as fiberRefs from "./internal/fiberRefs.js"
import type { Weavelet } from "./Weavelet.js"

/**
 * The components whose construction a fiber is inside, outermost first. A
 * remote transport sends it with each call and runs the handler with it, so
 * that a construction cycle across processes is reported instead of waiting
 * forever.
 *
 * @since 0.1.0
 * @category runtime
 */
export const constructing = fiberRefs.constructing

/**
 * One call as the transport sees it.
 *
 * @since 0.1.0
 * @category runtime
 */
export interface Call {
  readonly component: string
  readonly method: string
  readonly spec: Component.AnyMethod
  /** The calling component (`"main"` for the main component). */
  readonly caller: string
}

/**
 * Delivers calls to one component, and nothing else: the stub around it
 * applies deadlines, retries, method metrics and tracing to every call,
 * whatever the transport. A remote transport carries the caller's deadline
 * (`Component.currentDeadline`) and construction path ({@link constructing})
 * to the handler's process, and runs the handler with them. The returned
 * Effect succeeds with the method's success value, or fails with one of the
 * method's declared errors or a `RemoteCallError`.
 *
 * @since 0.1.0
 * @category runtime
 */
export type Invoke = (call: Call, payload: unknown) => Effect.Effect<unknown, unknown>

/**
 * The fiber making a call, as {@link Connection.send} sees it.
 *
 * @since 0.1.0
 * @category runtime
 */
export type CallerFiber = Fiber.RuntimeFiber<unknown, unknown>

/**
 * A connection to one component, as returned by {@link Transport.connect}.
 *
 * @since 0.1.0
 * @category runtime
 */
export interface Connection {
  /** Whether calls cross a process boundary (the `remote` metric label). */
  readonly remote: boolean
  readonly invoke: Invoke
  /**
   * The same call as {@link Connection.invoke}, completed by callback: the
   * call pipeline uses it where it exists, so that a remote call costs no
   * step of the caller's fiber beyond its suspension. `caller` is the fiber
   * making the call (its deadline, trace and construction path travel with
   * the call; its end cancels it); `done` is called once with the outcome,
   * never if the caller was interrupted. A fiber makes one call at a time
   * through `send` (it is suspended on it): a transport may key its
   * in-flight state by fiber, and a wrapper that sends twice for one call
   * must send the second after the first has completed.
   */
  readonly send?:
    | ((call: Call, payload: unknown, caller: CallerFiber, done: (exit: Exit.Exit<unknown, unknown>) => void) => void)
    | undefined
  /**
   * Calls a streaming method (`stream: true`): the Stream of its elements.
   * Nothing is sent until the Stream is run; it is opened by the fiber that
   * runs it, whose deadline, trace and construction path travel with the
   * call, as for {@link Connection.invoke}. The Stream fails with one of the
   * method's declared errors or a `RemoteCallError`. A remote transport
   * applies flow control (the producer is never more than a bounded window
   * of elements ahead of the consumer) and, when the Stream's scope closes
   * before the producer is done (`Stream.take`, interruption), cancels the
   * producer: its fiber is interrupted and its finalizers run. The pipeline
   * around it bounds the whole Stream by the deadline and meters it as one
   * call. A transport without it cannot carry streaming methods: calling one
   * is a defect naming the transport.
   *
   * @since 0.2.0
   */
  readonly stream?: ((call: Call, payload: unknown) => Stream.Stream<unknown, unknown>) | undefined
}

/**
 * The transport used by every component client in this process.
 *
 * `connect` is called once per component, the first time a caller in this
 * process calls it; it may start or locate the component (Service Weaver's
 * activation). Fakes installed by weavertest bypass the transport.
 *
 * @since 0.1.0
 * @category runtime
 */
export class Transport extends Context.Tag("@effect-weaver/runtime/Transport")<Transport, {
  /** A short name for logs and test names, e.g. `"local"` or `"rpc"`. */
  readonly name: string
  readonly connect: (component: Component.Any) => Effect.Effect<Connection, never, Weavelet>
}>() {}

/**
 * The consuming end of one stream a remote transport carries: the elements
 * received and not yet handed to the consumer, how the stream ended, and the
 * consumer's pull. A pull also says the consumer is done with the chunk it
 * was handed before: only then does `onTaken` learn that those elements were
 * taken, so a transport that grants credit from it keeps the producer at
 * most its window ahead of what the consumer processed.
 *
 * @since 0.2.0
 * @category runtime
 */
export class StreamInbox {
  private buffer: Array<unknown> = []
  /** How the stream ended: `undefined` for a normal end, `null` while it runs. */
  ended: { readonly error: unknown } | undefined | null = null
  /** The consumer's pull, waiting for elements or the end. */
  private waiter: (() => void) | undefined = undefined
  /** Elements of the chunk the consumer was handed last, which it may still be processing. */
  private handed = 0

  constructor(private readonly onTaken: (count: number) => void) {}

  /** Elements arrived. */
  push(elements: Iterable<unknown>): void {
    for (const element of elements) this.buffer.push(element)
    this.wake()
  }

  /** The stream ended, normally (`undefined`) or with an error; later ends are ignored. */
  finish(ended: { readonly error: unknown } | undefined): void {
    if (this.ended !== null) return
    this.ended = ended
    this.wake()
  }

  /** Drops the elements not yet handed to the consumer (the stream was cancelled). */
  discard(): void {
    this.buffer = []
  }

  private wake(): void {
    const waiter = this.waiter
    this.waiter = undefined
    waiter?.()
  }

  /** The consumer's pull: the elements received, or the end, or waits for either. */
  readonly pull: Effect.Effect<Chunk.Chunk<unknown>, Option.Option<unknown>> = Effect.async((resume) => {
    if (this.handed > 0) {
      const taken = this.handed
      this.handed = 0
      this.onTaken(taken)
    }
    const answer = () => {
      if (this.buffer.length > 0) {
        const chunk = Chunk.unsafeFromArray(this.buffer)
        this.buffer = []
        this.handed = chunk.length
        return resume(Effect.succeed(chunk))
      }
      const ended = this.ended
      if (ended === undefined) return resume(Effect.fail(Option.none()))
      if (ended !== null) return resume(Effect.fail(Option.some(ended.error)))
      this.waiter = answer
    }
    answer()
    return Effect.sync(() => {
      this.waiter = undefined
    })
  })
}
