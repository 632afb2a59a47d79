/**
 * Chaos for the weavertest runners: `weavertest.allRunners({ chaos: { rate: 0.05 } })`
 * or `runner.with({ chaos })` wraps the transport of the test's process so
 * that, seeded and at the configured rate, calls are dropped, delayed,
 * duplicated or reordered, and (under Multi) replicas are killed with
 * SIGKILL while the test runs.
 *
 * - **drop**: the call fails with a `RemoteCallError` of reason
 *   `Unreachable` before it is delivered, so the method did not run; the
 *   call pipeline retries it if the method is retriable.
 * - **delay**: the call is delivered after a random delay of up to
 *   `delayMillis`.
 * - **duplicate**: a retriable call is delivered twice, one after the other
 *   (as a call sent again after its reply was lost), and answered with the
 *   second result. Never a method marked `retry: false`: such a call gets a
 *   delay instead, so it never runs twice.
 * - **reorder**: the call is held back until a later call to the same
 *   component has been answered (or `delayMillis` passed), so that later
 *   calls overtake it.
 * - **kill** (runners that start processes): every `everyMillis`, with
 *   `probability`, one replica of a group whose replicas are all ready is
 *   killed with SIGKILL; the deployer restarts it. Kills stop when the test
 *   ends, and never reach the test's process.
 *
 * Each test prints one line with the faults injected, and its body can read
 * them from the {@link Chaos} service.
 *
 * @since 0.1.0
 */
import { Component, ComponentError, Transport } from "@effect-weaver/runtime"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberRef from "effect/FiberRef"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"

/**
 * How often a replica is killed: every `everyMillis` (default 1000), with
 * `probability` (default 0.5), one replica is killed.
 *
 * @since 0.1.0
 * @category models
 */
export interface KillOptions {
  readonly everyMillis?: number | undefined
  readonly probability?: number | undefined
}

/**
 * Options of chaos (the `chaos` option of a runner).
 *
 * - `rate`: the probability that a call gets a fault (0 to 1).
 * - `seed`: the seed of the fault schedule (random by default, and printed).
 *   The same seed gives the same faults to the same sequence of calls.
 * - `kill`: kill replicas, under runners that start processes (Multi).
 * - `delayMillis`: the longest delay of a delayed or reordered call
 *   (default 50).
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly rate: number
  readonly seed?: number | undefined
  readonly kill?: boolean | KillOptions | undefined
  readonly delayMillis?: number | undefined
}

/**
 * The kinds of fault injected into a call.
 *
 * @since 0.1.0
 * @category models
 */
export type FaultKind = "drop" | "delay" | "duplicate" | "reorder"

/**
 * One fault injected into a call: the `index`-th call through the chaos
 * transport, to `component.method`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Fault {
  readonly index: number
  readonly component: string
  readonly method: string
  readonly kind: FaultKind
  /** How long a delayed call waited, or how long a reordered call was held at most. */
  readonly millis: number
}

/**
 * The faults injected so far in a test.
 *
 * @since 0.1.0
 * @category models
 */
export interface Counts {
  /** Calls through the chaos transport (retries included). */
  readonly calls: number
  readonly dropped: number
  readonly delayed: number
  readonly duplicated: number
  readonly reordered: number
  readonly killed: number
}

/**
 * A group of replicas a runner started, as chaos sees it to kill them.
 *
 * @since 0.1.0
 * @category runtime
 */
export interface ReplicaGroup {
  readonly name: string
  readonly replicas: ReadonlyArray<{ readonly pid: number; readonly ready: boolean }>
}

/**
 * The chaos of the running test, in its body's context under every runner:
 * `(yield* Chaos).counts()`. Without chaos, its counts stay at zero.
 *
 * @since 0.1.0
 * @category tags
 */
export class Chaos extends Context.Tag("@effect-weaver/weavertest/Chaos")<Chaos, {
  /** The options in force, with the seed used; undefined without chaos. */
  readonly options: Options | undefined
  readonly counts: () => Counts
  /** Every fault injected into a call, in order. */
  readonly faults: () => ReadonlyArray<Fault>
}>() {}

/**
 * The chaos state of one test: its seeded fault schedule and its counts.
 *
 * @since 0.1.0
 * @category models
 */
export interface State {
  readonly service: Chaos["Type"]
  /** Decides the fault of the next call; undefined for none. */
  readonly next: (call: Transport.Call) => Fault | undefined
  /** Draws a number in [0, 1) from the kill schedule. */
  readonly killRandom: () => number
  readonly killed: () => void
}

