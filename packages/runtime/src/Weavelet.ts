/**
 * The weavelet: the part of the runtime that hosts components in a process.
 *
 * It constructs hosted components lazily (once, on first use), hands out
 * clients whose calls go through one pipeline (stub → method metrics →
 * transport → implementation), and applies weavertest fakes. Transports and
 * deployers build on it; application code never sees it.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Effectable from "effect/Effectable"
import type * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as FiberRef from "effect/FiberRef"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as Tracer from "effect/Tracer"
import * as Utils from "effect/Utils"
import type * as Component from "./Component.js"
import {
  ComponentConstructionError,
  ComponentCycleError,
  RemoteCallError,
  UnknownComponentError
} from "./ComponentError.js"
import { clientResolved, componentBox, constructing, currentComponent, currentDeadline } from "./internal/fiberRefs.js"
import type { ComponentBox } from "./internal/fiberRefs.js"
import type { ComponentInfo } from "./internal/fiberRefs.js"
import { settled } from "./internal/settled.js"
import type * as Listener from "./Listener.js"
import * as MethodMetrics from "./MethodMetrics.js"
import * as Tracing from "./Tracing.js"
import { Transport } from "./Transport.js"
import type { Call, CallerFiber, Connection } from "./Transport.js"
import * as WeaverConfig from "./WeaverConfig.js"

/**
 * Handlers of a constructed component, by method name. The handler of a
 * streaming method returns a `Stream` instead (see `Component.HandlerResult`);
 * those {@link Weavelet.handlers} hands out always return a Stream.
 *
 * @since 0.1.0
 * @category models
 */
export type AnyHandlers = { readonly [method: string]: (payload: unknown) => Effect.Effect<unknown, unknown> }

/**
 * The weavelet of this process.
 *
 * @since 0.1.0
 * @category runtime
 */
export class Weavelet extends Context.Tag("@effect-weaver/runtime/Weavelet")<Weavelet, {
  readonly app: string
  readonly deploymentId: string
  readonly replicaId: string
  readonly config: WeaverConfig.WeaverConfig
  /** Every component of the application, by name. */
  readonly components: ReadonlyMap<string, Component.Any>
  /** Whether this process hosts (may construct) the component. */
  readonly hosts: (component: string) => boolean
  /**
   * The handlers of a hosted component, constructing it on first use.
   * Construction failures, cycles and unknown names are defects.
   */
  readonly handlers: (component: string) => Effect.Effect<AnyHandlers>
  /** A context with a client for every component, as seen from `caller`. */
  readonly clients: (caller: string) => Context.Context<never>
  /**
   * The call graph as this process has seen it: for each component whose code
   * ran here (or `main`), the components it resolved (`yield* Other`).
   */
  readonly requirements: ReadonlyMap<string, ReadonlySet<string>>
  /** Where a listener should bind (`host:port`); undeclared names are a defect. */
  readonly listenerAddress: (name: string) => Effect.Effect<string>
  /** Reports that a listener is serving on `address`, speaking `kind` (HTTP, or any protocol over TCP). */
  readonly listening: (name: string, address: string, kind: Listener.Kind) => Effect.Effect<void>
}>() {}

/**
 * How a deployment places listeners.
 *
 * @since 0.1.0
 * @category models
 */
export interface ListenerOptions {
  /** Listener names the application declares. */
  readonly declared: ReadonlySet<string>
  /** The address to bind a listener to, `host:port` (port 0 picks one). */
  readonly address: (name: string) => string
  readonly onListening?: ((name: string, address: string, kind: Listener.Kind) => Effect.Effect<void>) | undefined
}

/**
 * What a weavelet needs to know.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly app: string
  readonly deploymentId: string
  readonly replicaId: string
  readonly config: WeaverConfig.WeaverConfig
  readonly implementations: ReadonlyArray<Component.Implementation>
  /** Decoded config sections, by component (see `WeaverConfig.validate`). */
  readonly componentConfigs: ReadonlyMap<string, unknown>
  /** Handlers that replace components; calls to them are always local. */
  readonly fakes?: ReadonlyMap<string, AnyHandlers> | undefined
  /** The components this process may construct; all of them by default. */
  readonly hosted?: ReadonlySet<string> | undefined
  /** Components that are called but not implemented in this app (e.g. faked). */
  readonly extraComponents?: ReadonlyArray<Component.Any> | undefined
  readonly listeners?: ListenerOptions | undefined
  /**
   * Called once per edge of the call graph when this process first sees it:
   * the code of `caller` resolved the client of `component`.
   */
  readonly onRequire?: ((caller: string, component: string) => void) | undefined
  /** Bounds on retries of retriable methods (see {@link RetryPolicy}). */
  readonly retry?: Partial<RetryPolicy> | undefined
}

/**
 * How the call pipeline retries a retriable method (any method not marked
 * `retry: false`) after its transport failed to reach a replica (a
 * `RemoteCallError` with reason `Unreachable` for that very call): with
 * jittered exponential backoff from 10 ms, on whichever replica the transport
 * picks next, never past the call's deadline. Service Weaver retried forever;
 * these bounds are what it lacked.
 *
 * @since 0.1.0
 * @category models
 */
