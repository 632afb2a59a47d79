/**
 * The same shop as `plain.ts`, lifted into components: each service's Tag and Layer are unchanged; the schemas
 * of their methods are given once, here. Main serves the shop over HTTP.
 */
import { Component, Weaver } from "@effect-weaver/core"
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect, Schema } from "effect"
import { Inventory, InventoryLive, OutOfStock, StockLevel, UnknownSku } from "./Inventory.js"
import { Orders, OrdersLive, Receipt } from "./Orders.js"
import { Pricing, PricingLive } from "./Pricing.js"

// The stock and the orders live in memory: one instance per deployment (a singleton), whatever the replication.
export const InventoryComponent = Component.lift(Inventory, InventoryLive, {
  stock: { args: [Schema.String], success: Schema.Number, error: UnknownSku },
  take: { args: [Schema.String, Schema.Number], error: Schema.Union(OutOfStock, UnknownSku), retry: false },
  levels: { success: StockLevel, stream: true }
}, { singleton: true })

export const PricingComponent = Component.lift(Pricing, PricingLive, {
  price: { args: [Schema.String], success: Schema.Number, error: UnknownSku }
})

export const OrdersComponent = Component.lift(Orders, OrdersLive, {
  place: {
    args: [Schema.String, Schema.Number],
    success: Receipt,
    error: Schema.Union(OutOfStock, UnknownSku),
    retry: false
  },
  placed: { success: Schema.Array(Receipt) }
}, { singleton: true })

const OrderParams = Schema.Struct({ sku: Schema.String, quantity: Schema.NumberFromString })

/** `POST /order?sku=apple&quantity=2` places an order; `GET /stock?sku=apple` tells what is left. */
export const Main = Weaver.main(
  Effect.gen(function*() {
    // The Tags the plain app used, unchanged: each is now a component, wherever it runs.
    const orders = yield* Orders
    const inventory = yield* Inventory
    const router = HttpRouter.empty.pipe(
      HttpRouter.post(
        "/order",
        Effect.flatMap(
          HttpServerRequest.schemaSearchParams(OrderParams),
          ({ quantity, sku }) =>
            Effect.map(orders.place(sku, quantity), (receipt) => HttpServerResponse.unsafeJson(receipt))
        )
      ),
      HttpRouter.get(
        "/stock",
        Effect.flatMap(
          HttpServerRequest.schemaSearchParams(Schema.Struct({ sku: Schema.String })),
          ({ sku }) => Effect.map(inventory.stock(sku), (left) => HttpServerResponse.text(`${left}\n`))
        )
      ),
      Effect.catchTags({
        ParseError: (e) => HttpServerResponse.text(`bad request: ${e.message}\n`, { status: 400 }),
        UnknownSku: (e) => HttpServerResponse.text(`${e.message}\n`, { status: 404 }),
        OutOfStock: (e) => HttpServerResponse.text(`${e.message}\n`, { status: 409 })
      })
    )
    yield* Weaver.serve("shop", router)
  }),
  { listeners: ["shop"] }
)

export const app = Weaver.app({ main: Main, components: [InventoryComponent, PricingComponent, OrdersComponent] })
