/**
 * Orders: takes stock and prices the order. A plain Effect service that depends on the two others and on a
 * plain Tag (order ids).
 */
import { Context, Effect, Layer, Ref, Schema } from "effect"
import { Inventory, type OutOfStock, type UnknownSku } from "./Inventory.js"
import { Pricing } from "./Pricing.js"

export class Receipt extends Schema.Class<Receipt>("Receipt")({
  id: Schema.String,
  sku: Schema.String,
  quantity: Schema.Number,
  total: Schema.Number
}) {}

export class Orders extends Context.Tag("shop/Orders")<Orders, {
  readonly place: (sku: string, quantity: number) => Effect.Effect<Receipt, OutOfStock | UnknownSku>
  readonly placed: () => Effect.Effect<ReadonlyArray<Receipt>>
}>() {}

/** Where order ids come from: a plain service, not a component. */
export class OrderIds extends Context.Tag("shop/OrderIds")<OrderIds, { readonly next: Effect.Effect<string> }>() {}

export const OrderIdsLive = Layer.effect(
  OrderIds,
  Effect.map(Ref.make(0), (counter) => ({
    next: Effect.map(Ref.updateAndGet(counter, (n) => n + 1), (n) => `order-${n}`)
  }))
)

export const OrdersLive = Layer.effect(
  Orders,
  Effect.gen(function*() {
    const inventory = yield* Inventory
    const pricing = yield* Pricing
    const ids = yield* OrderIds
    const placed = yield* Ref.make<ReadonlyArray<Receipt>>([])
    return {
      place: (sku, quantity) =>
        Effect.gen(function*() {
          const price = yield* pricing.price(sku)
          yield* inventory.take(sku, quantity)
          const receipt = new Receipt({ id: yield* ids.next, sku, quantity, total: price * quantity })
          yield* Ref.update(placed, (all) => [...all, receipt])
          return receipt
        }),
      placed: () => Ref.get(placed)
    }
  })
).pipe(Layer.provide(OrderIdsLive))
