/**
 * The currency component.
 *
 * @since 0.2.0
 */
import { Component } from "@effect-weaver/core"
import { Effect, Schema } from "effect"
import * as Conversion from "../domain/Currency.js"
import * as MoneyOps from "../domain/Money.js"
import { Money } from "./Model.js"

/**
 * A conversion from or to a currency the table does not have, or of an
 * amount it cannot convert.
 *
 * @since 0.2.0
 * @category errors
 */
export class UnsupportedCurrency extends Schema.TaggedError<UnsupportedCurrency>()("UnsupportedCurrency", {
  reason: Schema.String
}) {
  override get message() {
    return this.reason
  }
}

/**
 * Supported currencies and conversions between them.
 *
 * @since 0.2.0
 * @category components
 */
export class Currency extends Component.Tag("boutique/Currency")<Currency>()({
  supportedCurrencies: Component.method({ success: Schema.Array(Schema.String) }),
  convert: Component.method({
    payload: Schema.Struct({ from: Money, toCode: Schema.String }),
    success: Money,
    error: UnsupportedCurrency
  })
}) {}

/**
 * @since 0.2.0
 * @category implementations
 */
export const CurrencyImpl = Component.implement(
  Currency,
  Effect.succeed({
    supportedCurrencies: () => Effect.succeed(Conversion.supportedCurrencies),
    convert: ({ from, toCode }) => {
      const result = Conversion.convert(from, toCode)
      if (!Conversion.isProblem(result)) return Effect.succeed(result)
      return Effect.fail(
        new UnsupportedCurrency({
          reason: result._tag === "UnsupportedCurrency"
            ? `unsupported currency code ${JSON.stringify(result.currencyCode)}`
            : `cannot convert ${MoneyOps.format(result.amount)}: only non-negative amounts are converted`
        })
      )
    }
  })
)
