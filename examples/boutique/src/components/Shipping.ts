/**
 * The shipping component.
 *
 * @since 0.2.0
 */
import { Component } from "@effect-weaver/core"
import { Effect, Schema } from "effect"
import * as Ship from "../domain/Shipping.js"
import { Address, CartItem, Money } from "./Model.js"

const Shipment = Schema.Struct({ address: Address, items: Schema.Array(CartItem) })

/**
 * Quotes and ships orders.
 *
 * @since 0.2.0
 * @category components
 */
export class Shipping extends Component.Tag("boutique/Shipping")<Shipping>()({
  getQuote: Component.method({ payload: Shipment, success: Money }),
  shipOrder: Component.method({ payload: Shipment, success: Schema.String, retry: false })
}) {}

/**
 * @since 0.2.0
 * @category implementations
 */
export const ShippingImpl = Component.implement(
  Shipping,
  Effect.succeed({
    getQuote: ({ items }) => Effect.sync(() => Ship.quote(items.reduce((n, item) => n + item.quantity, 0))),
    shipOrder: ({ address }) => Effect.sync(() => Ship.trackingId(address))
  })
)
