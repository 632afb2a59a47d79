/**
 * Service Weaver's bank, the example its simulator was shown on: a Bank that keeps balances in a Store. Its
 * `withdraw` checks the balance with one call and debits it with another, so two concurrent withdrawals can both
 * pass the check and overdraw the account. `SafeBank` asks the Store to check and debit in one call.
 */
import { Component, Weaver } from "@effect-weaver/core"
import { Effect, Schema } from "effect"

/**
 * Not enough money for a withdrawal.
 */
export class InsufficientFunds extends Schema.TaggedError<InsufficientFunds>()("InsufficientFunds", {
  user: Schema.String,
  balance: Schema.Number,
  amount: Schema.Number
}) {}

const Account = Schema.Struct({ user: Schema.String, amount: Schema.Number })

/**
 * Balances by user. Calls about a user are routed to one replica (`routeBy`), which holds that user's balance.
 */
export class Store extends Component.Tag("bank/Store")<Store>()({
  get: Component.method({ payload: Schema.String, success: Schema.Number, routeBy: (user) => user }),
  add: Component.method({ payload: Account, success: Schema.Number, retry: false, routeBy: (a) => a.user }),
  withdraw: Component.method({
    payload: Account,
    success: Schema.Number,
    error: InsufficientFunds,
    retry: false,
    routeBy: (a) => a.user
  })
}) {}

export const StoreImpl = Component.implement(
  Store,
  Effect.sync(() => {
    const balances = new Map<string, number>()
    const balance = (user: string) => balances.get(user) ?? 0
    return {
      get: (user) => Effect.sync(() => balance(user)),
      add: ({ amount, user }) => Effect.sync(() => balances.set(user, balance(user) + amount).get(user)!),
      withdraw: ({ amount, user }) =>
        balance(user) < amount
          ? Effect.fail(new InsufficientFunds({ user, balance: balance(user), amount }))
          : Effect.sync(() => balances.set(user, balance(user) - amount).get(user)!)
    }
  })
)

/**
 * The bank's API.
 */
export class Bank extends Component.Tag("bank/Bank")<Bank>()({
  deposit: Component.method({ payload: Account, success: Schema.Number, retry: false }),
  withdraw: Component.method({ payload: Account, success: Schema.Number, error: InsufficientFunds, retry: false }),
  balance: Component.method({ payload: Schema.String, success: Schema.Number })
}) {}

/** The bank with the race: check, then act, in two calls. */
export const BankImpl = Component.implement(
  Bank,
  Effect.map(Store, (store) => ({
    deposit: (account) => store.add(account),
    withdraw: ({ amount, user }) =>
      Effect.gen(function*() {
        const balance = yield* store.get(user)
        if (balance < amount) return yield* new InsufficientFunds({ user, balance, amount })
        return yield* store.add({ user, amount: -amount })
      }),
    balance: (user) => store.get(user)
  }))
)

/** The bank without the race: the Store checks and debits in one call. */
export const SafeBankImpl = Component.implement(
  Bank,
  Effect.map(Store, (store) => ({
    deposit: (account) => store.add(account),
    withdraw: (account) => store.withdraw(account),
    balance: (user) => store.get(user)
  }))
)

export const app = Weaver.app({ components: [BankImpl, StoreImpl] })

export const safeApp = Weaver.app({ components: [SafeBankImpl, StoreImpl] })
