/**
 * The checkout component: places an order by calling the cart, catalog,
 * currency, shipping, payment and email components.
 *
 * @since 0.2.0
 */
import { Component } from "@effect-weaver/core"
import { Effect, Schema } from "effect"
import * as Crypto from "node:crypto"
import * as Order from "../domain/Order.js"
import { Cart } from "./Cart.js"
import { Currency, UnsupportedCurrency } from "./Currency.js"
import { Email } from "./Email.js"
import { Address, CreditCard, OrderResult } from "./Model.js"
import { Payment, PaymentError } from "./Payment.js"
import { ProductCatalog, ProductNotFound } from "./ProductCatalog.js"
import { Shipping } from "./Shipping.js"

/**
 * A checkout of an empty cart.
 *
 * @since 0.2.0
 * @category errors
 */
export class EmptyCart extends Schema.TaggedError<EmptyCart>()("EmptyCart", { userId: Schema.String }) {
  override get message() {
    return "the cart is empty: add a product before checking out"
  }
}

/**
 * What placing an order needs.
 *
 * @since 0.2.0
 * @category schemas
 */
export const PlaceOrderRequest = Schema.Struct({
  userId: Schema.String,
  userCurrency: Schema.String,
  address: Address,
  email: Schema.String,
  creditCard: CreditCard
})

/**
 * Places orders.
 *
 * @since 0.2.0
 * @category components
 */
export class Checkout extends Component.Tag("boutique/Checkout")<Checkout>()({
  placeOrder: Component.method({
    payload: PlaceOrderRequest,
    success: OrderResult,
    error: Schema.Union(PaymentError, ProductNotFound, UnsupportedCurrency, EmptyCart),
    retry: false
  })
}) {}

/**
 * @since 0.2.0
 * @category implementations
 */
export const CheckoutImpl = Component.implement(
  Checkout,
  Effect.gen(function*() {
    const cart = yield* Cart
    const catalog = yield* ProductCatalog
    const currency = yield* Currency
    const shipping = yield* Shipping
    const payment = yield* Payment
    const email = yield* Email
    return {
      placeOrder: Effect.fnUntraced(function*(request) {
        const items = yield* cart.getCart(request.userId)
        if (items.length === 0) return yield* new EmptyCart({ userId: request.userId })
        const [orderItems, shippingCost] = yield* Effect.all([
          Effect.forEach(items, (item) =>
            catalog.getProduct(item.productId).pipe(
              Effect.flatMap((product) => currency.convert({ from: product.priceUsd, toCode: request.userCurrency })),
              Effect.map((cost) => ({ item, cost }))
            ), { concurrency: "unbounded" }),
          shipping.getQuote({ address: request.address, items }).pipe(
            Effect.flatMap((usd) => currency.convert({ from: usd, toCode: request.userCurrency }))
          )
        ], { concurrency: "unbounded" })
        const amount = Order.total(request.userCurrency, shippingCost, orderItems)
        const transactionId = yield* payment.charge({ amount, creditCard: request.creditCard })
        yield* Effect.logDebug(`payment went through: ${transactionId}`)
        const shippingTrackingId = yield* shipping.shipOrder({ address: request.address, items })
        yield* cart.emptyCart(request.userId)
        const order = {
          orderId: Crypto.randomUUID(),
          shippingTrackingId,
          shippingCost,
          shippingAddress: request.address,
          items: orderItems
        }
        // As in the original, a confirmation that cannot be sent does not fail the order.
        yield* email.sendOrderConfirmation({ email: request.email, order }).pipe(
          Effect.catchAll((error) => Effect.logWarning(`order confirmation to ${request.email} not sent`, error))
        )
        return order
      })
    }
  })
)
