/**
 * The simulator's throughput (weavertest.sim): executions and ops per second on Service Weaver's bank workload
 * (deposit and withdraw ops, each two or three component calls), 3 replicas, 1 % injected failures. Beside it,
 * in the same run, the same ops run directly on the local transport (no scheduler, no replicas): what the
 * simulator's interleaving control costs. Service Weaver published 135k ops/s for its simulator, measured on a
 * many-core machine; this machine has 2 cores. Informational: no target fails the run.
 */
import { WeaverConfig } from "@effect-weaver/core"
import { App } from "@effect-weaver/runtime"
import * as TransportLocal from "@effect-weaver/transport-local"
import * as Sim from "@effect-weaver/weavertest/Sim"
import { Effect, Schema } from "effect"
import { Bank, safeApp } from "../examples/bank/dist/Bank.js"

const User = Schema.Literal("alice", "bob")
const Amount = Schema.Int.pipe(Schema.between(1, 100))
const deposit = (user: "alice" | "bob", amount: number) =>
  Effect.flatMap(Bank, (bank) => bank.deposit({ user, amount }))
const withdraw = (user: "alice" | "bob", amount: number) =>
  Effect.flatMap(
    Bank,
    (bank) => bank.withdraw({ user, amount }).pipe(Effect.ignore, Effect.zipRight(bank.balance(user)))
  )
const workload = Sim.workload({
  app: safeApp,
  ops: { deposit: Sim.op([User, Amount], deposit), withdraw: Sim.op([User, Amount], withdraw) }
})

const SECONDS = 3
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
  const k = (n: number) => `${(n / 1000).toFixed(1)}k`
  process.stdout.write(
    [
      `simulator on the bank workload: 3 replicas, 1 % failures, ${SECONDS} s per case`,
      "",
      `| case | executions/s | ops/s |`,
      `|---|---|---|`,
      `| weavertest.sim, ${OPS} ops per execution | ${sim.executions.toFixed(0)} | ${k(sim.ops)} |`,
      `| weavertest.sim, 100 ops per execution | ${long.executions.toFixed(0)} | ${k(long.ops)} |`,
      `| the same ops, local transport, no scheduler, ${OPS} per weavelet (baseline) | - | ${k(baseline.ops)} |`,
      `| Service Weaver's sim (published, many cores) | - | 135k |`,
      "",
      `simulated ops cost ${(baseline.ops / sim.ops).toFixed(1)}× direct ones (informational)`,
      ""
    ].join("\n")
  )
})

Effect.runPromise(main)