export interface RetryPolicy {
  /** Attempts in all, the first included (default 10). */
  readonly attempts: number
  /** Milliseconds from the start of the call after which no new attempt starts (default 10 seconds). */
  readonly within: number
}

/**
 * The default {@link RetryPolicy}.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultRetryPolicy: RetryPolicy = { attempts: 10, within: 10_000 }

/**
 * Whether an Effect is already complete. Same answer as `Exit.isExit` for an
 * Effect, at a fraction of the cost on the call hot path: every Exit carries
 * the run loop's `Success` or `Failure` op code, and nothing else does.
 *
 * @internal
 */
const isExit = (effect: Effect.Effect<unknown, unknown>): effect is Exit.Exit<unknown, unknown> => {
  const op = (effect as { readonly _op?: unknown })._op
  return op === "Success" || op === "Failure"
}

/**
 * One in `syncLatencySampleMask + 1` co-located calls, and of calls that
 * complete synchronously, has its latency recorded (see
 * `MethodMetrics.latencyMicros`): reading the clock before and after costs
 * as much as a plain service call. Every call is counted; remote calls are
 * all timed.
 *
 * @internal
 */
const syncLatencySampleMask = 15

/**
 * One call made through a client. Nothing happens until it is run, and each
 * run is a new call. Run with `yield*` it starts the call as the generator
 * reaches it, so a handler that completes synchronously (returns an Exit)
 * costs no extra step of the fiber's run loop: the local call hot path.
 *
 * @internal
 */
class CallEffect extends Effectable.Class<unknown, unknown> {
  constructor(
    readonly run: (payload: unknown) => Effect.Effect<unknown, unknown>,
    readonly payload: unknown
  ) {
    super()
  }
  commit(): Effect.Effect<unknown, unknown> {
    return this.run(this.payload)
  }
  override [Symbol.iterator](): any {
    return new Utils.SingleShotGen(new Utils.YieldWrap(this.run(this.payload)))
  }
}

/**
 * Whether the fiber running now has a sampled span.
 *
 * @internal
 */
const currentSpanSampled = (): boolean => {
  const span = currentFiber()?.currentSpan
  return span !== undefined && span.sampled
}

/**
 * The fiber running now: stubs run inside the calling fiber's run loop,
 * which publishes the fiber under this global key (`Fiber.getCurrentFiber`
 * without its Option).
 *
 * @internal
 */
const currentFiber = (): CurrentFiber | undefined =>
  (globalThis as { readonly [currentFiberKey]?: CurrentFiber })[currentFiberKey]
const currentFiberKey = "effect/FiberCurrent"

interface CurrentFiber extends FiberRefAccess {
  readonly currentSpan?: Tracer.AnySpan | undefined
  addObserver(observer: (exit: Exit.Exit<unknown, unknown>) => void): void
}

const timeoutError = (call: Call, detail: string) =>
  new RemoteCallError({ component: call.component, method: call.method, reason: "Timeout", detail })

/** Records a finished call's metrics: whether it failed, its latency (when the call was timed). */
type Recorder = (failed: boolean, latencyMicros: number | undefined) => void

/**
 * The start of a call whose latency is not measured (see
 * {@link syncLatencySampleMask}): reading the clock twice costs a good part
 * of a co-located call.
 *
 * @internal
 */
const untimed = -1

/**
 * The calls a fiber is in, outermost first, so that a call the fiber is
 * interrupted out of is still counted (as an error) without an
 * uninterruptible region per call (Effect.onExit): a call ends in match
 * handlers, which an interrupted fiber skips; the calls still here when the
 * fiber ends, or above a call that ends, were interrupted.
 *
 * @internal
 */
class CallsInFlight {
  private readonly recorders: Array<Recorder> = []
  private readonly starts: Array<number> = []

  /** Adds a call started at `start` (or {@link untimed}); returns its depth, which {@link done} takes. */
  push(recorder: Recorder, start: number): number {
    this.recorders.push(recorder)
    this.starts.push(start)
    return this.recorders.length - 1
  }

  /** The call at `depth` ended: records it, and the calls above it as interrupted. */
  done(depth: number, failed: boolean): void {
    if (this.recorders.length > depth + 1) this.interrupted(depth + 1)
    this.end(failed)
  }

  /** Forgets the call at `depth` (the innermost) without recording it: it goes on under another entry. */
  drop(depth: number): void {
    this.recorders.length = this.starts.length = depth
  }

  /** Records the calls above `depth` as interrupted. */
  interrupted(depth: number): void {
    while (this.recorders.length > depth) this.end(true)
  }

  private end(failed: boolean): void {
    const start = this.starts.pop()!
    this.recorders.pop()!(failed, start === untimed ? undefined : (performance.now() - start) * 1000)
  }
}

const inFlight = new WeakMap<object, CallsInFlight>()
const noFiber = new CallsInFlight()

