/**
 * The simulator's throughput (weavertest.sim): executions and ops per second on Service Weaver's bank workload
 * (deposit and withdraw ops, each two or three component calls), 3 replicas, 1 % injected failures. Beside it,
 * in the same run, the same ops run directly on the local transport (no scheduler, no replicas): what the
 * simulator's interleaving control costs. Then `Sim.search` as tests run it, in this thread alone and with worker
 * threads (one per core beyond this one), whose start (bundling the workload module, loading it) is counted.
 * Service Weaver published 135k ops/s for its simulator, measured on a many-core machine; this machine has
 * `availableParallelism()` cores. Informational: no target fails the run.
 */
import { WeaverConfig } from "@effect-weaver/core"
import { App } from "@effect-weaver/runtime"
import * as TransportLocal from "@effect-weaver/transport-local"
import * as Sim from "@effect-weaver/weavertest/Sim"
import { Effect } from "effect"
import * as Os from "node:os"
import { safeApp } from "../examples/bank/dist/Bank.js"
import { deposit, withdraw, workload } from "./sim.workload.js"

const SECONDS = 3
// Long enough for the workers' start (bundling and loading the workload module, most of a second) to be paid off.
const SEARCH_SECONDS = 6
const OPS = 10

const simulated = (ops: number) =>
  Effect.gen(function*() {
    const started = performance.now()
    let executions = 0
    while (performance.now() - started < SECONDS * 1000) {
      yield* Sim.run(workload, { seed: executions + 1, ops, replicas: 3, failureRate: 0.01, yieldRate: 0.5 })
      executions++
    }
    const seconds = (performance.now() - started) / 1000
    return { executions: executions / seconds, ops: (executions * ops) / seconds }
  })

const searched = (workers: Sim.WorkerOptions | undefined) =>
  Effect.map(
    Sim.search(workload, { budget: `${SEARCH_SECONDS} seconds`, maxOps: OPS, workers }),
    (result) => ({
      executions: result.executions / (result.elapsedMillis / 1000),
      ops: result.ops / (result.elapsedMillis / 1000)
    })
  )

const direct = Effect.gen(function*() {
  const started = performance.now()
  let batches = 0
  while (performance.now() - started < SECONDS * 1000) {
    yield* Effect.gen(function*() {
      const weavelet = yield* App.makeWeavelet(safeApp, { config: WeaverConfig.empty() })
      yield* Effect.forEach(
        Array.from({ length: OPS }, (_, i) => i % 2 === 0 ? deposit("alice", 10) : withdraw("bob", 5)),
        (op) => op,
        { concurrency: "unbounded", discard: true }
      ).pipe(Effect.provide(weavelet.clients(App.mainName)))
    }).pipe(Effect.provide(TransportLocal.layer), Effect.scoped)
    batches++
  }
  const seconds = (performance.now() - started) / 1000
  return { ops: (batches * OPS) / seconds }
})

const main = Effect.gen(function*() {
  yield* simulated(OPS) // warm-up
  const sim = yield* simulated(OPS)
  const long = yield* simulated(100)
  const baseline = yield* direct
  const alone = yield* searched(undefined)
  const threads = Os.availableParallelism()
  const parallel = yield* searched({ module: new URL("./sim.workload.ts", import.meta.url).href })
  const k = (n: number) => `${(n / 1000).toFixed(1)}k`
  process.stdout.write(
    [
      `simulator on the bank workload: 3 replicas, 1 % failures, ${SECONDS} s per case, ${threads} cores`,
      "",
      `| case | executions/s | ops/s |`,
      `|---|---|---|`,
      `| weavertest.sim, ${OPS} ops per execution | ${sim.executions.toFixed(0)} | ${k(sim.ops)} |`,
      `| weavertest.sim, 100 ops per execution | ${long.executions.toFixed(0)} | ${k(long.ops)} |`,
      `| the same ops, local transport, no scheduler, ${OPS} per weavelet (baseline) | - | ${k(baseline.ops)} |`,
      `| Sim.search (1 to ${OPS} ops, 1 to 3 replicas, ${SEARCH_SECONDS} s), this thread | ${
        alone.executions.toFixed(0)
      } | ${k(alone.ops)} |`,
      `| Sim.search, ${threads} threads (workers) | ${parallel.executions.toFixed(0)} | ${k(parallel.ops)} |`,
      `| Service Weaver's sim (published, many cores) | - | 135k |`,
      "",
      `simulated ops cost ${(baseline.ops / sim.ops).toFixed(2)}× direct ones (informational)`,
      ""
    ].join("\n")
  )
})

Effect.runPromise(main)
