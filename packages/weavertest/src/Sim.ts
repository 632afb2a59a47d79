/**
 * A deterministic simulator, Service Weaver's `sim` in Effect terms.
 *
 * A {@link Workload} is a set of named ops: Effects that call the app's
 * components and fail when an invariant is violated, each with generators
 * for its inputs (Schemas or fast-check arbitraries). An execution runs a
 * number of ops concurrently against an app whose every component has
 * `replicas` in-process replicas, each with its own state. Every call
 * between components goes through a scheduler that decides, from a seeded
 * random generator, which pending event happens next: an op starts, a call
 * is delivered to a replica, or a reply is delivered to its caller; and
 * with probability `failureRate` a call fails with `RemoteCallError`,
 * before it is delivered (the method never runs) or after (it ran, the
 * caller never learns its result). Nothing else runs meanwhile: the
 * execution's fibers run on a scheduler of our own that is drained, to
 * completion, between events, so one seed and the options reproduce an
 * execution exactly, event for event. Payloads and results cross as the
 * wire carries them (encoded and decoded with the method's schemas), so a
 * component never shares a mutable object with its caller.
 *
 * {@link search} sweeps seeds and options within a time budget; a failing
 * execution is minimized (fewest ops, replicas and failures that still
 * fail), saved to a graveyard file, and replayed first on every later
 * search; it may run in worker threads too ({@link SearchOptions.workers}).
 * {@link mermaid} draws an execution's history as a sequence diagram.
 *
 * Ops must talk to the app only through component calls and do no real I/O
 * or sleeping: what they await must be a call, or the execution cannot be
 * driven (it is then reported as stuck).
 *
 * @since 0.1.0
 */
import { RemoteCallError, type Weaver, WeaverConfig } from "@effect-weaver/core"
import { App, Component, ComponentError, Transport, Weavelet } from "@effect-weaver/runtime"
import * as Arbitrary from "effect/Arbitrary"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FastCheck from "effect/FastCheck"
import type * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as FiberRef from "effect/FiberRef"
import * as FiberRefs from "effect/FiberRefs"
import * as Runtime from "effect/Runtime"
import * as RuntimeFlags from "effect/RuntimeFlags"
import type * as Scheduler from "effect/Scheduler"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import { PCGRandom } from "effect/Utils"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { candidatesOf, inThreads } from "./internal/simThreads.js"

/**
 * An op of a workload: generators for its arguments and what it does with
 * them.
 *
 * @since 0.1.0
 * @category models
 */
export interface Op<R = any> {
  readonly args: ReadonlyArray<Schema.Schema.Any | FastCheck.Arbitrary<any>>
  readonly run: (...args: Array<any>) => Effect.Effect<unknown, unknown, R>
}

/**
 * An op: `Sim.op([Schema.Literal("alice", "bob"), Amount], (user, amount) => …)`.
 * The Effect may fail to report a violated invariant; failing with a
 * `RemoteCallError` (an injected failure it did not handle) is not a
 * violation.
 *
 * @since 0.1.0
 * @category constructors
 */
export const op = <const Args extends ReadonlyArray<Schema.Schema.Any | FastCheck.Arbitrary<any>>, R>(
  args: Args,
  run: (
    ...values: {
      -readonly [K in keyof Args]: Args[K] extends FastCheck.Arbitrary<infer T> ? T : Schema.Schema.Type<Args[K]>
    }
  ) => Effect.Effect<unknown, unknown, R>
): Op<R> => ({ args, run: run as Op<R>["run"] })

/**
 * A workload: the app, its ops, and optionally an `init` run before the
 * ops (through the scheduler too) and a `check` run after them all.
 *
 * @since 0.1.0
 * @category models
 */
export interface Workload {
  readonly app: Weaver.App<any, any>
  readonly ops: { readonly [name: string]: Op }
  readonly init?: Effect.Effect<unknown, unknown, any> | undefined
  readonly check?: Effect.Effect<unknown, unknown, any> | undefined
  /** The weaver.toml of the app, if its components need config. */
  readonly config?: string | undefined
}

/**
 * Makes a {@link Workload}.
 *
 * @since 0.1.0
 * @category constructors
 */
export const workload = (workload: Workload): Workload => workload

/**
 * The options of one execution.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly seed: number
  /** How many ops run, concurrently. */
  readonly ops: number
  /** Replicas of every component. */
  readonly replicas: number
  /** The probability that a call fails with `RemoteCallError` (half before delivery, half after). */
  readonly failureRate: number
  /**
   * The probability that the scheduler picks among all pending events
   * rather than continuing with the newest one: low values explore long
   * runs of one op, high values fine interleavings.
   */
  readonly yieldRate: number
}

/**
 * One event of an execution's history.
 *
 * @since 0.1.0
 * @category models
 */
export type Event =
  | { readonly _tag: "Start"; readonly op: number; readonly name: string; readonly args: string }
  | {
    readonly _tag: "Call"
    readonly op: number
    readonly id: number
    readonly from: string
    readonly to: string
    readonly method: string
    readonly payload: string
  }
  | {
    readonly _tag: "Reply"
    readonly op: number
    readonly id: number
    readonly from: string
    readonly to: string
    readonly result: string
  }
  | {
    readonly _tag: "Fail"
    readonly op: number
    readonly id: number
    readonly from: string
    readonly to: string
    readonly when: "before" | "after"
  }
  | { readonly _tag: "End"; readonly op: number; readonly result: string }

/**
 * What an execution did.
 *
 * @since 0.1.0
 * @category models
 */
