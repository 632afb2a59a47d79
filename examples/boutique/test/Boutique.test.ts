/**
 * The boutique's flows under every runner (in process, over the RPC wire, in
 * child processes, in worker threads): the test body plays the storefront.
 */
import { weavertest } from "@effect-weaver/weavertest"
import { assert } from "@effect/vitest"
import { Effect, FastCheck, Schema } from "effect"
import * as Crypto from "node:crypto"
import { app } from "../src/app.js"
import { Cart } from "../src/components/Cart.js"
import { Checkout } from "../src/components/Checkout.js"
import { Currency } from "../src/components/Currency.js"
import { Email } from "../src/components/Email.js"
import { Payment } from "../src/components/Payment.js"
import { ProductCatalog } from "../src/components/ProductCatalog.js"
import { Recommendation } from "../src/components/Recommendation.js"
import * as Catalog from "../src/domain/Catalog.js"
import * as Money from "../src/domain/Money.js"
import * as Shop from "../src/domain/Shop.js"

// Carts and outboxes live in one replica's memory; with one replica per group no call lands on a replica that
// joined after the cart was filled (affinity routing is best effort while replicas come and go).
const config = "[multi]\nreplicas = 1\n"

const address = {
  streetAddress: "1600 Amphitheatre Parkway",
  city: "Mountain View",
  state: "CA",
  country: "USA",
  zipCode: 94043
}
const nextYear = new Date().getFullYear() + 1
const visa = {
  creditCardNumber: "4432-8015-6152-0454",
  creditCardCvv: 672,
  creditCardExpirationYear: nextYear,
  creditCardExpirationMonth: 1
}
const order = (userId: string, creditCard = visa) => ({
  userId,
  userCurrency: "EUR",
  address,
  email: `${userId}@example.com`,
  creditCard
})
const newUser = () => Crypto.randomUUID()

/** An amount in nanos, exactly: the property below checks the carry arithmetic against it. */
const nanos = (m: Money.Money) => BigInt(m.units) * 1_000_000_000n + BigInt(m.nanos)

