/**
 * A simulator's search in threads (`Sim.search` with `workers`): the order of
 * a search's candidates, the share of them a thread runs, the messages
 * between the search's thread and its worker threads, and the search's side
 * of them.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { PCGRandom } from "effect/Utils"
import * as Os from "node:os"
import * as WorkerThreads from "node:worker_threads"
import type { Execution, Options, SearchOptions, WorkerOptions, Workload } from "../Sim.js"
import * as AppBundle from "./appBundle.js"

/**
 * Runs one execution (`Sim.run`, passed in: this module is below it).
 *
 * @internal
 */
export type Run = (workload: Workload, options: Options) => Effect.Effect<Execution, unknown>

/**
 * What of the search options orders a search's candidates: what its threads are told.
 *
 * @internal
 */
export type Order = Pick<SearchOptions, "seed" | "maxOps" | "maxReplicas" | "failureRates" | "yieldRates">

/**
 * The options of a search's executions, in order: the same sequence in
 * every thread that runs a share of them.
 *
 * @internal
 */
export const candidatesOf = function*(order: Order | undefined): Generator<Options, never> {
  const maxOps = order?.maxOps ?? 5
  const maxReplicas = order?.maxReplicas ?? 3
  const failureRates = order?.failureRates ?? [0, 0.01, 0.05, 0.1]
  const yieldRates = order?.yieldRates ?? [0.1, 0.5, 0.9]
  const picker = new PCGRandom(order?.seed ?? 1)
  for (let seed = order?.seed ?? 1;; seed++) {
    yield {
      seed,
      ops: 1 + picker.integer(maxOps),
      replicas: 1 + picker.integer(maxReplicas),
      failureRate: failureRates[picker.integer(failureRates.length)]!,
      yieldRate: yieldRates[picker.integer(yieldRates.length)]!
    }
  }
}

/**
 * What one thread runs of a search: chunks of its candidates (by index in
 * the search's order), handed out in order by the search's thread, in slices
 * of a few milliseconds between which the thread handles its messages. The
 * limit is the index of the first failing candidate known: every chunk is run
 * up to it, so that the failure a search reports is the first in its order,
 * whichever thread found it.
 *
 * @internal
 */
export class Share {
  executions = 0
  ops = 0
  private limit = Infinity
  private next = 0
  private end = 0
  private readonly candidates: Generator<Options, never>
  constructor(
    private readonly execute: Run,
    private readonly workload: Workload,
    order: Order | undefined,
    /** `Date.now()` at which no new execution starts. */
    private readonly deadline: number,
    private readonly on: {
      readonly found: (index: number, options: Options) => void
      /** The chunk is done (or the deadline or the limit reached): the thread may take another. */
      readonly idle: () => void
      readonly error: (reason: string) => void
    }
  ) {
    this.candidates = candidatesOf(order)
  }
  /** A failing candidate is known at `index`: nothing at or after it needs running. */
  lower(index: number): void {
    this.limit = Math.min(this.limit, index)
  }
  /** Runs the candidates from `from` (on from the last chunk's) to `to`, then tells `idle`. */
  chunk(from: number, to: number): void {
    for (; this.next < from; this.next++) this.candidates.next()
    this.end = to
    this.step()
  }
  private readonly step = (): void => {
    const until = performance.now() + 10
    for (;;) {
      if (this.next >= Math.min(this.end, this.limit) || Date.now() >= this.deadline) return this.on.idle()
      const candidate = this.candidates.next().value
      const index = this.next++
      const exit = Effect.runSyncExit(this.execute(this.workload, candidate))
      if (Exit.isFailure(exit)) return this.on.error(Cause.pretty(exit.cause))
      this.executions++
      this.ops += candidate.ops
      if (exit.value.violation !== undefined) {
        this.lower(index)
        this.on.found(index, candidate)
      }
      if (performance.now() >= until) break
    }
    setImmediate(this.step)
  }
}

/**
 * What a worker thread of a search is told.
 *
 * @internal
 */
export interface WorkerData {
  readonly weaverSim: true
  readonly moduleUrl: string
  readonly export: string | undefined
  /** The op and component names of the workload, to find it among the module's exports. */
  readonly shape: string
  readonly order: Order
  readonly deadline: number
}

/**
 * Messages between a search and its worker threads.
 *
 * @internal
 */
export type WorkerMessage =
  // From a worker thread: a failing candidate, a chunk done (with the thread's totals), or why it cannot go on.
  | { readonly t: "found"; readonly index: number; readonly options: Options }
  | { readonly t: "ran"; readonly executions: number; readonly ops: number }
  | { readonly t: "error"; readonly reason: string }
  // To a worker thread: the next chunk, or a failure known at `index`.
  | { readonly t: "chunk"; readonly from: number; readonly to: number }
  | { readonly t: "limit"; readonly index: number }