export interface Execution {
  readonly options: Options
  readonly history: ReadonlyArray<Event>
  /** Failures injected. */
  readonly failures: number
  /** The violation, if an op or the check failed (or the execution got stuck). */
  readonly violation?: { readonly op: number; readonly name: string; readonly error: string } | undefined
}

const show = (value: unknown): string => {
  if (value === undefined) return "void"
  let text: string
  try {
    text = typeof value === "string" ? JSON.stringify(value) : JSON.stringify(value) ?? String(value)
  } catch {
    text = String(value)
  }
  return text.length > 60 ? `${text.slice(0, 57)}...` : text
}

const showExit = (exit: Exit.Exit<unknown, unknown>): string =>
  Exit.isSuccess(exit)
    ? show(exit.value)
    : Cause.isFailType(exit.cause) && typeof exit.cause.error === "object" && exit.cause.error !== null &&
        "_tag" in exit.cause.error
    ? `error ${String((exit.cause.error as { _tag: unknown })._tag)}`
    : Cause.isInterruptedOnly(exit.cause)
    ? "interrupted"
    : `defect ${describe(exit.cause)}`

const isRemoteCallError = (exit: Exit.Exit<unknown, unknown>) =>
  Exit.isFailure(exit) && Cause.isFailType(exit.cause) &&
  exit.cause.error instanceof RemoteCallError

const toArbitrary = (value: Schema.Schema.Any | FastCheck.Arbitrary<any>): FastCheck.Arbitrary<any> =>
  Schema.isSchema(value) ? Arbitrary.make(value as Schema.Schema<any, any, never>) : value

// The arguments' arbitrary of each op, made once (deriving one from Schemas costs more than an execution).
const argumentsOf = new WeakMap<Op, FastCheck.Arbitrary<ReadonlyArray<unknown>>>()
const argumentsArbitrary = (op: Op) => {
  let arbitrary = argumentsOf.get(op)
  if (arbitrary === undefined) {
    arbitrary = FastCheck.tuple(...op.args.map(toArbitrary))
    argumentsOf.set(op, arbitrary)
  }
  return arbitrary
}

/**
 * fast-check's random source (a pure-rand generator) over the execution's
 * seeded generator, so that arguments are drawn from the same seed as every
 * scheduling decision, without building a fast-check runner per op.
 */
class SeededSource {
  constructor(private readonly pcg: PCGRandom) {}
  clone(): SeededSource {
    const copy = new PCGRandom()
    copy.setState(this.pcg.getState() as [number, number, number, number])
    return new SeededSource(copy)
  }
  next(): [number, SeededSource] {
    const copy = this.clone()
    return [copy.unsafeNext(), copy]
  }
  unsafeNext(): number {
    return this.pcg.integer(4294967296) | 0
  }
  getState(): ReadonlyArray<number> {
    return this.pcg.getState()
  }
}

/**
 * A scheduler that runs nothing by itself: tasks wait until the simulator
 * drains them, which it does to completion between two events.
 */
const makeScheduler = () => {
  const tasks: Array<() => void> = []
  const scheduler: Scheduler.Scheduler = {
    shouldYield: () => false,
    scheduleTask: (task) => void tasks.push(task)
  }
  const drain = () => {
    for (let i = 0; i < tasks.length; i++) tasks[i]!()
    // Emptied by pops: there are a few, and setting the length costs more.
    while (tasks.length > 0) tasks.pop()
  }
  return { scheduler, drain }
}

type Pending =
  | { readonly _tag: "Start"; readonly op: number }
  | {
    readonly _tag: "Call"
    readonly op: number
    readonly id: number
    readonly from: string
    readonly call: Transport.Call
    /** The payload as the wire carries it (encoded with the method's schema): the simulator's own copy. */
    readonly wire: unknown
    /** Resumed with what the caller does next: run the handler on the replica picked, or fail. */
    readonly resume: (next: Effect.Effect<unknown, unknown>) => void
  }
  | {
    readonly _tag: "Reply"
    readonly op: number
    readonly id: number
    readonly from: string
    readonly to: string
    readonly call: Transport.Call
    /** The outcome as the wire carries it: a success is its encoded value, decoded for the caller on delivery. */
    readonly exit: Exit.Exit<unknown, unknown>
    readonly resume: (exit: Exit.Exit<unknown, unknown>) => void
  }

/**
 * An event as recorded while an execution runs: payloads and results are
 * kept as they crossed the wire (copies no component holds) and turned into
 * text only when the history is read, which a passing execution never does.
 */
type Recorded =
  | Extract<Event, { readonly _tag: "Start" | "Fail" }>
  | Omit<Extract<Event, { readonly _tag: "Call" }>, "payload"> & { readonly wire: unknown }
  | Omit<Extract<Event, { readonly _tag: "Reply" }>, "result"> & { readonly exit: Exit.Exit<unknown, unknown> }
  | { readonly _tag: "End"; readonly op: number; readonly exit: Exit.Exit<unknown, unknown> }
  | { readonly _tag: "StartLazy"; readonly op: number; readonly name: string; readonly values: ReadonlyArray<unknown> }

const isPrimitive = (value: unknown) => value === null || (typeof value !== "object" && typeof value !== "function")

const showArgs = (args: ReadonlyArray<unknown>) => args.map(show).join(", ")

