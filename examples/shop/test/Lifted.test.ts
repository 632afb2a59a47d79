/**
 * The lifted shop under every runner: the test bodies use the Tags the plain app used, and the services run as
 * components, co-located (Local), over the wire protocol (RPC), in worker threads and in other processes (Multi).
 * Inventory and Orders keep their state in memory and are singletons: one instance under every runner, so the
 * state a test reads back is the state it wrote, even under Multi (2 replicas of the other groups).
 */
import { weavertest } from "@effect-weaver/weavertest"
import { assert } from "@effect/vitest"
import { Effect, Stream } from "effect"
import * as Fs from "node:fs"
import { app } from "../src/app.js"
import { Inventory } from "../src/Inventory.js"
import { Orders, Receipt } from "../src/Orders.js"
import { Pricing } from "../src/Pricing.js"

const config = Fs.readFileSync(new URL("../weaver.toml", import.meta.url), "utf8")

for (const runner of weavertest.allRunners()) {
  runner.test(
    "an order takes stock and is priced, through the original Tags",
    app,
    Effect.gen(function*() {
      const orders = yield* Orders
      const inventory = yield* Inventory
      assert.strictEqual(yield* inventory.stock("apple"), 10)
      const receipt = yield* orders.place("apple", 3)
      assert.deepStrictEqual([receipt.id, receipt.sku, receipt.quantity, receipt.total], ["order-1", "apple", 3, 360])
      assert.instanceOf(receipt, Receipt)
      assert.strictEqual(yield* inventory.stock("apple"), 7)
      yield* orders.place("apple", 1)
      assert.strictEqual(yield* inventory.stock("apple"), 6)
      assert.deepStrictEqual((yield* orders.placed()).map((r) => r.id), ["order-1", "order-2"])
      // A method returning a Stream is a streaming method.
      const levels = yield* Stream.runCollect(inventory.levels())
      assert.deepStrictEqual([...levels].map((l) => [l.sku, l.left]), [["apple", 6], ["pear", 10], ["plum", 10]])
    })
  )

  runner.test(
    "declared errors cross as the plain app's error classes",
    app,
    Effect.gen(function*() {
      const orders = yield* Orders
      const outOfStock = yield* Effect.flip(orders.place("pear", 11))
      assert.strictEqual(outOfStock._tag, "OutOfStock")
      assert.strictEqual(outOfStock.message, "pear: 11 wanted, 10 left")
      const unknown = yield* Effect.flip(orders.place("kiwi", 1))
      assert.strictEqual(unknown._tag, "UnknownSku")
      assert.strictEqual(yield* (yield* Inventory).stock("pear"), 10)
    })
  )

  runner.with({ config }).test(
    "Config in the Layers reads each component's section of weaver.toml",
    app,
    Effect.gen(function*() {
      assert.strictEqual(yield* (yield* Pricing).price("apple"), 108)
      assert.strictEqual((yield* (yield* Orders).place("plum", 4)).total, 4 * 81)
      const error = yield* Effect.flip((yield* Orders).place("plum", 2))
      assert.deepStrictEqual([error._tag, error.message], ["OutOfStock", "plum: 2 wanted, 1 left"])
    })
  )
}