/**
 * Names a workload by its ops and components, to find it among a module's exports.
 *
 * @internal
 */
export const shapeOf = (workload: Workload): string =>
  `ops ${Object.keys(workload.ops).sort().join(", ")}; components ${
    workload.app.implementations.map((impl) => impl.component.componentName).sort().join(", ")
  }`

/** Candidates handed to a thread at a time: some tens of milliseconds of executions. */
const chunkSize = 64

/**
 * This thread and the worker threads run chunks of the candidates until the
 * deadline or the first failure: the first failing candidate of them all.
 *
 * @internal
 */
export const inThreads = (run: Run, workload: Workload, order: Order, workers: WorkerOptions, deadline: number) =>
  Effect.async<{
    readonly executions: number
    readonly ops: number
    readonly threads: ReadonlyArray<number>
    readonly found: Options | undefined
  }>(
    (resume) => {
      const count = Math.max(0, workers.count ?? Os.availableParallelism() - 1)
      const threads: Array<WorkerThreads.Worker> = []
      const totals: Array<{ executions: number; ops: number; busy: boolean }> = []
      let first: { readonly index: number; readonly options: Options } | undefined
      let handed = 0
      let localBusy = true
      // Whether the workers are started, or will not be (nothing was left to run when they could have been).
      let spawned = count === 0
      let finished = false
      const finish = (effect: Effect.Effect<any>) => {
        if (finished) return
        finished = true
        for (const thread of threads) void thread.terminate()
        resume(effect)
      }
      const failed = (reason: string) => finish(Effect.dieMessage(`Sim.search: ${reason}`))
      const take = (): readonly [number, number] | undefined => {
        if (handed >= (first?.index ?? Infinity) || Date.now() >= deadline) return undefined
        handed += chunkSize
        return [handed - chunkSize, handed]
      }
      const settle = () => {
        if (finished || !spawned || localBusy || totals.some((total) => total.busy)) return
        finish(Effect.succeed({
          executions: local.executions + totals.reduce((n, total) => n + total.executions, 0),
          ops: local.ops + totals.reduce((n, total) => n + total.ops, 0),
          threads: [local.executions, ...totals.map((total) => total.executions)],
          found: first?.options
        }))
      }
      const found = (index: number, options: Options) => {
        if (first !== undefined && first.index <= index) return
        first = { index, options }
        local.lower(index)
        for (const thread of threads) thread.postMessage({ t: "limit", index } satisfies WorkerMessage)
      }
      const local: Share = new Share(run, workload, order, deadline, {
        found,
        idle: () => {
          const chunk = take()
          if (chunk !== undefined) return local.chunk(chunk[0], chunk[1])
          localBusy = false
          settle()
        },
        error: failed
      })
      const spawn = (moduleUrl: string) => {
        if (finished) return
        // Started even if nothing is left to run: each checks that the module exports the workload first.
        spawned = true
        for (let i = 1; i <= count; i++) {
          const total = { executions: 0, ops: 0, busy: true }
          totals.push(total)
          const data: WorkerData = {
            weaverSim: true,
            moduleUrl,
            export: workers.export,
            shape: shapeOf(workload),
            order: {
              seed: order.seed,
              maxOps: order.maxOps,
              maxReplicas: order.maxReplicas,
              failureRates: order.failureRates,
              yieldRates: order.yieldRates
            },
            deadline
          }
          const thread = new WorkerThreads.Worker(new URL(moduleUrl), { workerData: data })
          threads.push(thread)
          const next = () => {
            const chunk = take()
            if (chunk !== undefined) return thread.postMessage({ t: "chunk", from: chunk[0], to: chunk[1] })
            total.busy = false
            settle()
          }
          thread.on("message", (message: WorkerMessage) => {
            switch (message.t) {
              case "found":
                return found(message.index, message.options)
              case "ran":
                total.executions = message.executions
                total.ops = message.ops
                return next()
              case "error":
                return failed(`worker thread ${i} (${workers.module}): ${message.reason}`)
            }
          })
          thread.on("error", (error) => failed(`worker thread ${i} (${workers.module}) failed: ${String(error)}`))
          thread.on("exit", (code) => {
            if (total.busy) failed(`worker thread ${i} (${workers.module}) exited with code ${code} before it was done`)
          })
        }
      }
      // This thread runs chunks at once; the workers join once the workload module is bundled (esbuild runs in a
      // process of its own meanwhile) and they have loaded it, which takes a good part of a second.
      local.chunk(...take()!)
      if (!spawned) {
        AppBundle.make(workers.module, "sim").pipe(Effect.runPromise).then(
          (bundle) => spawn(bundle.moduleUrl),
          (error) => failed(String(error))
        )
      }
      return Effect.sync(() => finish(Effect.void as Effect.Effect<any>))
    }
  )