const eventOf = (recorded: Recorded): Event => {
  switch (recorded._tag) {
    case "StartLazy":
      return { _tag: "Start", op: recorded.op, name: recorded.name, args: showArgs(recorded.values) }
    case "Call": {
      const { wire, ...rest } = recorded
      return { ...rest, payload: show(wire) }
    }
    case "Reply": {
      const { exit, ...rest } = recorded
      return { ...rest, result: showExit(exit) }
    }
    case "End":
      return { _tag: "End", op: recorded.op, result: showExit(recorded.exit) }
    default:
      return recorded
  }
}

/** Which op a fiber works for, so that calls made by handlers are attributed to the op that caused them. */
class CurrentOp extends Context.Reference<CurrentOp>()("@effect-weaver/weavertest/Sim/CurrentOp", {
  defaultValue: () => 0
}) {}

const stringHash = (text: string) => {
  let h = 5381
  for (let i = 0; i < text.length; i++) h = (h * 33) ^ text.charCodeAt(i)
  return h >>> 0
}

const remoteError = (call: Transport.Call, reason: RemoteCallError["reason"], detail: string) =>
  new RemoteCallError({ component: call.component, method: call.method, reason, detail })

const injected = (call: Transport.Call, when: "before" | "after") => {
  // Without a stack trace: it would show the simulator's loop, and capturing it costs more than the call.
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = 0
  const error = remoteError(
    call,
    "Unreachable",
    when === "before"
      ? "failure injected by the simulator before delivery"
      : "failure injected by the simulator after the method ran"
  )
  Error.stackTraceLimit = limit
  return Exit.fail(error)
}

const describe = (cause: Cause.Cause<unknown>): string => {
  const error = Cause.squash(cause)
  if (error instanceof Error) {
    const tag = (error as { readonly _tag?: unknown })._tag
    return `${typeof tag === "string" ? tag : error.name}: ${error.message}`
  }
  return show(error)
}

const message = (error: unknown) => error instanceof Error ? error.message : String(error)

/**
 * A handler's outcome as a remote transport carries it back: a success
 * encoded with the method's success schema; a declared error checked
 * against its error schema; a `RemoteCallError` of a call the handler made
 * as it is; a defect as a `RemoteCallError` with reason `Handler` (the
 * conformance suite's rule). Anything the schemas reject is a
 * `RemoteCallError` too, as the RPC and worker transports answer.
 */
const toWire = (call: Transport.Call, exit: Exit.Exit<unknown, unknown>): Exit.Exit<unknown, unknown> => {
  const codec = Component.codec(call.spec)
  if (Exit.isSuccess(exit)) {
    try {
      return Exit.succeed(codec.encodeSuccess(exit.value))
    } catch (error) {
      return Exit.fail(remoteError(call, "Handler", `result does not match the success schema: ${message(error)}`))
    }
  }
  const cause = exit.cause
  if (Cause.isFailType(cause)) {
    const error = cause.error
    if (error instanceof RemoteCallError) return exit
    let encoded: unknown
    try {
      encoded = codec.encodeError(error)
    } catch (reason) {
      return Exit.fail(
        remoteError(
          call,
          "Handler",
          `failed with an error its error schema does not declare: ${show(error)} (${message(reason)})`
        )
      )
    }
    // An Error (a Schema.TaggedError) has readonly fields and is delivered as is: decoding it again would cost
    // more than the rest of the call (a stack trace). Plain values are copied, as the wire copies them.
    if (error instanceof Error) return exit
    try {
      return Exit.fail(codec.decodeError(encoded))
    } catch (reason) {
      return Exit.fail(remoteError(call, "Decode", `error: ${message(reason)}`))
    }
  }
  return Cause.isInterruptedOnly(cause) ? exit : Exit.fail(remoteError(call, "Handler", describe(cause)))
}

/** A reply as the caller receives it: a success decoded from its wire form, a fresh copy. */
const fromWire = (call: Transport.Call, exit: Exit.Exit<unknown, unknown>): Exit.Exit<unknown, unknown> => {
  if (Exit.isFailure(exit)) return exit
  try {
    return Exit.succeed(Component.codec(call.spec).decodeSuccess(exit.value))
  } catch (error) {
    return Exit.fail(remoteError(call, "Decode", `reply: ${message(error)}`))
  }
}

/** The fiber running now (`Fiber.getCurrentFiber` without its Option): transports are called inside its run loop. */
const currentFiber = (): Fiber.RuntimeFiber<unknown, unknown> | undefined =>
  (globalThis as { readonly ["effect/FiberCurrent"]?: Fiber.RuntimeFiber<unknown, unknown> })["effect/FiberCurrent"]

/** The state of one execution that the transport of its world reaches. */
interface Running {
  readonly invoke: (replica: number, call: Transport.Call, payload: unknown) => Effect.Effect<unknown, unknown>
}

/**
 * What every execution of a workload with a given number of replicas
 * shares: the weavelets of the replicas (their client stubs, the call
 * pipeline every call goes through) and the scheduler. Only components are
 * made anew per execution, as Service Weaver's executor makes its replicas:
 * building weavelets and stubs cost far more than an execution's calls.
 * The transport hands each call to the execution running now.
 */
interface World {
  readonly weavelets: ReadonlyArray<Weavelet.Weavelet["Type"]>
  readonly componentConfigs: ReadonlyMap<string, unknown>
  readonly implementations: ReadonlyMap<string, Component.Implementation>
  readonly drain: () => void
  /** A runtime per op number: the driver's clients, the op, and the simulator's scheduler. */
  readonly runtimeOf: (op: number) => Runtime.Runtime<never>
  /** The fiber refs every fiber of the world starts with: the simulator's scheduler. */
  readonly fiberRefs: FiberRefs.FiberRefs
  /** The context a component of a replica is constructed in: its clients, as seen from it, on that replica. */
  readonly contextOf: (replica: number, component: string) => Context.Context<never>
  running: Running | undefined
}

