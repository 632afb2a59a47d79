/**
 * What the storefront decides by itself: the currencies it offers, the
 * cookies it keeps, how many recommendations a page shows.
 *
 * @since 0.2.0
 */
import type { CartItem } from "./Cart.js"
import * as Money from "./Money.js"
import * as Order from "./Order.js"
import type { Address } from "./Shipping.js"

/**
 * The currencies the storefront offers (the demo's allow-list).
 *
 * @since 0.2.0
 * @category constants
 */
export const currencies: ReadonlyArray<string> = ["USD", "EUR", "CAD", "JPY", "GBP", "TRY"]

/**
 * The currency of a customer who chose none.
 *
 * @since 0.2.0
 * @category constants
 */
export const defaultCurrency = "USD"

/**
 * The cookie (or, for API clients, the `x-session-id` header) naming the customer's session.
 *
 * @since 0.2.0
 * @category constants
 */
export const sessionCookie = "shop_session-id"

/**
 * The cookie holding the customer's currency.
 *
 * @since 0.2.0
 * @category constants
 */
export const currencyCookie = "shop_currency"

/**
 * How many recommended products a page shows.
 *
 * @since 0.2.0
 * @category constants
 */
export const recommendationsShown = 4

/**
 * The currency of a request: its cookie if the shop offers it, the default otherwise.
 *
 * @since 0.2.0
 * @category sessions
 */
export const currencyOf = (cookie: string | undefined): string =>
  cookie !== undefined && currencies.includes(cookie) ? cookie : defaultCurrency

/**
 * The address the cart page quotes shipping for before the customer gives
 * one (the demo's shipping quote ignores the address).
 *
 * @since 0.2.0
 * @category constants
 */
export const noAddress: Address = { streetAddress: "", city: "", state: "", country: "", zipCode: 0 }

/**
 * The cart page: each line's price times its quantity, shipping, and the
 * total, in the customer's currency.
 *
 * @since 0.2.0
 * @category views
 */
export const cartView = <P>(
  currency: string,
  currencies: ReadonlyArray<string>,
  lines: ReadonlyArray<{ readonly product: P; readonly item: CartItem; readonly cost: Money.Money }>,
  shippingCost: Money.Money,
  recommendations: ReadonlyArray<P>
) => ({
  currency,
  currencies,
  items: lines.map(({ cost, item, product }) => ({
    product,
    quantity: item.quantity,
    price: Money.multiply(cost, item.quantity)
  })),
  shippingCost,
  totalPrice: Order.total(currency, shippingCost, lines),
  recommendations
})
