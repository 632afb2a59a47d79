/**
 * The schemas of the boutique's values as they cross component boundaries,
 * one per type of the shared domain modules (the compiler checks they
 * agree), and the requests of the storefront's JSON API.
 *
 * @since 0.2.0
 */
import { Schema } from "effect"
import type * as Ads from "../domain/Ads.js"
import type * as Cart from "../domain/Cart.js"
import type * as Catalog from "../domain/Catalog.js"
import type * as MoneyDomain from "../domain/Money.js"
import type * as Order from "../domain/Order.js"
import type * as Payment from "../domain/Payment.js"
import type * as Shipping from "../domain/Shipping.js"

const Int32 = Schema.Int.pipe(Schema.between(-2_147_483_648, 2_147_483_647))

/**
 * @since 0.2.0
 * @category schemas
 */
export const Money = Schema.Struct({
  currencyCode: Schema.String,
  units: Schema.Int,
  nanos: Schema.Int.pipe(Schema.between(-999_999_999, 999_999_999))
})

/**
 * @since 0.2.0
 * @category schemas
 */
export const Product = Schema.Struct({
  id: Schema.String,
  name: Schema.String,
  description: Schema.String,
  picture: Schema.String,
  priceUsd: Money,
  categories: Schema.Array(Schema.String)
})

/**
 * @since 0.2.0
 * @category schemas
 */
export const CartItem = Schema.Struct({
  productId: Schema.NonEmptyString,
  quantity: Schema.Int.pipe(Schema.between(1, 10_000))
})

/**
 * @since 0.2.0
 * @category schemas
 */
export const Address = Schema.Struct({
  streetAddress: Schema.String,
  city: Schema.String,
  state: Schema.String,
  country: Schema.String,
  zipCode: Int32
})

/**
 * @since 0.2.0
 * @category schemas
 */
export const CreditCard = Schema.Struct({
  creditCardNumber: Schema.String,
  creditCardCvv: Int32,
  creditCardExpirationYear: Int32,
  creditCardExpirationMonth: Int32
})

/**
 * @since 0.2.0
 * @category schemas
 */
export const OrderItem = Schema.Struct({ item: CartItem, cost: Money })

/**
 * @since 0.2.0
 * @category schemas
 */
export const OrderResult = Schema.Struct({
  orderId: Schema.String,
  shippingTrackingId: Schema.String,
  shippingCost: Money,
  shippingAddress: Address,
  items: Schema.Array(OrderItem)
})

/**
 * @since 0.2.0
 * @category schemas
 */
export const Ad = Schema.Struct({ redirectUrl: Schema.String, text: Schema.String })

/**
 * A checkout as the storefront's `POST /cart/checkout` takes it.
 *
 * @since 0.2.0
 * @category schemas
 */
export const CheckoutForm = Schema.Struct({
  email: Schema.String.pipe(Schema.pattern(/^[^@\s]+@[^@\s]+$/, { message: () => "an email address" })),
  address: Address,
  creditCard: CreditCard
})

/**
 * A line added with `POST /cart`.
 *
 * @since 0.2.0
 * @category schemas
 */
export const AddToCartForm = CartItem

/**
 * The body of `POST /setCurrency`.
 *
 * @since 0.2.0
 * @category schemas
 */
export const SetCurrencyForm = Schema.Struct({ currencyCode: Schema.String })

// The schemas and the domain's plain types must describe the same values.
type Same<S extends Schema.Schema.Any, T> = [Schema.Schema.Type<S>] extends [T] ?
  [T] extends [Schema.Schema.Type<S>] ? true
  : false
  : false
const agree = <_ extends true>() => undefined
agree<Same<typeof Money, MoneyDomain.Money>>()
agree<Same<typeof Product, Catalog.Product>>()
agree<Same<typeof CartItem, Cart.CartItem>>()
agree<Same<typeof Address, Shipping.Address>>()
agree<Same<typeof CreditCard, Payment.CreditCard>>()
agree<Same<typeof OrderResult, Order.OrderResult>>()
agree<Same<typeof Ad, Ads.Ad>>()
