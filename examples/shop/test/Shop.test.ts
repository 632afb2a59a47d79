/**
 * The plain app's own tests: its Layers, provided by hand, in one process. Lifting the services into components
 * changed nothing here.
 */
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Layer } from "effect"
import { Inventory } from "../src/Inventory.js"
import { Orders } from "../src/Orders.js"
import { ShopLive } from "../src/plain.js"

describe("shop (plain Effect)", () => {
  it.effect("an order takes stock and is priced", () =>
    Effect.gen(function*() {
      const orders = yield* Orders
      const inventory = yield* Inventory
      const receipt = yield* orders.place("apple", 3)
      assert.deepStrictEqual([receipt.id, receipt.total], ["order-1", 360])
      assert.strictEqual(yield* inventory.stock("apple"), 7)
      assert.strictEqual((yield* orders.placed()).length, 1)
    }).pipe(Effect.provide(ShopLive)))

  it.effect("an order for more than is left fails with OutOfStock and takes nothing", () =>
    Effect.gen(function*() {
      const orders = yield* Orders
      const error = yield* Effect.flip(orders.place("pear", 11))
      assert.strictEqual(error._tag, "OutOfStock")
      assert.strictEqual(yield* (yield* Inventory).stock("pear"), 10)
    }).pipe(Effect.provide(ShopLive)))

  it.effect("the discount and the stock come from config", () =>
    Effect.gen(function*() {
      const receipt = yield* (yield* Orders).place("plum", 2)
      assert.strictEqual(receipt.total, 2 * 81)
      assert.strictEqual(yield* (yield* Inventory).stock("plum"), 1)
    }).pipe(
      Effect.provide(
        ShopLive.pipe(
          Layer.provide(Layer.setConfigProvider(ConfigProvider.fromJson({ discountPercent: 10, initialStock: 3 })))
        )
      )
    ))
})
