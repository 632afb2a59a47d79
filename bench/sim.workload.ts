/**
 * The workload of `sim.bench.ts`, in a module of its own so that the worker threads of a parallel search
 * (`Sim.search` with `workers`) can import it: Service Weaver's bank ops (deposit, and withdraw then read the
 * balance), on the bank whose store checks and debits in one call.
 */
import * as Sim from "@effect-weaver/weavertest/Sim"
import { Effect, Schema } from "effect"
import { Bank, safeApp } from "../examples/bank/dist/Bank.js"

const User = Schema.Literal("alice", "bob")
const Amount = Schema.Int.pipe(Schema.between(1, 100))

export const deposit = (user: "alice" | "bob", amount: number) =>
  Effect.flatMap(Bank, (bank) => bank.deposit({ user, amount }))

export const withdraw = (user: "alice" | "bob", amount: number) =>
  Effect.flatMap(
    Bank,
    (bank) => bank.withdraw({ user, amount }).pipe(Effect.ignore, Effect.zipRight(bank.balance(user)))
  )

export const workload = Sim.workload({
  app: safeApp,
  ops: { deposit: Sim.op([User, Amount], deposit), withdraw: Sim.op([User, Amount], withdraw) }
})
