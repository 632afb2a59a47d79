import { assert, describe, it } from "@effect/vitest"
import * as Money from "../src/domain/Money.js"
import * as Payment from "../src/domain/Payment.js"
import * as Shipping from "../src/domain/Shipping.js"

const usd = (units: number, nanos: number) => ({ currencyCode: "USD", units, nanos })

describe("Money", () => {
  it("carries nanos into units and keeps units and nanos of one sign", () => {
    assert.deepStrictEqual(Money.sum(usd(1, 500_000_000), usd(1, 600_000_000)), usd(3, 100_000_000))
    assert.deepStrictEqual(Money.sum(usd(0, 300_000_000), usd(0, 200_000_000)), usd(0, 500_000_000))
    assert.deepStrictEqual(Money.sum(usd(2, 0), usd(-1, -250_000_000)), usd(0, 750_000_000))
    assert.deepStrictEqual(Money.sum(usd(-1, -600_000_000), usd(-1, -600_000_000)), usd(-3, -200_000_000))
    assert.deepStrictEqual(Money.multiply(usd(19, 990_000_000), 3), usd(59, 970_000_000))
    assert.deepStrictEqual(Money.multiply(usd(19, 990_000_000), 0), usd(0, 0))
  })

  it("refuses invalid values and mixed currencies, naming them", () => {
    assert.throws(() => Money.sum(usd(1, -1), usd(0, 0)), /invalid money value: .*"nanos":-1/)
    assert.throws(() => Money.sum(usd(1, 0), { currencyCode: "EUR", units: 1, nanos: 0 }), /USD and EUR/)
    assert.throws(() => Money.multiply(usd(1, 0), -1), /cannot multiply money by -1/)
  })
})

describe("Payment", () => {
  const now = new Date(2030, 5, 15)
  const card = {
    creditCardNumber: "4111 1111 1111 1111",
    creditCardCvv: 123,
    creditCardExpirationYear: 2030,
    creditCardExpirationMonth: 6
  }
  it("accepts valid VISA and MasterCard numbers until the end of their expiration month", () => {
    assert.isUndefined(Payment.validate(card, now))
    assert.isUndefined(Payment.validate({ ...card, creditCardNumber: "5555-5555-5555-4444" }, now))
    assert.isUndefined(Payment.validate({ ...card, creditCardNumber: "2223003122003222" }, now))
  })
  it("refuses by Luhn, network, CVV and expiry", () => {
    assert.deepStrictEqual(Payment.validate({ ...card, creditCardNumber: "4111 1111 1111 1112" }, now), {
      _tag: "InvalidCreditCard",
      reason: "the number fails the Luhn check"
    })
    assert.deepStrictEqual(Payment.validate({ ...card, creditCardNumber: "3782 822463 10005" }, now), {
      _tag: "UnacceptedCreditCard",
      cardType: "amex"
    })
    assert.strictEqual(Payment.validate({ ...card, creditCardNumber: "abcd" }, now)?._tag, "InvalidCreditCard")
    assert.strictEqual(Payment.validate({ ...card, creditCardCvv: 12 }, now)?._tag, "InvalidCreditCard")
    assert.strictEqual(Payment.validate({ ...card, creditCardExpirationMonth: 13 }, now)?._tag, "InvalidCreditCard")
    assert.deepStrictEqual(Payment.validate({ ...card, creditCardExpirationMonth: 5 }, now), {
      _tag: "ExpiredCreditCard",
      lastFour: "1111",
      month: 5,
      year: 2030
    })
  })
})

describe("Shipping", () => {
  it("quotes $8.99 for any items and nothing for none", () => {
    assert.deepStrictEqual(Shipping.quote(3), usd(8, 990_000_000))
    assert.deepStrictEqual(Shipping.quote(0), usd(0, 0))
  })
})
