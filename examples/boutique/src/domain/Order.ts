/**
 * Orders: what checkout returns, how much they cost, and the confirmation
 * mail sent for them.
 *
 * @since 0.2.0
 */
import type { CartItem } from "./Cart.js"
import * as Money from "./Money.js"
import type { Address } from "./Shipping.js"

/**
 * A line of an order: the cart line and the price of one item in the
 * customer's currency.
 *
 * @since 0.2.0
 * @category models
 */
export interface OrderItem {
  readonly item: CartItem
  readonly cost: Money.Money
}

/**
 * A placed order.
 *
 * @since 0.2.0
 * @category models
 */
export interface OrderResult {
  readonly orderId: string
  readonly shippingTrackingId: string
  readonly shippingCost: Money.Money
  readonly shippingAddress: Address
  readonly items: ReadonlyArray<OrderItem>
}

/**
 * What an order costs in `currencyCode`: shipping plus each item's cost
 * times its quantity.
 *
 * @since 0.2.0
 * @category pricing
 */
export const total = (
  currencyCode: string,
  shippingCost: Money.Money,
  items: ReadonlyArray<OrderItem>
): Money.Money =>
  items.reduce(
    (sum, { cost, item }) => Money.sum(sum, Money.multiply(cost, item.quantity)),
    Money.sum(Money.zero(currencyCode), shippingCost)
  )

/**
 * The confirmation mail of an order, as text.
 *
 * @since 0.2.0
 * @category email
 */
export const confirmation = (email: string, order: OrderResult): string =>
  [
    `To: ${email}`,
    `Subject: Your Confirmation Email`,
    ``,
    `Order ${order.orderId}, tracking ${order.shippingTrackingId}`,
    ...order.items.map(({ cost, item }) => `  ${item.quantity} × ${item.productId} at ${Money.format(cost)}`),
    `  shipping ${Money.format(order.shippingCost)}`,
    `Total: ${Money.format(total(order.shippingCost.currencyCode, order.shippingCost, order.items))}`,
    `Ship to: ${order.shippingAddress.streetAddress}, ${order.shippingAddress.city}, ` +
    `${order.shippingAddress.state} ${order.shippingAddress.zipCode}, ${order.shippingAddress.country}`
  ].join("\n")
