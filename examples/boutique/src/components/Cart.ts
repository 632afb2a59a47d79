/**
 * The cart component. Carts live in the memory of the replica a user's
 * calls are routed to (`routeBy` the user id), as in Service Weaver's port;
 * a replica that restarts loses its carts.
 *
 * @since 0.2.0
 */
import { Component } from "@effect-weaver/core"
import { Effect, Schema } from "effect"
import { CartStore } from "../domain/Cart.js"
import { CartItem } from "./Model.js"

/**
 * Per-user shopping carts.
 *
 * @since 0.2.0
 * @category components
 */
export class Cart extends Component.Tag("boutique/Cart")<Cart>()({
  addItem: Component.method({
    payload: Schema.Struct({ userId: Schema.String, item: CartItem }),
    retry: false,
    routeBy: ({ userId }) => userId
  }),
  getCart: Component.method({ payload: Schema.String, success: Schema.Array(CartItem), routeBy: (userId) => userId }),
  emptyCart: Component.method({ payload: Schema.String, routeBy: (userId) => userId })
}) {}

/**
 * @since 0.2.0
 * @category implementations
 */
export const CartImpl = Component.implement(
  Cart,
  Effect.sync(() => {
    const store = new CartStore()
    return {
      addItem: ({ item, userId }) => Effect.sync(() => store.add(userId, item)),
      getCart: (userId) => Effect.sync(() => store.get(userId)),
      emptyCart: (userId) => Effect.sync(() => store.empty(userId))
    }
  })
)
