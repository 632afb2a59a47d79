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
 * execution exactly, event for event.
 *
 * {@link search} sweeps seeds and options within a time budget; a failing
 * execution is minimized (fewest ops, replicas and failures that still
 * fail), saved to a graveyard file, and replayed first on every later
 * search. {@link mermaid} draws its history as a sequence diagram.
 *
 * Ops must talk to the app only through component calls and do no real I/O
 * or sleeping: what they await must be a call, or the execution cannot be
 * driven (it is then reported as stuck).
 *
 * @since 0.1.0
 */
import { RemoteCallError, type Weaver, WeaverConfig } from "@effect-weaver/core"
import { App, Transport, Weavelet } from "@effect-weaver/runtime"
import * as Arbitrary from "effect/Arbitrary"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FastCheck from "effect/FastCheck"
import type * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as FiberRefs from "effect/FiberRefs"
import type * as Scheduler from "effect/Scheduler"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import { PCGRandom } from "effect/Utils"
import * as Fs from "node:fs"
import * as Path from "node:path"

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
    tasks.length = 0
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
    readonly payload: unknown
    /** Resumed with the replica the call is delivered to, or with an injected failure. */
    readonly resume: (exit: Exit.Exit<number, unknown>) => void
  }
  | {
    readonly _tag: "Reply"
    readonly op: number
    readonly id: number
    readonly from: string
    readonly to: string
    readonly call: Transport.Call
    readonly exit: Exit.Exit<unknown, unknown>
    readonly resume: (exit: Exit.Exit<unknown, unknown>) => void
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

const injected = (call: Transport.Call, when: "before" | "after") =>
  Exit.fail(
    new RemoteCallError({
      component: call.component,
      method: call.method,
      reason: "Unreachable",
      detail: when === "before"
        ? "failure injected by the simulator before delivery"
        : "failure injected by the simulator after the method ran"
    })
  )

const describe = (cause: Cause.Cause<unknown>): string => {
  const error = Cause.squash(cause)
  if (error instanceof Error) {
    const tag = (error as { readonly _tag?: unknown })._tag
    return `${typeof tag === "string" ? tag : error.name}: ${error.message}`
  }
  return show(error)
}

/**
 * A handler's defect, as a remote transport delivers it: a `RemoteCallError`
 * with reason `Handler` (the conformance suite's rule).
 */
const asDelivered = (call: Transport.Call, exit: Exit.Exit<unknown, unknown>): Exit.Exit<unknown, unknown> =>
  Exit.isFailure(exit) && !Cause.isFailType(exit.cause) && !Cause.isInterruptedOnly(exit.cause)
    ? Exit.fail(
      new RemoteCallError({
        component: call.component,
        method: call.method,
        reason: "Handler",
        detail: describe(exit.cause)
      })
    )
    : exit

/**
 * Runs one execution.
 *
 * @since 0.1.0
 * @category runtime
 */
export const run = (workload: Workload, options: Options): Effect.Effect<Execution, WeaverConfig.WeaverConfigError> =>
  Effect.gen(function*() {
    const rng = new PCGRandom(options.seed)
    const { drain, scheduler } = makeScheduler()
    const pending: Array<Pending> = []
    const history: Array<Event> = []
    let failures = 0
    let nextId = 0
    let violation: Execution["violation"] = undefined

    // Replicas: one weavelet each, hosting every component, over a transport that hands every call to the
    // scheduler. A handler runs on the replica the scheduler picks, through that replica's local connection.
    const weavelets: Array<Weavelet.Weavelet["Type"]> = []
    const replicaOf = new Map<Weavelet.Weavelet["Type"], number>()
    // Each replica's handlers of a component, once built (what `Weavelet.localConnection` keeps, without an Effect
    // run per connection: executions make these by the thousand).
    const built = new Map<string, Weavelet.AnyHandlers>()
    const handle = (call: Transport.Call, replica: number, payload: unknown): Effect.Effect<unknown, unknown> => {
      const key = `${replica}\u0000${call.component}`
      const handlers = built.get(key)
      if (handlers !== undefined) return handlers[call.method]!(payload)
      return Effect.flatMap(weavelets[replica]!.handlers(call.component), (h) => {
        built.set(key, h)
        return h[call.method]!(payload)
      })
    }
    const transport: Transport.Transport["Type"] = {
      name: "sim",
      connect: () =>
        Effect.map(Weavelet.Weavelet, (weavelet) => {
          const replica = replicaOf.get(weavelet) ?? 0
          return {
            // Remote: the call pipeline treats a local connection's handler as its own and may run it directly.
            remote: true,
            // The handler runs in the caller's fiber, between two suspensions the scheduler ends: delivery of the
            // call (to the replica it picks) and delivery of the reply. No fiber per call: executions stay cheap.
            invoke: (call, payload) =>
              Effect.flatMap(CurrentOp, (op) => {
                const id = nextId++
                // The ops play main on replica 0; main's calls are theirs.
                const from = call.caller === App.mainName && op > 0 ? `op${op}` : `${call.caller}#${replica}`
                return Effect.async<number, unknown>((resume) => {
                  pending.push({ _tag: "Call", op, id, from, call, payload, resume })
                }).pipe(
                  Effect.flatMap((target) =>
                    Effect.flatMap(
                      Effect.exit(handle(call, target, payload)),
                      (exit) =>
                        Effect.async<unknown, unknown>((resume) => {
                          pending.push({
                            _tag: "Reply",
                            op,
                            id,
                            from: `${call.component}#${target}`,
                            to: from,
                            call,
                            exit: asDelivered(call, exit),
                            resume
                          })
                        })
                    )
                  )
                )
              })
          }
        })
    }
    const config = workload.config === undefined
      ? WeaverConfig.empty("<sim config>")
      : yield* WeaverConfig.parse(workload.config, "<sim config>")
    const scope = yield* Scope.make()
    for (let r = 0; r < options.replicas; r++) {
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
    const driver = weavelets[0]!
    const clients = driver.clients(App.mainName)
    // Every op's fiber starts with the driver's clients in its context: set once, not provided per op.
    const context = Context.add(clients, Weavelet.Weavelet, driver)
    const start = <A, E>(effect: Effect.Effect<A, E, any>, op: number) =>
      Effect.runFork(effect as Effect.Effect<A, E>, {
        scheduler,
        updateRefs: (refs, id) =>
          FiberRefs.updateAs(refs, {
            fiberId: id,
            fiberRef: FiberRef.currentContext,
            value: Context.add(context, CurrentOp, op)
          })
      })
    const watch = (fiber: Fiber.RuntimeFiber<unknown, unknown>, op: number, name: string) =>
      fiber.addObserver((exit) => {
        if (op > 0) history.push({ _tag: "End", op, result: showExit(exit) })
        if (violation === undefined && Exit.isFailure(exit) && !isRemoteCallError(exit)) {
          violation = { op, name, error: describe(exit.cause) }
        }
      })

    // The ops of this execution and their arguments, drawn up front from the seed.
    const opNames = Object.keys(workload.ops).sort()
    const random = new FastCheck.Random(new SeededSource(new PCGRandom(options.seed)) as any)
    const planned = Array.from({ length: options.ops }, () => {
      const name = opNames[rng.integer(opNames.length)]!
      const spec = workload.ops[name]!
      const args = spec.args.length === 0 ? [] : argumentsArbitrary(spec).generate(random, undefined).value
      return { name, spec, args }
    })

    const deliver = (event: Pending, faults: boolean) => {
      switch (event._tag) {
        case "Start": {
          const { args, name, spec } = planned[event.op - 1]!
          history.push({ _tag: "Start", op: event.op, name, args: args.map(show).join(", ") })
          const fiber = start(spec.run(...args), event.op)
          watch(fiber, event.op, name)
          ops.push(fiber)
          return
        }
        case "Call": {
          const route = event.call.spec.routeBy
          const replica = route !== undefined
            ? stringHash(String(route(event.payload))) % options.replicas
            : faults
            ? rng.integer(options.replicas)
            : 0
          const to = `${event.call.component}#${replica}`
          history.push({
            _tag: "Call",
            op: event.op,
            id: event.id,
            from: event.from,
            to,
            method: event.call.method,
            payload: show(event.payload)
          })
          if (faults && options.failureRate > 0 && rng.number() < options.failureRate / 2) {
            failures++
            history.push({ _tag: "Fail", op: event.op, id: event.id, from: event.from, to, when: "before" })
            return event.resume(injected(event.call, "before"))
          }
          return event.resume(Exit.succeed(replica))
        }
        case "Reply": {
          if (faults && options.failureRate > 0 && rng.number() < options.failureRate / 2) {
            failures++
            history.push({ _tag: "Fail", op: event.op, id: event.id, from: event.from, to: event.to, when: "after" })
            return event.resume(injected(event.call, "after"))
          }
          history.push({
            _tag: "Reply",
            op: event.op,
            id: event.id,
            from: event.from,
            to: event.to,
            result: showExit(event.exit)
          })
          return event.resume(event.exit)
        }
      }
    }

    // Delivers pending events until none is left (or a violation): in order and without faults for the init and
    // the check, in the seeded order with faults for the ops.
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
        const [event] = pending.splice(index, 1)
        deliver(event!, random)
        drain()
      }
    }
    const ops: Array<Fiber.RuntimeFiber<unknown, unknown>> = []
    const phase = (effect: Effect.Effect<unknown, unknown, any> | undefined, name: string) => {
      if (effect === undefined || violation !== undefined) return
      const fiber = start(effect, 0)
      watch(fiber, 0, name)
      ops.push(fiber)
      runPhase(false)
    }
    phase(workload.init, "init")
    if (violation === undefined) {
      for (let op = 1; op <= options.ops; op++) pending.push({ _tag: "Start", op })
      runPhase(true)
    }
    if (violation === undefined) {
      const stuck = ops.findIndex((fiber) => fiber.unsafePoll() === null)
      if (stuck >= 0) {
        violation = {
          op: stuck,
          name: "stuck",
          error: "an op waits for something other than a component call (real I/O, a sleep, a lock never released)"
        }
      }
    }
    phase(workload.check, "check")
    for (const fiber of ops) if (fiber.unsafePoll() === null) fiber.unsafeInterruptAsFork(fiber.id())
    drain()
    yield* Scope.close(scope, Exit.void)
    return { options, history, failures, violation } satisfies Execution
  })

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
    const done = (failing: Execution | undefined, graveyardFile: string | undefined, replayed: boolean) => ({
      executions,
      ops,
      elapsedMillis: performance.now() - started,
      failing,
      graveyardFile,
      replayed
    })
    if (options?.graveyard !== undefined) {
      for (const entry of readGraveyard(options.graveyard)) {
        const execution = yield* run(workload, entry.options)
        executions++
        ops += entry.options.ops
        if (execution.violation !== undefined) return done(execution, entry.file, true)
      }
    }
    const maxOps = options?.maxOps ?? 5
    const maxReplicas = options?.maxReplicas ?? 3
    const failureRates = options?.failureRates ?? [0, 0.01, 0.05, 0.1]
    const yieldRates = options?.yieldRates ?? [0.1, 0.5, 0.9]
    const picker = new PCGRandom(options?.seed ?? 1)
    for (let seed = options?.seed ?? 1; performance.now() - started < budget; seed++) {
      const candidate: Options = {
        seed,
        ops: 1 + picker.integer(maxOps),
        replicas: 1 + picker.integer(maxReplicas),
        failureRate: failureRates[picker.integer(failureRates.length)]!,
        yieldRate: yieldRates[picker.integer(yieldRates.length)]!
      }
      const execution = yield* run(workload, candidate)
      executions++
      ops += candidate.ops
      if (execution.violation === undefined) continue
      const minimal = yield* minimize(workload, execution)
      let file: string | undefined
      if (options?.graveyard !== undefined) {
        file = Path.join(options.graveyard, entryName(minimal.options))
        Fs.mkdirSync(options.graveyard, { recursive: true })
        Fs.writeFileSync(file, `${JSON.stringify(minimal.options, null, 2)}\n`)
      }
      return done(minimal, file, false)
    }
    return done(undefined, undefined, false)
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