const worlds = new WeakMap<Workload, Map<number, World>>()

/**
 * The flags of the simulator's fibers: the default ones but Effect's fiber
 * metrics (`effect_fiber_started`, …), which every fiber's start and end
 * would update, in a metric registry lookup each.
 */
const runtimeFlags = RuntimeFlags.disable(Runtime.defaultRuntime.runtimeFlags, RuntimeFlags.RuntimeMetrics)

const makeWorld = Effect.fnUntraced(function*(workload: Workload, replicas: number) {
  const config = workload.config === undefined
    ? WeaverConfig.empty("<sim config>")
    : yield* WeaverConfig.parse(workload.config, "<sim config>")
  const validated = yield* WeaverConfig.validate(config, App.shape(workload.app))
  const { drain, scheduler } = makeScheduler()
  const world: World = {
    weavelets: [],
    componentConfigs: validated,
    implementations: new Map(workload.app.implementations.map((impl) => [impl.component.componentName, impl])),
    drain,
    runtimeOf: undefined as never,
    fiberRefs: undefined as never,
    contextOf: undefined as never,
    running: undefined
  }
  const replicaOf = new Map<Weavelet.Weavelet["Type"], number>()
  const transport: Transport.Transport["Type"] = {
    name: "sim",
    connect: () =>
      Effect.map(Weavelet.Weavelet, (weavelet) => {
        const replica = replicaOf.get(weavelet) ?? 0
        return {
          // Remote: the call pipeline treats a local connection's handler as its own and may run it directly.
          remote: true,
          invoke: (call, payload) => world.running!.invoke(replica, call, payload)
        }
      })
  }
  // The weavelets live as long as the workload: they hold no resource (the simulator constructs the components).
  const scope = yield* Scope.make()
  const weavelets: Array<Weavelet.Weavelet["Type"]> = []
  for (let r = 0; r < replicas; r++) {
    const weavelet = yield* App.makeWeavelet(workload.app, {
      config,
      deploymentId: "sim",
      replicaId: `sim-${r}`,
      // Injected failures reach the ops: a retry would need a clock, and hide what the ops must survive.
      retry: { attempts: 1 }
    }).pipe(Effect.provideService(Transport.Transport, transport), Scope.extend(scope))
    weavelets.push(weavelet)
    replicaOf.set(weavelet, r)
  }
  // The driver: ops call components as the main component of replica 0.
  const driver = Context.add(weavelets[0]!.clients(App.mainName), Weavelet.Weavelet, weavelets[0]!)
  const fiberRefs = FiberRefs.updateAs(Runtime.defaultRuntime.fiberRefs, {
    fiberId: FiberId.none,
    fiberRef: FiberRef.currentScheduler,
    value: scheduler
  })
  const runtimes: Array<Runtime.Runtime<never>> = []
  const contexts = new Map<string, Context.Context<never>>()
  return Object.assign(world, {
    weavelets,
    fiberRefs,
    runtimeOf: (op: number) =>
      runtimes[op] ??= Runtime.make({
        context: Context.add(driver, CurrentOp, op),
        fiberRefs,
        runtimeFlags
      }),
    contextOf: (replica: number, component: string) => {
      const key = `${replica}\u0000${component}`
      let context = contexts.get(key)
      if (context === undefined) {
        context = Context.add(weavelets[replica]!.clients(component), Weavelet.Weavelet, weavelets[replica]!)
        contexts.set(key, context)
      }
      return context
    }
  })
})

/** A component of a replica in one execution: constructed, or being constructed (callers wait), or failed to. */
type Replica =
  | { readonly _tag: "Ready"; readonly handlers: Weavelet.AnyHandlers }
  | { readonly _tag: "Constructing"; readonly waiters: Array<(exit: Exit.Exit<Weavelet.AnyHandlers>) => void> }
  | { readonly _tag: "Failed"; readonly exit: Exit.Exit<never> }

/**
 * Runs one execution.
 *
 * @since 0.1.0
 * @category runtime
 */
export const run = (workload: Workload, options: Options): Effect.Effect<Execution, WeaverConfig.WeaverConfigError> =>
  // Combinators, not Effect.gen: V8 allocates generator objects in the old generation once many survive, and
  // everything young they point to then survives minor collections too, which cost executions more than their calls.
  Effect.suspend(() => {
    let byReplicas = worlds.get(workload)
    if (byReplicas === undefined) worlds.set(workload, byReplicas = new Map())
    const cached = byReplicas.get(options.replicas)
    if (cached !== undefined && cached.running === undefined) return executeScoped(cached, workload, options)
    return Effect.flatMap(makeWorld(workload, options.replicas), (world) => {
      // A world under way (a run inside an op?) is left alone: this execution gets one of its own.
      if (cached === undefined) byReplicas.set(options.replicas, world)
      return executeScoped(world, workload, options)
    })
  })

const executeScoped = (world: World, workload: Workload, options: Options) =>
  Effect.flatMap(Scope.make(), (scope) =>
    Effect.sync(() => {
      try {
        return execute(world, workload, options, scope)
      } finally {
        // Even if the simulator itself failed: the world is free for the next execution.
        world.running = undefined
      }
    }).pipe(Effect.ensuring(Scope.close(scope, Exit.void))))