const callsInFlight = (fiber: CurrentFiber | undefined): CallsInFlight => {
  if (fiber === undefined) return noFiber
  let calls = inFlight.get(fiber)
  if (calls === undefined) {
    const created = new CallsInFlight()
    inFlight.set(fiber, created)
    fiber.addObserver(() => created.interrupted(0))
    calls = created
  }
  return calls
}

/**
 * Runs `effect` as code of `component`: log lines and calls it makes are
 * attributed to it. Writes the fiber's own attribution box in place (see
 * `ComponentBox`): no FiberRefs map is copied per call, as `Effect.locally`
 * or `setFiberRef` would. The box is restored in match handlers, which an
 * interrupted fiber skips on its way out: its last log lines (finalizers)
 * may then name the component it was interrupted in. Effect.onExit would
 * cost an uninterruptible region per call.
 *
 * @internal
 */
const asComponent = <A, E, R>(info: ComponentInfo, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.withFiberRuntime((runtime) => {
    const owned = ownBox(runtime as unknown as FiberRefAccess)
    const previous = owned.value
    if (previous === info) return effect
    owned.value = info
    return settled(effect, () => {
      owned.value = previous
    })
  })

interface FiberRefAccess {
  getFiberRef<A>(ref: FiberRef.FiberRef<A>): A
  setFiberRef<A>(ref: FiberRef.FiberRef<A>, value: A): void
}

/** The fiber's own attribution box, claimed once per fiber (and per `Effect.locally` of the box). */
const ownBox = (fiber: FiberRefAccess): ComponentBox => {
  const box = fiber.getFiberRef(currentComponent)
  if (box.owner === fiber) return box
  const claimed: ComponentBox = { owner: fiber, value: box.value }
  // The fiber runtime's own setter (public types omit it).
  fiber.setFiberRef(currentComponent, claimed)
  return claimed
}

/**
 * Runs the opening of `stream` and each of its pulls through `wrap` (no
 * `Stream.locally` exists: this is how a stream's code runs with a FiberRef
 * set, in whichever fiber pulls it).
 *
 * @internal
 */
const eachPull = <A, E>(
  stream: Stream.Stream<A, E>,
  wrap: <X, Y, R>(effect: Effect.Effect<X, Y, R>) => Effect.Effect<X, Y, R>
): Stream.Stream<A, E> => Stream.fromPull(Effect.map(wrap(Stream.toPull(stream)), (pull) => wrap(pull)))

/**
 * The Stream a streaming method's handler answered with (an Effect is a
 * Stream of one element, as everywhere in Effect). Anything else is a defect
 * naming the method.
 *
 * @since 0.2.0
 * @category runtime
 */
export const handlerStream = (result: unknown, component: string, method: string): Stream.Stream<unknown, unknown> => {
  if ((typeof result === "object" && result !== null && Stream.StreamTypeId in result) || Effect.isEffect(result)) {
    return result as Stream.Stream<unknown, unknown>
  }
  return Stream.die(
    new globalThis.Error(
      `the handler of streaming method ${component}.${method} returned ${
        result === null ? "null" : typeof result
      }, not a Stream`
    )
  )
}

/** Calls a streaming method's handler: a handler that throws is a defect of the stream, as of an Effect. */
const callStreamHandler = (
  handler: (payload: unknown) => unknown,
  payload: unknown,
  component: string,
  method: string
): Stream.Stream<unknown, unknown> => {
  try {
    return handlerStream(handler(payload), component, method)
  } catch (defect) {
    return Stream.die(defect)
  }
}

/**
 * Wraps each handler so it runs as code of its component; a streaming
 * method's handler answers a Stream whose code (each pull) runs as the
 * component's, whichever fiber pulls it.
 *
 * @internal
 */
const attribute = (info: ComponentInfo, methods: Component.Methods, handlers: AnyHandlers): AnyHandlers => {
  const wrapped: Record<string, AnyHandlers[string]> = {}
  for (const [name, handler] of Object.entries(handlers)) {
    if (methods[name]?.stream === true) {
      const asOwn = <X, Y, R>(effect: Effect.Effect<X, Y, R>) => asComponent(info, effect)
      wrapped[name] = (payload) =>
        eachPull(callStreamHandler(handler, payload, info.name, name), asOwn) as unknown as Effect.Effect<
          unknown,
          unknown
        >
      continue
    }
    wrapped[name] = (payload) => {
      const effect = handler(payload)
      // A handler that returned an Exit (`Effect.succeed(x)`, `Effect.fail(e)`) runs no Effect code to attribute.
      return isExit(effect) ? effect : asComponent(info, effect)
    }
  }
  return wrapped
}

/**
 * Builds the weavelet. Components are constructed on first use, except
 * singletons (`Component.ImplementOptions.singleton`) this process hosts and
 * calls directly: their construction, the deployment's run-once hook, starts
 * here, in the background (a failure is logged, and every call to the
 * component then fails with it, as a failed construction on first use does).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = Effect.fnUntraced(function*(options: Options) {
  const transport = yield* Transport
  const scope = yield* Effect.scope
  const implementations = new Map(options.implementations.map((impl) => [impl.component.componentName, impl]))
  const components = new Map<string, Component.Any>()
  for (const impl of options.implementations) components.set(impl.component.componentName, impl.component)
  for (const component of options.extraComponents ?? []) components.set(component.componentName, component)
  const fakes = options.fakes ?? new Map<string, AnyHandlers>()
  const retryPolicy: RetryPolicy = {
    attempts: Math.max(1, options.retry?.attempts ?? defaultRetryPolicy.attempts),
    within: options.retry?.within ?? defaultRetryPolicy.within
  }
  /**
   * The backoff before retry `attempt + 1` of a call that started at `start` (`performance.now()`): jittered
   * exponential from 10 ms, or `undefined` when the retry policy or the deadline leaves no room for it.
   */
  const retryDelay = (attempt: number, start: number, deadline: number | undefined): number | undefined => {
    const delay = 10 * 1.3 ** attempt * (1 - 0.4 * Math.random())
    return attempt + 1 < retryPolicy.attempts && performance.now() + delay - start <= retryPolicy.within &&
        (deadline === undefined || Date.now() + delay < deadline)
      ? delay
      : undefined
  }
  const callTimeout = options.config.serviceweaver.call_timeout
  const defaultTimeout = callTimeout === undefined ? undefined : WeaverConfig.goDurationMillis(callTimeout)
  const hosts = (name: string) => implementations.has(name) && (options.hosted?.has(name) ?? true)
  const constructed = new Map<string, Effect.Effect<AnyHandlers>>()
  /** The handlers of constructed components as their implementations returned them, for co-located calls. */
  const built = new Map<string, { readonly info: ComponentInfo; readonly handlers: AnyHandlers }>()
  const state = new Map<string, "constructing" | "ready">()
  const clientContexts = new Map<string, Context.Context<never>>()
  const connections = new Map<string, Effect.Effect<Connection>>()

  const construct = (impl: Component.Implementation): Effect.Effect<AnyHandlers> => {
    const name = impl.component.componentName
    const info: ComponentInfo = { name, source: impl.source }
    return Effect.suspend(() => {
      state.set(name, "constructing")
      const make = impl.make(options.componentConfigs.get(name)) as Effect.Effect<unknown, unknown, Scope.Scope>
      return make.pipe(
        Effect.provide(clients(name)),
        Scope.extend(scope),
        Effect.locally(currentComponent, componentBox(info)),
        Effect.locallyWith(constructing, (path) => [...path, name]),
        Effect.map((handlers) => {
          built.set(name, { info, handlers: handlers as AnyHandlers })
          return attribute(info, impl.component.methods, handlers as AnyHandlers)
        }),
        Effect.onExit(() => Effect.sync(() => state.set(name, "ready"))),
        Effect.catchAllCause((cause) => {
          const failure = Cause.failureOption(cause)
          if (Option.isSome(failure)) {
            return Effect.die(new ComponentConstructionError({ component: name, cause: failure.value }))
          }
          const defect = Cause.dieOption(cause)
          if (Option.isNone(defect)) return Effect.failCause(cause as Cause.Cause<never>)
          // A cycle is the root problem, whichever component noticed it: report it alone.
          return Effect.die(
            defect.value instanceof ComponentCycleError
              ? defect.value
              : new ComponentConstructionError({ component: name, cause: defect.value })
          )
        })
      )
    })
  }

  const handlers = (name: string): Effect.Effect<AnyHandlers> => {
    const cached = constructed.get(name)
    if (cached !== undefined && state.get(name) === "ready") return cached
    return Effect.flatMap(FiberRef.get(constructing), (path): Effect.Effect<AnyHandlers> => {
      if (state.get(name) === "constructing" && path.includes(name)) {
        return Effect.die(new ComponentCycleError({ path: [...path.slice(path.indexOf(name)), name] }))
      }
      let effect = constructed.get(name)
      if (effect === undefined) {
        const impl = implementations.get(name)
        if (impl === undefined || !hosts(name)) {
          return Effect.die(
            new UnknownComponentError({ component: name, known: [...implementations.keys()].filter(hosts) })
          )
        }
        effect = Effect.runSync(Effect.cached(construct(impl)))
        constructed.set(name, effect)
      }
      return effect
    })
  }

  /**
   * Connects once, in a fiber of the weavelet's own: a caller that stops
   * waiting (its deadline passed, it was interrupted) leaves the connection
   * to the callers after it, where `Effect.cached` would hand them the
   * interruption.
   */
  const connectOnce = (connect: Effect.Effect<Connection>): Effect.Effect<Connection> => {
    const done = Deferred.unsafeMake<Connection>(FiberId.none)
    let started = false
    return Effect.suspend(() => {
      if (started) return Deferred.await(done)
      started = true
      return Effect.zipRight(Effect.forkIn(Deferred.complete(done, connect), scope), Deferred.await(done))
    })
  }

  const connection = (component: Component.Any): Effect.Effect<Connection> => {
    const name = component.componentName
    let effect = connections.get(name)
    if (effect === undefined) {
      const fake = fakes.get(name)
      effect = fake !== undefined
        ? Effect.succeed<Connection>({
          remote: false,
          invoke: (call, payload) => fake[call.method]!(payload),
          stream: (call, payload) => callStreamHandler(fake[call.method]!, payload, call.component, call.method)
        })
        : connectOnce(transport.connect(component).pipe(Effect.provideService(Weavelet, weavelet)))
      connections.set(name, effect)
    }
    return effect
  }

  const requirements = new Map<string, Set<string>>()
  const recordEdge = (caller: string, component: string) => {
    let required = requirements.get(caller)
    if (required === undefined) requirements.set(caller, required = new Set())
    if (required.has(component)) return
    required.add(component)
    options.onRequire?.(caller, component)
  }

  /**
   * A call of a streaming method, opened when the Stream is run (by the
   * fiber that runs it): one deadline for the whole stream, retries only
   * before an element reached the consumer, one method call in the metrics
   * and one span, whatever the number of elements.
   */
  const makeStreamCall = (options: {
    readonly call: Call
    readonly spec: Component.AnyMethod
    readonly connect: () => Effect.Effect<Connection>
    readonly deadlineOf: () => { deadline: number | undefined; own: boolean }
    readonly unreachable: (error: unknown) => boolean
    readonly record: (connection: Connection, failed: boolean, latencyMicros: number | undefined) => void
  }) => {
    const { call, deadlineOf, record, spec, unreachable } = options
    const attributes = { component: call.component, method: call.method, caller: call.caller }
    const attempt = (
      open: NonNullable<Connection["stream"]>,
      payload: unknown,
      attempts: number,
      start: number,
      deadline: number | undefined
    ): Stream.Stream<unknown, unknown> => {
      let emitted = false
      let stream: Stream.Stream<unknown, unknown>
      try {
        stream = open(call, payload)
      } catch (defect) {
        stream = Stream.die(defect)
      }
      return stream.pipe(
        Stream.mapChunks((chunk) => {
          if (chunk.length > 0) emitted = true
          return chunk
        }),
        Stream.catchAll((error) => {
          // After an element reached the consumer a retry would repeat it: the failure is the stream's.
          if (!emitted && spec.retry && unreachable(error)) {
            const delay = retryDelay(attempts, start, deadline)
            if (delay !== undefined) {
              return Stream.unwrap(
                Effect.as(Effect.sleep(delay), attempt(open, payload, attempts + 1, start, deadline))
              )
            }
          }
          return Stream.fail(error)
        })
      )
    }
    /** Records the stream as one call when its scope closes: failed if it failed, or was interrupted before its end. */
    const metered = (c: Connection, stream: Stream.Stream<unknown, unknown>) =>
      Stream.fromPull(Effect.suspend(() => {
        const start = performance.now()
        let ended = false
        let failed = false
        const observe = (cause: Cause.Cause<Option.Option<unknown>>) => {
          const failure = Cause.failureOption(cause)
          if (Option.isSome(failure) && Option.isNone(failure.value)) ended = true
          else if (!Cause.isInterruptedOnly(cause)) failed = true
          return Effect.void
        }
        return Effect.zipRight(
          Effect.addFinalizer((exit) =>
            Effect.sync(() =>
              record(c, failed || (exit._tag === "Failure" && !ended), (performance.now() - start) * 1000)
            )
          ),
          Effect.map(Stream.toPull(stream), (pull) => Effect.tapErrorCause(pull, observe))
        )
      }))
    const open = (c: Connection, payload: unknown, deadline: number | undefined): Stream.Stream<unknown, unknown> => {
      const stream = c.stream
      if (stream === undefined) {
        return Stream.die(
          new globalThis.Error(
            `the ${transport.name} transport cannot carry streaming methods, and ${call.component}.${call.method} ` +
              `is one (declared with stream: true)`
          )
        )
      }
      if (deadline !== undefined && deadline <= Date.now()) {
        record(c, true, 0)
        return Stream.fail(timeoutError(call, "deadline exceeded before the call was made"))
      }
      let result = attempt(stream, payload, 0, performance.now(), deadline)
      if (deadline !== undefined) {
        // The deadline bounds the whole stream, and the producer (here or remote) runs under it.
        result = Stream.interruptWhen(
          result,
          Effect.zipRight(
            Effect.sleep(Math.max(0, deadline - Date.now())),
            Effect.fail(timeoutError(call, "deadline exceeded"))
          )
        )
        result = eachPull(result, (effect) => Effect.locally(effect, currentDeadline, deadline))
      }
      result = metered(c, result)
      // As for other calls: a span only if the fiber running the stream is already traced.
      return currentSpanSampled()
        ? Stream.withSpan(result, `${call.component}.${call.method}`, {
          kind: c.remote ? "client" : "internal",
          attributes: { ...attributes, remote: c.remote },
          captureStackTrace: false
        })
        : result
    }
    return (payload: unknown): Stream.Stream<unknown, unknown> =>
      Stream.unwrapScoped(Effect.suspend(() => {
        const { deadline } = deadlineOf()
        const connect = options.connect()
        const connected = deadline === undefined ? connect : Effect.timeoutFail(connect, {
          duration: Math.max(0, deadline - Date.now()),
          onTimeout: () => timeoutError(call, "deadline exceeded while connecting to the component")
        })
        return Effect.map(connected, (c) => open(c, payload, deadline))
      }))
  }

  const makeClient = (component: Component.Any, caller: string) => {
    const client: Record<string, (payload?: unknown) => Effect.Effect<unknown, unknown>> & {
      [clientResolved]?: () => void
    } = {}
    client[clientResolved] = () => recordEdge(caller, component.componentName)
    let resolved: Connection | undefined
    const connect = Effect.tap(connection(component), (c) => {
      resolved = c
    })
    for (const [method, spec] of Object.entries(component.methods)) {
      const call = { component: component.componentName, method, spec, caller }
      /**
       * The deadline of a call made now: the earlier of the one in force and the method's `timeout`; with
       * neither, `call_timeout`'s default. `own` when it is not the one in force.
       */
      const deadlineOf = (): { deadline: number | undefined; own: boolean } => {
        const inForce = currentFiber()?.getFiberRef(currentDeadline)
        const timeout = spec.timeout ?? (inForce === undefined ? defaultTimeout : undefined)
        if (timeout === undefined) return { deadline: inForce, own: false }
        const at = Date.now() + timeout
        return inForce !== undefined && inForce <= at ? { deadline: inForce, own: false } : { deadline: at, own: true }
      }
      const timed = spec.timeout !== undefined || defaultTimeout !== undefined
      const start0 = (c: Connection, payload: unknown): Effect.Effect<unknown, unknown> => {
        try {
          return c.invoke(call, payload)
        } catch (defect) {
          // A handler that throws instead of returning an Effect: a defect, counted like one.
          return Effect.die(defect)
        }
      }
      /**
       * The transport could not reach a replica for this very call (a handler's own RemoteCallError, from a
       * call it made, names another call and is the handler's answer).
       */
      const unreachable = (error: unknown): error is RemoteCallError =>
        error instanceof RemoteCallError && error.reason === "Unreachable" && error.method === method &&
        error.component === call.component
      let series: MethodMetrics.Series | undefined
      let calls = 0
      // A component's calls are all remote or all local: one series.
      const record = (connection: Connection, failed: boolean, latencyMicros: number | undefined) => {
        series ??= MethodMetrics.series({ caller, component: call.component, method, remote: connection.remote })
        MethodMetrics.record(series, failed, latencyMicros)
      }
      let recorder: Recorder | undefined
      const recorderOf = (c: Connection): Recorder => recorder ??= (failed, micros) => record(c, failed, micros)
      if (spec.stream) {
        const streamCall = makeStreamCall({
          call,
          spec,
          connect: () => resolved !== undefined ? Effect.succeed(resolved) : connect,
          deadlineOf,
          unreachable,
          record
        })
        client[method] = (payload) => streamCall(payload) as unknown as Effect.Effect<unknown, unknown>
        continue
      }
      /**
       * A remote call, metered, and retried where the method allows it and the transport failed, within the
       * retry policy and never past the deadline: one pair of match handlers per attempt.
       */
      const remoteCall = (c: Connection, payload: unknown, first: Effect.Effect<unknown, unknown>, start: number) => {
        const flight = callsInFlight(currentFiber())
        const depth = flight.push(recorderOf(c), start)
        const settle = (effect: Effect.Effect<unknown, unknown>, attempt: number): Effect.Effect<unknown, unknown> =>
          Effect.matchCauseEffect(effect, {
            onFailure: (cause) => {
              if (spec.retry && cause._tag === "Fail" && unreachable(cause.error)) {
                const delay = retryDelay(attempt, start, currentFiber()?.getFiberRef(currentDeadline))
                if (delay !== undefined) {
                  return Effect.zipRight(
                    Effect.sleep(delay),
                    Effect.suspend(() => settle(start0(c, payload), attempt + 1))
                  )
                }
              }
              flight.done(depth, true)
              return Effect.failCause(cause)
            },
            onSuccess: (value) => {
              flight.done(depth, false)
              return Effect.succeed(value)
            }
          })
        return settle(first, 0)
      }
      /**
       * A remote call through a transport that completes calls by callback (`Connection.send`): metered in
       * plain code, with no step of the caller's fiber but its suspension. A call to retry goes on through
       * {@link remoteCall}, in the fiber, from the failed attempt.
       */
      const sent = (c: Connection, send: NonNullable<Connection["send"]>, payload: unknown) =>
        Effect.async<unknown, unknown>((resume) => {
          const fiber = currentFiber()!
          const flight = callsInFlight(fiber)
          const start = performance.now()
          const depth = flight.push(recorderOf(c), start)
          send(call, payload, fiber as unknown as CallerFiber, (exit) => {
            if (exit._tag === "Failure" && spec.retry && exit.cause._tag === "Fail" && unreachable(exit.cause.error)) {
              flight.drop(depth)
              return resume(Effect.suspend(() => remoteCall(c, payload, exit, start)))
            }
            flight.done(depth, exit._tag === "Failure")
            resume(exit)
          })
        })
      /**
       * A co-located call of a component this weavelet built, made by the stub itself: the handler runs in the
       * calling fiber, attributed to its component and metered in one pair of match handlers, instead of
       * through the local connection's attributed handler and a second wrapper. Same outcome, fewer steps.
       */
      const direct = (
        c: Connection,
        payload: unknown,
        own: { readonly info: ComponentInfo; readonly handlers: AnyHandlers },
        /** Ends the call's span (a traced call), in the same match handlers. */
        endSpan?: (exit: Exit.Exit<unknown, unknown>) => void
      ) => {
        const sampled = (calls++ & syncLatencySampleMask) === 0
        const syncStart = sampled ? performance.now() : 0
        let effect: Effect.Effect<unknown, unknown>
        try {
          effect = own.handlers[method]!(payload)
        } catch (defect) {
          effect = Effect.die(defect)
        }
        // An Exit ran no Effect code: nothing to attribute, and no deadline to keep.
        if (isExit(effect)) {
          record(c, effect._tag === "Failure", sampled ? (performance.now() - syncStart) * 1000 : undefined)
          endSpan?.(effect)
          return effect
        }
        const fiber = currentFiber()!
        const box = ownBox(fiber)
        const previous = box.value
        box.value = own.info
        effect = underDeadline(c, effect)
        const flight = callsInFlight(fiber)
        const depth = flight.push(recorderOf(c), sampled ? syncStart : untimed)
        return settled(effect, (exit) => {
          box.value = previous
          flight.done(depth, exit._tag === "Failure")
          endSpan?.(exit)
        })
      }
      const colocated = !fakes.has(component.componentName) && hosts(component.componentName)
      /**
       * A call that did not complete at once, under the deadline in force (it has no `timeout` of its own): a
       * co-located one is interrupted at the deadline; a remote transport carries and enforces it.
       */
      const underDeadline = (c: Connection, effect: Effect.Effect<unknown, unknown>) => {
        if (c.remote) return effect
        const deadline = currentFiber()?.getFiberRef(currentDeadline)
        return deadline === undefined ? effect : within(effect, Math.max(0, deadline - Date.now()))
      }
      const metered = (c: Connection, effect: Effect.Effect<unknown, unknown>, start: number) => {
        const flight = callsInFlight(currentFiber())
        const depth = flight.push(recorderOf(c), start)
        return settled(effect, (exit) => flight.done(depth, exit._tag === "Failure"))
      }
      /** A co-located call interrupted when `remaining` milliseconds have passed. */
      const within = (effect: Effect.Effect<unknown, unknown>, remaining: number) =>
        Effect.timeoutFail(effect, { duration: remaining, onTimeout: () => timeoutError(call, "deadline exceeded") })
      /** A call under a deadline: the fiber's, or the method's `timeout` if that is earlier. */
      const invokeBefore = (c: Connection, payload: unknown, deadline: number, own: boolean) => {
        const start = performance.now()
        const remaining = deadline - Date.now()
        if (remaining <= 0) {
          record(c, true, 0)
          return Effect.fail(timeoutError(call, "deadline exceeded before the call was made"))
        }
        let effect = start0(c, payload)
        if (isExit(effect)) {
          record(c, effect._tag === "Failure", (performance.now() - start) * 1000)
          return effect
        }
        // A remote transport carries the deadline and enforces it; a co-located call is interrupted here.
        effect = c.remote ? remoteCall(c, payload, effect, start) : metered(c, within(effect, remaining), start)
        // The handler and the calls it makes, here or in another process, run under the deadline.
        return own ? Effect.locally(effect, currentDeadline, deadline) : effect
      }
      const invoke = (c: Connection, payload: unknown): Effect.Effect<unknown, unknown> => {
        if (timed) {
          const { deadline, own } = deadlineOf()
          if (deadline !== undefined) return invokeBefore(c, payload, deadline, own)
        }
        if (colocated && !c.remote) {
          const own = built.get(component.componentName)
          if (own !== undefined) return direct(c, payload, own)
        }
        if (c.send !== undefined) return sent(c, c.send, payload)
        // Reading the clock costs as much as a whole plain service call, so the latency of calls that complete
        // synchronously (the handler returned an Exit) is sampled; every other call is timed.
        const sampled = (calls++ & syncLatencySampleMask) === 0
        const syncStart = sampled ? performance.now() : 0
        const effect = start0(c, payload)
        if (isExit(effect)) {
          record(c, effect._tag === "Failure", sampled ? (performance.now() - syncStart) * 1000 : undefined)
          return effect
        }
        const start = sampled ? syncStart : performance.now()
        return c.remote ? remoteCall(c, payload, effect, start) : metered(c, underDeadline(c, effect), start)
      }
      const spanName = `${call.component}.${method}`
      const localSpan: Tracing.ChildSpanOptions = {
        kind: "internal",
        attributes: { component: call.component, method, caller, remote: false }
      }
      const remoteSpan: Tracing.ChildSpanOptions = {
        kind: "client",
        attributes: { ...localSpan.attributes, remote: true }
      }
      const traced = (c: Connection, payload: unknown): Effect.Effect<unknown, unknown> => {
        const own = !timed && colocated && !c.remote ? built.get(component.componentName) : undefined
        if (own !== undefined) {
          const fiber = currentFiber() as unknown as Fiber.RuntimeFiber<unknown, unknown>
          const endSpan = Tracing.startChildSpan(fiber, spanName, localSpan)
          // The handler runs in the calling fiber: the span ends in the call's own match handlers.
          if (endSpan !== undefined) return direct(c, payload, own, endSpan)
        }
        return Tracing.withChildSpan(invoke(c, payload), spanName, c.remote ? remoteSpan : localSpan)
      }
      const run = (payload: unknown): Effect.Effect<unknown, unknown> => {
        // As Service Weaver's stubs: a span only if the calling fiber is already traced.
        const go = currentSpanSampled() ? traced : invoke
        if (resolved !== undefined) return go(resolved, payload)
        // The first calls wait for the connection (the component may be starting), under their deadline.
        const { deadline } = deadlineOf()
        if (deadline === undefined) return Effect.flatMap(connect, (c) => go(c, payload))
        const connecting = Effect.timeoutFail(connect, {
          duration: Math.max(0, deadline - Date.now()),
          onTimeout: () => timeoutError(call, "deadline exceeded while connecting to the component")
        })
        return Effect.locally(Effect.flatMap(connecting, (c) => go(c, payload)), currentDeadline, deadline)
      }
      client[method] = (payload) => new CallEffect(run, payload)
    }
    return client
  }

  const clients = (caller: string): Context.Context<never> => {
    let context = clientContexts.get(caller)
    if (context === undefined) {
      const map = new Map<string, unknown>()
      for (const component of components.values()) {
        const client = makeClient(component, caller)
        // A lifted component is reached through the Tag the application already used, as that service.
        map.set(
          component.key,
          "serviceOf" in component ? (component as Component.Lifted<any, any>).serviceOf(client) : client
        )
      }
      context = Context.unsafeMake(map)
      clientContexts.set(caller, context)
    }
    return context
  }

  const weavelet: Weavelet["Type"] = {
    app: options.app,
    deploymentId: options.deploymentId,
    replicaId: options.replicaId,
    config: options.config,
    components,
    hosts,
    handlers,
    clients,
    requirements,
    listenerAddress: (name) => {
      const listeners = options.listeners
      if (listeners !== undefined && !listeners.declared.has(name)) {
        return Effect.dieMessage(
          `listener "${name}" is not declared: list it in Weaver.main(..., { listeners: ["${name}"] }) ` +
            `or in the options of the component that serves it (declared: ${
              [...listeners.declared].join(", ") || "none"
            })`
        )
      }
      return Effect.succeed(listeners?.address(name) ?? "localhost:0")
    },
    listening: (name, address, kind) => options.listeners?.onListening?.(name, address, kind) ?? Effect.void
  }
  for (const impl of options.implementations) {
    const name = impl.component.componentName
    if (!impl.singleton || !hosts(name) || fakes.has(name)) continue
    // Through the transport's connection: a transport may serve a component this weavelet could host elsewhere.
    yield* connection(impl.component).pipe(
      Effect.flatMap((c) => c.remote ? Effect.void : handlers(name)),
      Effect.catchAllCause((cause) => Effect.logError(`singleton ${name} could not be constructed`, cause)),
      Effect.forkIn(scope)
    )
  }
  return weavelet
})

/**
 * A connection that calls a hosted component directly, without encoding.
 *
 * @since 0.1.0
 * @category runtime
 */
export const localConnection = (component: Component.Any): Effect.Effect<Connection, never, Weavelet> =>
  Effect.map(Weavelet, (weavelet) => {
    const name = component.componentName
    let handlers: AnyHandlers | undefined
    const resolve = Effect.tap(weavelet.handlers(name), (h) => {
      handlers = h
    })
    return {
      remote: false,
      invoke: (call, payload) =>
        handlers !== undefined
          ? handlers[call.method]!(payload)
          : Effect.flatMap(resolve, (h) => h[call.method]!(payload)),
      // Co-located: the handler's own Stream, never encoded (attributed to its component, see `attribute`).
      stream: (call, payload) =>
        handlers !== undefined
          ? handlers[call.method]!(payload) as unknown as Stream.Stream<unknown, unknown>
          : Stream.unwrap(
            Effect.map(resolve, (h) => h[call.method]!(payload) as unknown as Stream.Stream<unknown, unknown>)
          )
    }
  })
