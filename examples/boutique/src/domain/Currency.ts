/**
 * Currency conversion as the demo's currency service does it: rates against
 * the euro from `data/currency_conversion.json` (the European Central Bank's
 * table the demo ships), converted through euros with its carry arithmetic.
 *
 * @since 0.2.0
 */
import table from "../../data/currency_conversion.json" with { type: "json" }
import type { Money } from "./Money.js"

/**
 * Why a conversion cannot be done.
 *
 * @since 0.2.0
 * @category models
 */
export type ConversionProblem =
  | { readonly _tag: "UnsupportedCurrency"; readonly currencyCode: string }
  | { readonly _tag: "InvalidAmount"; readonly amount: Money }

const parseRates = (raw: Readonly<Record<string, string>>): ReadonlyMap<string, number> => {
  const rates = new Map<string, number>()
  for (const [code, text] of Object.entries(raw)) {
    const rate = Number(text)
    if (!/^[A-Z]{3}$/.test(code) || !Number.isFinite(rate) || rate <= 0) {
      throw new Error(`data/currency_conversion.json: bad rate ${JSON.stringify(text)} for ${JSON.stringify(code)}`)
    }
    rates.set(code, rate)
  }
  return rates
}

/**
 * Units of each supported currency per euro.
 *
 * @since 0.2.0
 * @category data
 */
export const rates: ReadonlyMap<string, number> = parseRates(table)

/**
 * The codes of the supported currencies, in the table's order.
 *
 * @since 0.2.0
 * @category data
 */
export const supportedCurrencies: ReadonlyArray<string> = [...rates.keys()]

const carry = (units: number, nanos: number) => {
  const fractionSize = 1_000_000_000
  nanos += (units % 1) * fractionSize
  units = Math.floor(units) + Math.floor(nanos / fractionSize)
  nanos = nanos % fractionSize
  return { units, nanos }
}

/**
 * Converts a non-negative amount to `toCode`: to euros, nanos rounded, then
 * to the target currency, both floored (the demo's `convert`).
 *
 * @since 0.2.0
 * @category conversion
 */
export const convert = (from: Money, toCode: string): Money | ConversionProblem => {
  const fromRate = rates.get(from.currencyCode)
  if (fromRate === undefined) return { _tag: "UnsupportedCurrency", currencyCode: from.currencyCode }
  const toRate = rates.get(toCode)
  if (toRate === undefined) return { _tag: "UnsupportedCurrency", currencyCode: toCode }
  if (
    !Number.isSafeInteger(from.units) || !Number.isInteger(from.nanos) || from.units < 0 || from.nanos < 0 ||
    from.nanos > 999_999_999
  ) return { _tag: "InvalidAmount", amount: from }
  const euros = carry(from.units / fromRate, from.nanos / fromRate)
  const result = carry(euros.units * toRate, Math.round(euros.nanos) * toRate)
  return { currencyCode: toCode, units: Math.floor(result.units), nanos: Math.floor(result.nanos) }
}

/**
 * Whether a {@link convert} result is a problem rather than an amount.
 *
 * @since 0.2.0
 * @category predicates
 */
export const isProblem = (result: Money | ConversionProblem): result is ConversionProblem => "_tag" in result
