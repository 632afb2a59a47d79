/**
 * Card payments as the demo's payment service takes them: the number must
 * pass the Luhn check and be a VISA or MasterCard, the card must not have
 * expired; the charge itself is pretend and yields a transaction id.
 *
 * @since 0.2.0
 */
import * as Crypto from "node:crypto"
import type { Money } from "./Money.js"

/**
 * A credit card, with the demo's field names.
 *
 * @since 0.2.0
 * @category models
 */
export interface CreditCard {
  readonly creditCardNumber: string
  readonly creditCardCvv: number
  readonly creditCardExpirationYear: number
  readonly creditCardExpirationMonth: number
}

/**
 * Why a card is refused.
 *
 * @since 0.2.0
 * @category models
 */
export type CardProblem =
  | { readonly _tag: "InvalidCreditCard"; readonly reason: string }
  | { readonly _tag: "UnacceptedCreditCard"; readonly cardType: string }
  | { readonly _tag: "ExpiredCreditCard"; readonly lastFour: string; readonly month: number; readonly year: number }

const cardTypes: ReadonlyArray<
  { readonly name: string; readonly prefix: RegExp; readonly lengths: ReadonlyArray<number> }
> = [
  { name: "visa", prefix: /^4/, lengths: [13, 16, 19] },
  { name: "mastercard", prefix: /^(5[1-5]|222[1-9]|22[3-9]\d|2[3-6]\d\d|27[01]\d|2720)/, lengths: [16] },
  { name: "amex", prefix: /^3[47]/, lengths: [15] },
  { name: "dinersclub", prefix: /^3(0[0-5]|[68])/, lengths: [14] },
  { name: "discover", prefix: /^(6011|65|64[4-9])/, lengths: [16, 19] },
  { name: "jcb", prefix: /^35(2[89]|[3-8]\d)/, lengths: [16] }
]

/**
 * The card network of a number (digits only), if it is one of the known.
 *
 * @since 0.2.0
 * @category validation
 */
export const cardType = (digits: string): string | undefined =>
  cardTypes.find((t) => t.prefix.test(digits) && t.lengths.includes(digits.length))?.name

/**
 * Whether a number (digits only) passes the Luhn checksum.
 *
 * @since 0.2.0
 * @category validation
 */
export const luhn = (digits: string): boolean => {
  let total = 0
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48
    if (i % 2 === 1) {
      d *= 2
      if (d > 9) d -= 9
    }
    total += d
  }
  return digits.length > 0 && total % 10 === 0
}

/**
 * Why `card` cannot be charged at `now`, or `undefined` if it can.
 *
 * @since 0.2.0
 * @category validation
 */
export const validate = (card: CreditCard, now: Date): CardProblem | undefined => {
  const digits = card.creditCardNumber.replace(/[\s-]/g, "")
  if (!/^\d{12,19}$/.test(digits)) return { _tag: "InvalidCreditCard", reason: "the number is not 12 to 19 digits" }
  if (!luhn(digits)) return { _tag: "InvalidCreditCard", reason: "the number fails the Luhn check" }
  const type = cardType(digits)
  if (type === undefined) return { _tag: "InvalidCreditCard", reason: "the number is of no known card network" }
  if (type !== "visa" && type !== "mastercard") return { _tag: "UnacceptedCreditCard", cardType: type }
  const { creditCardCvv: cvv, creditCardExpirationMonth: month, creditCardExpirationYear: year } = card
  if (!Number.isInteger(cvv) || cvv < 100 || cvv > 9999) {
    return { _tag: "InvalidCreditCard", reason: "the CVV is not 3 or 4 digits" }
  }
  if (!Number.isInteger(month) || month < 1 || month > 12 || !Number.isInteger(year)) {
    return { _tag: "InvalidCreditCard", reason: `the expiration date ${month}/${year} is not a month and a year` }
  }
  if (now.getFullYear() * 12 + now.getMonth() + 1 > year * 12 + month) {
    return { _tag: "ExpiredCreditCard", lastFour: digits.slice(-4), month, year }
  }
  return undefined
}

/**
 * A problem as the sentence a customer reads.
 *
 * @since 0.2.0
 * @category formatting
 */
export const describe = (problem: CardProblem): string => {
  switch (problem._tag) {
    case "InvalidCreditCard":
      return `credit card info is invalid: ${problem.reason}`
    case "UnacceptedCreditCard":
      return `sorry, we cannot process ${problem.cardType} credit cards: only VISA or MasterCard is accepted`
    case "ExpiredCreditCard":
      return `your credit card (ending ${problem.lastFour}) expired on ${problem.month}/${problem.year}`
  }
}

/**
 * Charges `amount` to `card`: a transaction id, or why the card is refused.
 *
 * @since 0.2.0
 * @category payment
 */
export const charge = (
  _amount: Money,
  card: CreditCard,
  now: Date = new Date()
): { readonly transactionId: string } | CardProblem => validate(card, now) ?? { transactionId: Crypto.randomUUID() }