for (const runner of weavertest.allRunners({ config })) {
  runner.test(
    "checkout charges, ships, empties the cart and emails a confirmation",
    app,
    Effect.gen(function*() {
      const cart = yield* Cart
      const checkout = yield* Checkout
      const email = yield* Email
      const user = newUser()
      yield* cart.addItem({ userId: user, item: { productId: "OLJCESPC7Z", quantity: 2 } })
      yield* cart.addItem({ userId: user, item: { productId: "66VCHSJNUP", quantity: 1 } })
      yield* cart.addItem({ userId: user, item: { productId: "OLJCESPC7Z", quantity: 1 } })
      assert.deepStrictEqual(yield* cart.getCart(user), [
        { productId: "OLJCESPC7Z", quantity: 3 },
        { productId: "66VCHSJNUP", quantity: 1 }
      ])
      const placed = yield* checkout.placeOrder(order(user))
      assert.match(placed.shippingTrackingId, /^[A-Z]{2}-\d+-\d+$/)
      assert.deepStrictEqual(placed.items.map((i) => i.item), [
        { productId: "OLJCESPC7Z", quantity: 3 },
        { productId: "66VCHSJNUP", quantity: 1 }
      ])
      assert.isTrue(placed.items.every((i) => i.cost.currencyCode === "EUR" && Money.isValid(i.cost)))
      assert.deepStrictEqual(placed.shippingAddress, address)
      assert.deepStrictEqual(yield* cart.getCart(user), [])
      const mails = yield* email.sent(`${user}@example.com`)
      assert.strictEqual(mails.length, 1)
      assert.include(mails[0], `Order ${placed.orderId}, tracking ${placed.shippingTrackingId}`)
    })
  )

  runner.test(
    "a refused card reaches the caller as a typed error, and the cart is kept",
    app,
    Effect.gen(function*() {
      const cart = yield* Cart
      const checkout = yield* Checkout
      const user = newUser()
      yield* cart.addItem({ userId: user, item: { productId: "9SIQT8TOJO", quantity: 2 } })
      const refused = (creditCard: typeof visa) =>
        checkout.placeOrder(order(user, creditCard)).pipe(
          Effect.flip,
          Effect.map((e) => ({ tag: e._tag, message: e.message }))
        )
      const luhn = yield* refused({ ...visa, creditCardNumber: "4432-8015-6152-0455" })
      assert.deepStrictEqual(luhn, {
        tag: "InvalidCreditCard",
        message: "credit card info is invalid: the number fails the Luhn check"
      })
      assert.strictEqual((yield* refused({ ...visa, creditCardNumber: "378282246310005" })).tag, "UnacceptedCreditCard")
      const expired = yield* refused({ ...visa, creditCardExpirationYear: 2020, creditCardExpirationMonth: 3 })
      assert.deepStrictEqual(expired, {
        tag: "ExpiredCreditCard",
        message: "your credit card (ending 0454) expired on 3/2020"
      })
      assert.deepStrictEqual(yield* cart.getCart(user), [{ productId: "9SIQT8TOJO", quantity: 2 }])
      // A typed error the caller catches by tag, as a local one.
      const caught = yield* checkout.placeOrder(order(user, { ...visa, creditCardCvv: 7 })).pipe(
        Effect.as("placed"),
        Effect.catchTag("InvalidCreditCard", (e) => Effect.succeed(e.reason))
      )
      assert.strictEqual(caught, "the CVV is not 3 or 4 digits")
    })
  )

  runner.test(
    "an unknown product is ProductNotFound, from the catalog and from checkout",
    app,
    Effect.gen(function*() {
      const catalog = yield* ProductCatalog
      const cart = yield* Cart
      const checkout = yield* Checkout
      const missing = yield* Effect.flip(catalog.getProduct("NOSUCHPRODUCT"))
      assert.strictEqual(missing._tag, "ProductNotFound")
      assert.strictEqual(missing.message, "no product with id \"NOSUCHPRODUCT\"")
      const user = newUser()
      yield* cart.addItem({ userId: user, item: { productId: "NOSUCHPRODUCT", quantity: 1 } })
      const failed = yield* Effect.flip(checkout.placeOrder(order(user)))
      assert.strictEqual(failed._tag, "ProductNotFound")
      const empty = yield* Effect.flip(checkout.placeOrder(order(newUser())))
      assert.strictEqual(empty._tag, "EmptyCart")
      assert.deepStrictEqual((yield* catalog.searchProducts("MUG")).map((p) => p.id), ["6E92ZMYYFZ"])
    })
  )

  runner.test(
    "currencies convert through euros; recommendations are other catalog products",
    app,
    Effect.gen(function*() {
      const currency = yield* Currency
      const recommendation = yield* Recommendation
      assert.includeMembers([...yield* currency.supportedCurrencies()], [...Shop.currencies])
      const sunglasses = { currencyCode: "USD", units: 19, nanos: 990_000_000 }
      assert.deepStrictEqual(yield* currency.convert({ from: sunglasses, toCode: "USD" }), sunglasses)
      assert.deepStrictEqual(yield* currency.convert({ from: sunglasses, toCode: "EUR" }), {
        currencyCode: "EUR",
        units: 17,
        nanos: 682441398 // 19.99 / 1.1305 = 17.6824413976…, nanos rounded in euros
      })
      const unsupported = yield* Effect.flip(currency.convert({ from: sunglasses, toCode: "XXX" }))
      assert.strictEqual(unsupported.message, "unsupported currency code \"XXX\"")
      const ids = yield* recommendation.listRecommendations({ userId: "u", productIds: ["OLJCESPC7Z", "66VCHSJNUP"] })
      assert.strictEqual(ids.length, 5)
      assert.strictEqual(new Set(ids).size, 5)
      assert.isTrue(ids.every((id) => Catalog.get(id) !== undefined && id !== "OLJCESPC7Z" && id !== "66VCHSJNUP"))
    })
  )

  // Checkout charges exactly the converted item prices times their quantities plus the converted shipping,
  // summed here in exact integer nanos; Payment is a fake that records the amount it is asked to charge.
  const charged: Array<Money.Money> = []
  const withFakePayment = runner.with({
    config,
    fakes: [
      weavertest.fake(Payment, {
        charge: ({ amount }) => Effect.sync(() => (charged.push(amount), `tx-${charged.length}`))
      })
    ]
  })
  withFakePayment.prop(
    "checkout charges the sum of converted prices times quantities plus converted shipping",
    app,
    [
      FastCheck.array(
        FastCheck.record({
          productId: FastCheck.constantFrom(...Catalog.all.map((p) => p.id)),
          quantity: FastCheck.integer({ min: 1, max: 10 })
        }),
        { minLength: 1, maxLength: 6 }
      ),
      FastCheck.constantFrom(...Shop.currencies)
    ],
    ([lines, userCurrency]) =>
      Effect.gen(function*() {
        const cart = yield* Cart
        const checkout = yield* Checkout
        const currency = yield* Currency
        const user = newUser()
        for (const item of lines) yield* cart.addItem({ userId: user, item })
        const before = charged.length
        const placed = yield* checkout.placeOrder({ ...order(user), userCurrency })
        assert.strictEqual(charged.length, before + 1)
        const amount = charged[charged.length - 1]!
        let expected = nanos(
          yield* currency.convert({ from: { currencyCode: "USD", units: 8, nanos: 990_000_000 }, toCode: userCurrency })
        )
        const quantities = new Map<string, number>()
        for (const { productId, quantity } of lines) {
          quantities.set(productId, (quantities.get(productId) ?? 0) + quantity)
        }
        for (const [productId, quantity] of quantities) {
          const price = yield* currency.convert({ from: Catalog.get(productId)!.priceUsd, toCode: userCurrency })
          expected += nanos(price) * BigInt(quantity)
        }
        assert.isTrue(Money.isValid(amount), JSON.stringify(amount))
        assert.strictEqual(amount.currencyCode, userCurrency)
        assert.strictEqual(nanos(amount), expected)
        assert.strictEqual(placed.items.length, quantities.size)
        assert.isTrue(Schema.is(Schema.String)(placed.orderId))
      }),
    { numRuns: 25 }
  )
}