// Participant names, made once: every call and reply names two.
const opNames: Array<string> = []
const opName = (op: number) => opNames[op] ??= `op${op}`
const replicaNames = new Map<string, Array<string>>()
const replicaName = (component: string, replica: number) => {
  let names = replicaNames.get(component)
  if (names === undefined) replicaNames.set(component, names = [])
  return names[replica] ??= `${component}#${replica}`
}

const execute = (world: World, workload: Workload, options: Options, scope: Scope.Scope): Execution => {
  const rng = new PCGRandom(options.seed)
  const { drain } = world
  const pending: Array<Pending> = []
  const history: Array<Recorded> = []
  let failures = 0
  let nextId = 0
  let violation: Execution["violation"] = undefined

  // Each replica's components, constructed on first use in this execution, in the fiber of the call that needs them.
  const replicas = new Map<string, Replica>()
  const construct = (replica: number, name: string): Effect.Effect<Weavelet.AnyHandlers> =>
    Effect.suspend(() => {
      const key = `${replica}\u0000${name}`
      const state = replicas.get(key)
      if (state?._tag === "Ready") return Effect.succeed(state.handlers)
      if (state?._tag === "Failed") return state.exit
      if (state?._tag === "Constructing") {
        return Effect.flatMap(FiberRef.get(Transport.constructing), (path) =>
          path.includes(name)
            ? Effect.die(new ComponentError.ComponentCycleError({ path: [...path.slice(path.indexOf(name)), name] }))
            : Effect.async<Weavelet.AnyHandlers>((resume) => {
              state.waiters.push(resume)
            }))
      }
      const impl = world.implementations.get(name)
      if (impl === undefined) {
        return Effect.die(
          new ComponentError.UnknownComponentError({ component: name, known: [...world.implementations.keys()] })
        )
      }
      const waiters: Array<(exit: Exit.Exit<Weavelet.AnyHandlers>) => void> = []
      replicas.set(key, { _tag: "Constructing", waiters })
      const settle = (exit: Exit.Exit<unknown, unknown>) => {
        // As the weavelet's construction: a failure or defect is a defect naming the component, a cycle alone.
        const built: Exit.Exit<Weavelet.AnyHandlers> = Exit.isSuccess(exit)
          ? exit as Exit.Exit<Weavelet.AnyHandlers>
          : Cause.isFailType(exit.cause)
          ? Exit.die(new ComponentError.ComponentConstructionError({ component: name, cause: exit.cause.error }))
          : Cause.isDieType(exit.cause)
          ? Exit.die(
            exit.cause.defect instanceof ComponentError.ComponentCycleError
              ? exit.cause.defect
              : new ComponentError.ComponentConstructionError({ component: name, cause: exit.cause.defect })
          )
          : exit as Exit.Exit<never>
        replicas.set(
          key,
          Exit.isSuccess(built)
            ? { _tag: "Ready", handlers: built.value }
            : { _tag: "Failed", exit: built as Exit.Exit<never> }
        )
        for (const waiter of waiters) waiter(built)
      }
      // Constructed in a fiber of its own, started with its context and construction path in place (providing them
      // in the caller's fiber would copy its fiber refs four times), on the simulator's scheduler: it runs at once,
      // as far as it can, and its calls are the caller's op's.
      return Effect.async<Weavelet.AnyHandlers>((resume) => {
        waiters.push(resume)
        const caller = currentFiber()
        const op = caller === undefined ? 0 : Context.get(caller.currentContext, CurrentOp)
        const path = caller === undefined ? [] : caller.getFiberRef(Transport.constructing)
        const make = impl.make(world.componentConfigs.get(name)) as Effect.Effect<unknown, unknown, Scope.Scope>
        const runtime = Runtime.make({
          context: Context.add(Context.add(world.contextOf(replica, name), Scope.Scope, scope), CurrentOp, op),
          fiberRefs: FiberRefs.updateAs(world.fiberRefs, {
            fiberId: FiberId.none,
            fiberRef: Transport.constructing,
            value: [...path, name]
          }),
          runtimeFlags
        })
        Runtime.runFork(runtime)(make).addObserver(settle)
      })
    })
  const handle = (call: Transport.Call, replica: number, payload: unknown): Effect.Effect<unknown, unknown> => {
    const state = replicas.get(`${replica}\u0000${call.component}`)
    if (state?._tag === "Ready") return state.handlers[call.method]!(payload)
    return Effect.flatMap(construct(replica, call.component), (handlers) => handlers[call.method]!(payload))
  }
  /** The handler on `target`, then its reply's turn to be scheduled. */
  const serve = (op: number, id: number, from: string, call: Transport.Call, target: number, payload: unknown) => {
    const reply = (exit: Exit.Exit<unknown, unknown>) =>
      Effect.async<unknown, unknown>((resume) => {
        pending.push({ _tag: "Reply", op, id, from: replicaName(call.component, target), to: from, call, exit, resume })
      })
    let effect: Effect.Effect<unknown, unknown>
    try {
      effect = handle(call, target, payload)
    } catch (error) {
      // A handler that throws instead of returning an Effect: a defect, as anywhere in the call pipeline.
      effect = Effect.die(error)
    }
    return Effect.matchCauseEffect(effect, {
      onFailure: (cause) => reply(toWire(call, Exit.failCause(cause))),
      onSuccess: (value) => reply(toWire(call, Exit.succeed(value)))
    })
  }
  world.running = {
    // The handler runs in the caller's fiber, between two suspensions the scheduler ends: delivery of the call (to
    // the replica it picks) and delivery of the reply. No fiber per call: executions stay cheap.
    invoke: (replica, call, payload) => {
      let wire: unknown
      try {
        wire = Component.codec(call.spec).encodePayload(payload)
      } catch (error) {
        return Effect.fail(remoteError(call, "Decode", `payload: ${message(error)}`))
      }
      return Effect.async<unknown, unknown>((resume) => {
        const fiber = currentFiber()
        const op = fiber === undefined ? 0 : Context.get(fiber.currentContext, CurrentOp)
        const id = nextId++
        // The ops play main on replica 0; main's calls are theirs.
        const from = call.caller === App.mainName && op > 0 ? opName(op) : replicaName(call.caller, replica)
        pending.push({ _tag: "Call", op, id, from, call, wire, resume })
      })
    }
  }

  // The fibers of the init, the ops (in the order they started) and the check; each forgotten once done.
  const ops: Array<Fiber.RuntimeFiber<unknown, unknown> | undefined> = []
  const start = (effect: Effect.Effect<unknown, unknown, any>, op: number, name: string) => {
    const slot = ops.length
    const fiber = Runtime.runFork(world.runtimeOf(op))(effect as Effect.Effect<unknown, unknown>)
    ops.push(fiber)
    fiber.addObserver((exit) => {
      // A done fiber is let go at once: held until the execution ends, fibers outlive minor GCs (the cost of many).
      ops[slot] = undefined
      if (op > 0) history.push({ _tag: "End", op, exit })
      if (violation === undefined && Exit.isFailure(exit) && !isRemoteCallError(exit)) {
        violation = { op, name, error: describe(exit.cause) }
      }
    })
  }

  // The ops of this execution and their arguments, drawn up front from the seed.
  const names = Object.keys(workload.ops).sort()
  const random = new FastCheck.Random(new SeededSource(new PCGRandom(options.seed)) as any)
  const planned = Array.from({ length: options.ops }, () => {
    const name = names[rng.integer(names.length)]!
    const spec = workload.ops[name]!
    const args = spec.args.length === 0 ? [] : argumentsArbitrary(spec).generate(random, undefined).value
    return { name, spec, args }
  })

  const deliver = (event: Pending, faults: boolean) => {
    switch (event._tag) {
      case "Start": {
        const { args, name, spec } = planned[event.op - 1]!
        // Arguments the op could mutate are shown as they were drawn; primitives, only if the history is read.
        history.push(
          args.every(isPrimitive)
            ? { _tag: "StartLazy", op: event.op, name, values: args }
            : { _tag: "Start", op: event.op, name, args: showArgs(args) }
        )
        // An op that throws instead of returning an Effect fails like one that dies.
        start(Effect.suspend(() => spec.run(...args)), event.op, name)
        return
      }
      case "Call": {
        const { call, from, id, op, wire } = event
        // The handler's own copy of the payload, decoded from the wire; routing keys are computed from it too.
        let payload: unknown
        let replica = 0
        let refused: Exit.Exit<never, unknown> | undefined
        try {
          payload = Component.codec(call.spec).decodePayload(wire)
          const route = call.spec.routeBy
          if (route !== undefined) replica = stringHash(String(route(payload))) % options.replicas
          else if (faults) replica = rng.integer(options.replicas)
        } catch (error) {
          refused = Exit.fail(remoteError(call, "Decode", `payload: ${message(error)}`))
        }
        const to = replicaName(call.component, replica)
        history.push({ _tag: "Call", op, id, from, to, method: call.method, wire })
        if (refused !== undefined) return event.resume(refused)
        if (faults && options.failureRate > 0 && rng.number() < options.failureRate / 2) {
          failures++
          history.push({ _tag: "Fail", op, id, from, to, when: "before" })
          return event.resume(injected(call, "before"))
        }
        return event.resume(serve(op, id, from, call, replica, payload))
      }
      case "Reply": {
        if (faults && options.failureRate > 0 && rng.number() < options.failureRate / 2) {
          failures++
          history.push({ _tag: "Fail", op: event.op, id: event.id, from: event.from, to: event.to, when: "after" })
          return event.resume(injected(event.call, "after"))
        }
        history.push({ _tag: "Reply", op: event.op, id: event.id, from: event.from, to: event.to, exit: event.exit })
        return event.resume(fromWire(event.call, event.exit))
      }
    }
  }

  // Delivers pending events until none is left (or a violation): in order and without faults for the init and the
  // check, in the seeded order with faults for the ops.
  let last = -1
  const runPhase = (random: boolean) => {
    drain()
    while (pending.length > 0 && violation === undefined) {
      const index = !random
        ? 0
        : last >= 0 && rng.number() >= options.yieldRate
        ? pending.length - 1
        : rng.integer(pending.length)
      last = index
      // Removed in place, the order of the others kept (what the seeded choices index into).
      const event = pending[index]!
      for (let i = index + 1; i < pending.length; i++) pending[i - 1] = pending[i]!
      pending.pop()
      deliver(event, random)
      drain()
    }
  }
  const phase = (effect: Effect.Effect<unknown, unknown, any> | undefined, name: string) => {
    if (effect === undefined || violation !== undefined) return
    start(effect, 0, name)
    runPhase(false)
  }
  phase(workload.init, "init")
  if (violation === undefined) {
    for (let op = 1; op <= options.ops; op++) pending.push({ _tag: "Start", op })
    runPhase(true)
  }
  if (violation === undefined) {
    const stuck = ops.findIndex((fiber) => fiber !== undefined)
    if (stuck >= 0) {
      violation = {
        op: stuck,
        name: "stuck",
        error: "an op waits for something other than a component call (real I/O, a sleep, a lock never released)"
      }
    }
  }
  phase(workload.check, "check")
  for (const fiber of ops) fiber?.unsafeInterruptAsFork(fiber.id())
  drain()
  let events: ReadonlyArray<Event> | undefined
  return {
    options,
    get history() {
      return events ??= history.map(eventOf)
    },
    failures,
    violation
  }
}

