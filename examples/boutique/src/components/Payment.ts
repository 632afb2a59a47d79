/**
 * The payment component.
 *
 * @since 0.2.0
 */
import { Component } from "@effect-weaver/core"
import { Effect, Schema } from "effect"
import * as Pay from "../domain/Payment.js"
import { CreditCard, Money } from "./Model.js"

/**
 * The card number is malformed, fails the Luhn check or is of no known
 * network, or the CVV or expiration date is malformed.
 *
 * @since 0.2.0
 * @category errors
 */
export class InvalidCreditCard extends Schema.TaggedError<InvalidCreditCard>()("InvalidCreditCard", {
  reason: Schema.String
}) {
  override get message() {
    return Pay.describe(this)
  }
}

/**
 * A card of a network other than VISA and MasterCard.
 *
 * @since 0.2.0
 * @category errors
 */
export class UnacceptedCreditCard extends Schema.TaggedError<UnacceptedCreditCard>()("UnacceptedCreditCard", {
  cardType: Schema.String
}) {
  override get message() {
    return Pay.describe(this)
  }
}

/**
 * A card whose expiration month has passed.
 *
 * @since 0.2.0
 * @category errors
 */
export class ExpiredCreditCard extends Schema.TaggedError<ExpiredCreditCard>()("ExpiredCreditCard", {
  lastFour: Schema.String,
  month: Schema.Int,
  year: Schema.Int
}) {
  override get message() {
    return Pay.describe(this)
  }
}

/**
 * Why a card is refused.
 *
 * @since 0.2.0
 * @category errors
 */
export const PaymentError = Schema.Union(InvalidCreditCard, UnacceptedCreditCard, ExpiredCreditCard)

/**
 * Charges credit cards.
 *
 * @since 0.2.0
 * @category components
 */
export class Payment extends Component.Tag("boutique/Payment")<Payment>()({
  charge: Component.method({
    payload: Schema.Struct({ amount: Money, creditCard: CreditCard }),
    success: Schema.String,
    error: PaymentError,
    retry: false
  })
}) {}

/**
 * @since 0.2.0
 * @category implementations
 */
export const PaymentImpl = Component.implement(
  Payment,
  Effect.succeed({
    charge: ({ amount, creditCard }) =>
      Effect.suspend((): Effect.Effect<string, InvalidCreditCard | UnacceptedCreditCard | ExpiredCreditCard> => {
        const result = Pay.charge(amount, creditCard)
        if ("transactionId" in result) return Effect.succeed(result.transactionId)
        switch (result._tag) {
          case "InvalidCreditCard":
            return Effect.fail(new InvalidCreditCard(result))
          case "UnacceptedCreditCard":
            return Effect.fail(new UnacceptedCreditCard(result))
          case "ExpiredCreditCard":
            return Effect.fail(new ExpiredCreditCard(result))
        }
      })
  })
)
