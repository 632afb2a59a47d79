/**
 * The simulator on Service Weaver's bank: it finds the check-then-act race of `withdraw`, minimizes it to the
 * fewest ops that still overdraw, saves it to the graveyard and replays it first on the next search; the safe
 * bank passes the same search.
 */
import { weavertest } from "@effect-weaver/weavertest"
import { assert, describe, it } from "@effect/vitest"
import { Effect, FastCheck, Schema } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { app, Bank, safeApp } from "../src/Bank.js"

const sim = weavertest.sim
const User = Schema.Literal("alice", "bob")
const Amount = Schema.Int.pipe(Schema.between(1, 100))

class Overdrawn extends Schema.TaggedError<Overdrawn>()("Overdrawn", { user: Schema.String, balance: Schema.Number }) {}

const workloadOf = (application: typeof app) =>
  sim.workload({
    app: application,
    // Each account starts with 100.
    init: Effect.gen(function*() {
      const bank = yield* Bank
      yield* bank.deposit({ user: "alice", amount: 100 })
      yield* bank.deposit({ user: "bob", amount: 100 })
    }),
    ops: {
      deposit: sim.op([User, Amount], (user, amount) => Effect.flatMap(Bank, (bank) => bank.deposit({ user, amount }))),
      withdraw: sim.op([User, Amount], (user, amount) =>
        Effect.gen(function*() {
          const bank = yield* Bank
          yield* bank.withdraw({ user, amount }).pipe(Effect.catchTag("InsufficientFunds", () => Effect.void))
          const balance = yield* bank.balance(user)
          if (balance < 0) return yield* new Overdrawn({ user, balance })
        }))
    }
  })

describe("the simulator on the bank", () => {
  it.live("finds the withdraw race, minimizes it, and replays it from the graveyard", () =>
    Effect.gen(function*() {
      const graveyard = Fs.mkdtempSync(Path.join(Os.tmpdir(), "bank-graveyard-"))
      const found = yield* sim.search(workloadOf(app), { budget: "20 seconds", maxOps: 6, maxReplicas: 3, graveyard })
      assert.isDefined(found.failing, `no failure in ${found.executions} executions`)
      const failing = found.failing!
      console.log(
        `found after ${found.executions} executions (${found.ops} ops) in ${found.elapsedMillis.toFixed(0)} ms`
      )
      console.log(sim.report(failing))
      // The minimum: two withdrawals of one account, interleaved, and nothing else.
      const started = failing.history.filter((e) => e._tag === "Start")
      assert.strictEqual(started.length, 2)
      assert.deepStrictEqual(started.map((e) => e._tag === "Start" && e.name), ["withdraw", "withdraw"])
      assert.strictEqual(failing.options.replicas, 1)
      assert.strictEqual(failing.failures, 0)
      assert.include(failing.violation?.error ?? "", "Overdrawn")
      assert.match(sim.mermaid(failing), /^sequenceDiagram\n/)
      // Saved, and replayed first next time.
      assert.isDefined(found.graveyardFile)
      const again = yield* sim.search(workloadOf(app), { budget: "5 seconds", graveyard })
      assert.isTrue(again.replayed)
      assert.strictEqual(again.executions, 1)
      assert.strictEqual(sim.mermaid(again.failing!), sim.mermaid(failing))
      Fs.rmSync(graveyard, { recursive: true, force: true })
    }), 60_000)

  it.live("finds nothing wrong with the safe bank in the same search", () =>
    Effect.gen(function*() {
      const result = yield* sim.search(workloadOf(safeApp), { budget: "3 seconds", maxOps: 6, maxReplicas: 3 })
      console.log(
        `safe bank: ${result.executions} executions, ${result.ops} ops in ${result.elapsedMillis.toFixed(0)} ms`
      )
      assert.isUndefined(result.failing, result.failing && sim.report(result.failing))
      assert.isAbove(result.executions, 100)
    }), 60_000)

  it("replays an execution exactly: the same seed and options give the same history, byte for byte", () => {
    FastCheck.assert(
      FastCheck.property(
        FastCheck.integer({ min: 1, max: 2 ** 31 - 1 }),
        FastCheck.integer({ min: 1, max: 8 }),
        FastCheck.integer({ min: 1, max: 3 }),
        FastCheck.double({ min: 0, max: 0.3, noNaN: true }),
        FastCheck.double({ min: 0, max: 1, noNaN: true }),
        (seed, ops, replicas, failureRate, yieldRate) => {
          const options = { seed, ops, replicas, failureRate, yieldRate }
          const a = Effect.runSync(sim.run(workloadOf(app), options))
          const b = Effect.runSync(sim.run(workloadOf(app), options))
          assert.strictEqual(sim.mermaid(a), sim.mermaid(b))
          assert.deepStrictEqual(a.history, b.history)
        }
      ),
      { numRuns: 100 }
    )
  })
})