/**
 * What {@link search} explores: the ranges options are drawn from, and for
 * how long.
 *
 * @since 0.1.0
 * @category models
 */
export interface SearchOptions {
  /** How long to search (default 2 seconds). */
  readonly budget?: Duration.DurationInput | undefined
  /** Ops per execution: from 1 to this (default 5). */
  readonly maxOps?: number | undefined
  /** Replicas per component: from 1 to this (default 3). */
  readonly maxReplicas?: number | undefined
  /** Failure rates to try (default 0, 0.01, 0.05 and 0.1). */
  readonly failureRates?: ReadonlyArray<number> | undefined
  /** Yield rates to try (default 0.1, 0.5 and 0.9). */
  readonly yieldRates?: ReadonlyArray<number> | undefined
  /** The first seed (default 1); the search is reproducible from it. */
  readonly seed?: number | undefined
  /**
   * A directory for failing executions (Service Weaver's graveyard, e.g.
   * `testdata/sim/<test>` next to the test): each is saved there, and
   * replayed first on every later search.
   */
  readonly graveyard?: string | undefined
  /**
   * Run the search's executions in worker threads too, as Service Weaver
   * runs them on every core. Each thread imports `module` (a path or `file:`
   * URL, TypeScript or JavaScript: it is bundled first) and runs the
   * workload it exports under `export` (by default, the one exported
   * workload with the same ops and components as `workload`): put the
   * workload in a module of its own, which a test then imports too. The
   * failure reported is still the first in the search's order, whichever
   * thread found it, and it is minimized in this thread.
   *
   * @since 0.2.0
   */
  readonly workers?: WorkerOptions | undefined
}