/** mulberry32: a small seeded generator of numbers in [0, 1). */
const generator = (seed: number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const kinds: ReadonlyArray<FaultKind> = ["drop", "delay", "duplicate", "reorder"]

/**
 * The state of chaos for one test. Every call draws the same three numbers
 * from the seeded generator, so the schedule depends only on the seed and
 * the order of the calls.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): State => {
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31)
  const resolved: Options = { ...options, seed }
  const delayMillis = Math.max(1, options.delayMillis ?? 50)
  const random = generator(seed)
  const killRandom = generator(seed ^ 0x5bd1e995)
  const faults: Array<Fault> = []
  const counts = { calls: 0, dropped: 0, delayed: 0, duplicated: 0, reordered: 0, killed: 0 }
  const next = (call: Transport.Call): Fault | undefined => {
    const index = counts.calls++
    const hit = random()
    const which = random()
    const millis = 1 + Math.floor(random() * delayMillis)
    if (hit >= options.rate) return undefined
    let kind = kinds[Math.floor(which * kinds.length)]!
    // A method not safe to run twice is never duplicated.
    if (kind === "duplicate" && !call.spec.retry) kind = "delay"
    const fault: Fault = { index, component: call.component, method: call.method, kind, millis }
    faults.push(fault)
    if (kind === "drop") counts.dropped++
    else if (kind === "delay") counts.delayed++
    else if (kind === "duplicate") counts.duplicated++
    else counts.reordered++
    return fault
  }
  return {
    service: { options: resolved, counts: () => ({ ...counts }), faults: () => [...faults] },
    next,
    killRandom,
    killed: () => {
      counts.killed++
    }
  }
}

/**
 * The {@link Chaos} service of a test without chaos.
 *
 * @since 0.1.0
 * @category constructors
 */
export const none: Chaos["Type"] = {
  options: undefined,
  counts: () => ({ calls: 0, dropped: 0, delayed: 0, duplicated: 0, reordered: 0, killed: 0 }),
  faults: () => []
}

const dropped = (call: Transport.Call) =>
  new ComponentError.RemoteCallError({
    component: call.component,
    method: call.method,
    reason: "Unreachable",
    detail: "chaos: call dropped before delivery"
  })

/**
 * A connection whose calls get the faults of `state`. It reports itself as
 * remote, whatever it wraps: the call pipeline then sends every call through
 * it (a co-located call would otherwise skip the transport once the callee is
 * built) and retries dropped calls of retriable methods, as it does for
 * remote calls. For a wrapped co-located connection it enforces the caller's
 * deadline itself, as a remote transport does.
 *
 * @since 0.1.0
 * @category runtime
 */
export const wrapConnection = (state: State, inner: Transport.Connection): Transport.Connection => {
  // Reordered calls waiting for a later call to overtake them.
  const held = new Set<() => void>()
  const releaseHeld = () => {
    if (held.size === 0) return
    const waiting = [...held]
    held.clear()
    for (const release of waiting) release()
  }
  const hold = (millis: number, then: () => void) => {
    const release = () => {
      clearTimeout(timer)
      held.delete(release)
      then()
    }
    const timer = setTimeout(release, millis)
    held.add(release)
    return () => {
      clearTimeout(timer)
      held.delete(release)
    }
  }
  const deliver = (call: Transport.Call, payload: unknown) =>
    Effect.ensuring(inner.invoke(call, payload), Effect.sync(releaseHeld))
  const faulty = (call: Transport.Call, payload: unknown): Effect.Effect<unknown, unknown> =>
    Effect.suspend(() => {
      const fault = state.next(call)
      if (fault === undefined) return deliver(call, payload)
      switch (fault.kind) {
        case "drop":
          return Effect.fail(dropped(call))
        case "delay":
          return Effect.zipRight(Effect.sleep(fault.millis), deliver(call, payload))
        case "duplicate":
          return Effect.zipRight(Effect.exit(deliver(call, payload)), deliver(call, payload))
        case "reorder":
          return Effect.zipRight(
            Effect.async<void>((resume) => Effect.sync(hold(fault.millis, () => resume(Effect.void)))),
            deliver(call, payload)
          )
      }
    })
  const underDeadline = (call: Transport.Call, effect: Effect.Effect<unknown, unknown>) =>
    Effect.flatMap(
      FiberRef.get(Component.currentDeadline),
      (deadline) =>
        deadline === undefined ? effect : Effect.timeoutFail(effect, {
          duration: Math.max(0, deadline - Date.now()),
          onTimeout: () =>
            new ComponentError.RemoteCallError({
              component: call.component,
              method: call.method,
              reason: "Timeout",
              detail: "deadline exceeded"
            })
        })
    )
  const send = inner.send
  const stream = inner.stream
  /** A stream gets the call's fault when it is opened: dropped, or delayed (duplicating or reordering a whole stream means nothing). */
  const faultyStream = (call: Transport.Call, payload: unknown, open: NonNullable<Transport.Connection["stream"]>) =>
    Stream.suspend(() => {
      const fault = state.next(call)
      if (fault === undefined || fault.kind === "duplicate") return open(call, payload)
      if (fault.kind === "drop") return Stream.fail(dropped(call))
      return Stream.unwrap(Effect.as(Effect.sleep(fault.millis), open(call, payload)))
    })
  return {
    stream: stream === undefined ? undefined : (call, payload) => faultyStream(call, payload, stream),
    remote: true,
    invoke: inner.remote ? faulty : (call, payload) => underDeadline(call, faulty(call, payload)),
    send: send === undefined ? undefined : (call, payload, caller, done) => {
      const to = (answer: (exit: Exit.Exit<unknown, unknown>) => void) =>
        send(call, payload, caller, (exit) => {
          releaseHeld()
          answer(exit)
        })
      // A caller interrupted while its call waited gets no answer, and its call is not sent.
      const later = () => {
        if (caller.unsafePoll() === null) to(done)
      }
      const fault = state.next(call)
      if (fault === undefined) return to(done)
      switch (fault.kind) {
        case "drop":
          return done(Exit.fail(dropped(call)))
        case "delay":
          setTimeout(later, fault.millis)
          return
        case "reorder":
          hold(fault.millis, later)
          return
        case "duplicate":
          // One after the other: a transport's `send` serves one call at a time per caller fiber.
          return to(later)
      }
    }
  }
}

/**
 * The transport `inner` with the faults of `state` on every connection.
 *
 * @since 0.1.0
 * @category runtime
 */
export const wrap = (state: State, inner: Transport.Transport["Type"]): Transport.Transport["Type"] => ({
  name: `chaos(${inner.name})`,
  connect: (component) => Effect.map(inner.connect(component), (connection) => wrapConnection(state, connection))
})

/**
 * The transport Layer `inner` with the faults of `state`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <E, R>(
  state: State,
  inner: Layer.Layer<Transport.Transport, E, R>
): Layer.Layer<Transport.Transport, E, R> =>
  Layer.effect(Transport.Transport, Effect.map(Transport.Transport, (transport) => wrap(state, transport))).pipe(
    Layer.provide(inner)
  )

/**
 * Kills replicas of `groups` until interrupted (the runner forks it in the
 * test's scope): every `everyMillis`, with `probability`, one replica of a
 * group whose replicas (two or more) are all ready, with SIGKILL. A group is
 * hit at most 4 times per test, below the deployer's restart limit (5
 * crashes of a replica within a minute); the test's own process is never
 * signalled.
 *
 * @since 0.1.0
 * @category runtime
 */
export const killReplicas = (
  state: State,
  groups: Effect.Effect<ReadonlyArray<ReplicaGroup>>
): Effect.Effect<never, never, Scope.Scope> => {
  const kill = state.service.options?.kill
  const every = typeof kill === "object" ? kill.everyMillis ?? 1000 : 1000
  const probability = typeof kill === "object" ? kill.probability ?? 0.5 : 0.5
  const hits = new Map<string, number>()
  const tick = Effect.flatMap(groups, (list) =>
    Effect.sync(() => {
      if (state.killRandom() >= probability) return
      const candidates = list.filter((group) =>
        group.replicas.length >= 2 && group.replicas.every((replica) => replica.ready) &&
        (hits.get(group.name) ?? 0) < 4 &&
        group.replicas.every((replica) => replica.pid > 1 && replica.pid !== process.pid)
      )
      if (candidates.length === 0) return
      const group = candidates[Math.floor(state.killRandom() * candidates.length)]!
      const replica = group.replicas[Math.floor(state.killRandom() * group.replicas.length)]!
      if (signal(replica.pid)) {
        hits.set(group.name, (hits.get(group.name) ?? 0) + 1)
        state.killed()
      }
    }))
  return Effect.forever(Effect.zipRight(Effect.sleep(every), tick))
}

/** SIGKILL to one process; false if it is already gone. */
const signal = (pid: number): boolean => {
  try {
    process.kill(pid, "SIGKILL")
    return true
  } catch {
    return false
  }
}

/**
 * The line a test prints: `chaos [Multi/reverses] seed 7: 12 dropped, …`.
 *
 * @since 0.1.0
 * @category formatting
 */
export const summary = (test: string, service: Chaos["Type"]): string => {
  const c = service.counts()
  return `chaos [${test}] seed ${service.options?.seed}: ${c.dropped} dropped, ${c.delayed} delayed, ` +
    `${c.duplicated} duplicated, ${c.reordered} reordered, ${c.killed} replicas killed (${c.calls} calls)`
}

/**
 * Chaos options from the `WEAVERTEST_CHAOS` environment variable, which
 * gives chaos to every runner whose options do not set `chaos`: a rate
 * (`0.05`) or a comma-separated list such as `rate=0.05,seed=7,kill,delayMillis=20`
 * (`killEveryMillis=500` and `killProbability=1` set the kills' {@link KillOptions}).
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromEnv = (text: string | undefined): Options | undefined => {
  if (text === undefined || text.trim() === "") return undefined
  const entries = new Map(
    text.split(",").map((part) => {
      const [key, value] = part.split("=").map((s) => s.trim())
      return value === undefined && !Number.isNaN(Number(key)) ? ["rate", key!] : [key!, value ?? "true"]
    })
  )
  const number = (key: string) => entries.has(key) ? Number(entries.get(key)) : undefined
  const kill = entries.get("kill")
  return {
    rate: number("rate") ?? 0.05,
    seed: number("seed"),
    delayMillis: number("delayMillis"),
    kill: kill === undefined || kill === "false"
      ? false
      : { everyMillis: number("killEveryMillis"), probability: number("killProbability") }
  }
}