/**
 * Where the worker threads of a search find the workload, and how many run.
 *
 * @since 0.2.0
 * @category models
 */
export interface WorkerOptions {
  readonly module: string
  readonly export?: string | undefined
  /** Worker threads besides this one (default: one per core beyond the first). */
  readonly count?: number | undefined
}

/**
 * What a search found.
 *
 * @since 0.1.0
 * @category models
 */
export interface SearchResult {
  readonly executions: number
  readonly ops: number
  readonly elapsedMillis: number
  /** The minimized failing execution, if one was found. */
  readonly failing?: Execution | undefined
  /**
   * The options of the failing execution the search found, before it was
   * minimized (the first failing one in the search's order).
   *
   * @since 0.2.0
   */
  readonly found?: Options | undefined
  /**
   * The executions each thread ran, this one first, when the search ran in
   * worker threads.
   *
   * @since 0.2.0
   */
  readonly threads?: ReadonlyArray<number> | undefined
  /** Where it was saved, and whether it came from the graveyard. */
  readonly graveyardFile?: string | undefined
  readonly replayed: boolean
}

const entryName = (options: Options) =>
  `seed${options.seed}-ops${options.ops}-replicas${options.replicas}-fail${options.failureRate}-yield${options.yieldRate}.json`

const readGraveyard = (dir: string): ReadonlyArray<{ readonly file: string; readonly options: Options }> => {
  if (!Fs.existsSync(dir)) return []
  return Fs.readdirSync(dir).filter((f) => f.endsWith(".json")).sort().map((f) => ({
    file: Path.join(dir, f),
    options: JSON.parse(Fs.readFileSync(Path.join(dir, f), "utf8")) as Options
  }))
}

/**
 * The smallest execution found that still fails like `failing`: fewer ops,
 * then fewer replicas, then no failures, each tried over a range of seeds.
 * Service Weaver left minimization for later; this is a search for the
 * smallest failing options, which keeps every candidate reproducible from
 * its own seed.
 *
 * @since 0.1.0
 * @category runtime
 */
export const minimize = (
  workload: Workload,
  failing: Execution,
  options?: { readonly seedsPerStep?: number | undefined }
): Effect.Effect<Execution, WeaverConfig.WeaverConfigError> =>
  Effect.gen(function*() {
    const seeds = options?.seedsPerStep ?? 200
    let best = failing
    const attempt = (candidate: Omit<Options, "seed">) =>
      Effect.gen(function*() {
        for (let seed = 1; seed <= seeds; seed++) {
          const execution = yield* run(workload, { ...candidate, seed })
          if (execution.violation !== undefined) return execution
        }
        return undefined
      })
    const smaller = (a: Execution, b: Execution) =>
      a.options.ops < b.options.ops ||
      (a.options.ops === b.options.ops && a.options.replicas < b.options.replicas) ||
      (a.options.ops === b.options.ops && a.options.replicas === b.options.replicas && a.failures < b.failures)
    for (let ops = 1; ops < best.options.ops; ops++) {
      const found = yield* attempt({ ...best.options, ops })
      if (found !== undefined) {
        best = found
        break
      }
    }
    for (let replicas = 1; replicas < best.options.replicas; replicas++) {
      const found = yield* attempt({ ...best.options, replicas })
      if (found !== undefined && smaller(found, best)) {
        best = found
        break
      }
    }
    if (best.failures > 0) {
      const found = yield* attempt({ ...best.options, failureRate: 0 })
      if (found !== undefined) best = found
    }
    return best
  })

/**
 * Searches for a failing execution: replays the graveyard first, then runs
 * executions with options drawn from the given ranges, seed after seed,
 * until one fails or the budget is spent. A failing execution is minimized
 * and saved to the graveyard.
 *
 * @since 0.1.0
 * @category runtime
 */
export const search = (
  workload: Workload,
  options?: SearchOptions
): Effect.Effect<SearchResult, WeaverConfig.WeaverConfigError> =>
  Effect.gen(function*() {
    const started = performance.now()
    const budget = Duration.toMillis(Duration.decode(options?.budget ?? "2 seconds"))
    let executions = 0
    let ops = 0
    const done = (
      failing: Execution | undefined,
      graveyardFile: string | undefined,
      replayed: boolean,
      found: Options | undefined
    ): SearchResult => ({
      executions,
      ops,
      elapsedMillis: performance.now() - started,
      failing,
      found,
      threads,
      graveyardFile,
      replayed
    })
    let threads: ReadonlyArray<number> | undefined
    if (options?.graveyard !== undefined) {
      for (const entry of readGraveyard(options.graveyard)) {
        const execution = yield* run(workload, entry.options)
        executions++
        ops += entry.options.ops
        if (execution.violation !== undefined) return done(execution, entry.file, true, entry.options)
      }
    }
    let failing: Execution | undefined
    if (options?.workers !== undefined) {
      const deadline = Date.now() + budget - (performance.now() - started)
      const shares = yield* inThreads(run, workload, options, options.workers, deadline)
      executions += shares.executions
      ops += shares.ops
      threads = shares.threads
      if (shares.found !== undefined) {
        failing = yield* run(workload, shares.found)
        if (failing.violation === undefined) {
          return yield* Effect.dieMessage(
            `Sim.search: a worker thread's execution ${JSON.stringify(shares.found)} failed, and the same execution ` +
              `passes in this thread: does ${options.workers.module} export this very workload?`
          )
        }
      }
    } else {
      const candidates = candidatesOf(options)
      while (performance.now() - started < budget) {
        const candidate = candidates.next().value
        const execution = yield* run(workload, candidate)
        executions++
        ops += candidate.ops
        if (execution.violation !== undefined) {
          failing = execution
          break
        }
      }
    }
    if (failing === undefined) return done(undefined, undefined, false, undefined)
    const minimal = yield* minimize(workload, failing)
    let file: string | undefined
    if (options?.graveyard !== undefined) {
      file = Path.join(options.graveyard, entryName(minimal.options))
      Fs.mkdirSync(options.graveyard, { recursive: true })
      Fs.writeFileSync(file, `${JSON.stringify(minimal.options, null, 2)}\n`)
    }
    return done(minimal, file, false, failing.options)
  })

const participant = (name: string) => name.replace(/[^A-Za-z0-9_]/g, "_")

/**
 * An execution's history as a Mermaid sequence diagram (Service Weaver's
 * `Results.Mermaid()`): ops and component replicas as participants, calls,
 * replies and injected failures as messages, the violation as a note.
 *
 * @since 0.1.0
 * @category rendering
 */
export const mermaid = (execution: Execution): string => {
  const names: Array<string> = []
  const seen = new Set<string>()
  const note = (name: string) => {
    if (!seen.has(name)) {
      seen.add(name)
      names.push(name)
    }
  }
  const lines: Array<string> = []
  for (const event of execution.history) {
    switch (event._tag) {
      case "Start":
        note(`op${event.op}`)
        lines.push(`  Note over ${participant(`op${event.op}`)}: ${event.name}(${event.args})`)
        break
      case "Call":
        note(event.from)
        note(event.to)
        lines.push(`  ${participant(event.from)}->>${participant(event.to)}: ${event.method}(${event.payload})`)
        break
      case "Reply":
        lines.push(`  ${participant(event.from)}-->>${participant(event.to)}: ${event.result}`)
        break
      case "Fail":
        lines.push(
          `  ${participant(event.from)}-x${participant(event.to)}: RemoteCallError (injected ${event.when} delivery)`
        )
        break
      case "End":
        lines.push(
          `  Note over ${participant(`op${event.op}`)}: ${event.result === "void" ? "done" : `→ ${event.result}`}`
        )
        break
    }
  }
  const violation = execution.violation
  if (violation !== undefined) {
    const at = violation.op > 0 ? participant(`op${violation.op}`) : participant(names[0] ?? "op1")
    lines.push(`  Note over ${at}: VIOLATION in ${violation.name}: ${violation.error.replace(/[;#]/g, " ")}`)
  }
  return [
    "sequenceDiagram",
    ...names.map((name) => `  participant ${participant(name)} as ${name}`),
    ...lines
  ].join("\n")
}

/**
 * A failing execution as a report: its options (to replay it), its
 * violation and its history as a Mermaid diagram.
 *
 * @since 0.1.0
 * @category rendering
 */
export const report = (execution: Execution): string =>
  [
    `execution ${JSON.stringify(execution.options)} failed in ${execution.violation?.name ?? "?"}: ${
      execution.violation?.error ?? ""
    }`,
    `(${
      execution.history.filter((e) => e._tag === "Start").length
    } ops, ${execution.options.replicas} replicas, ${execution.failures} injected failures)`,
    "```mermaid",
    mermaid(execution),
    "```"
  ].join("\n")
