/**
 * Stock of each product. A plain Effect service: a Tag and a Layer, nothing of effect-weaver.
 */
import { Config, Context, Effect, Layer, Ref, Schema, Stream } from "effect"

export class UnknownSku extends Schema.TaggedError<UnknownSku>()("UnknownSku", { sku: Schema.String }) {
  override get message() {
    return `no product ${this.sku}`
  }
}

export class OutOfStock extends Schema.TaggedError<OutOfStock>()("OutOfStock", {
  sku: Schema.String,
  wanted: Schema.Number,
  left: Schema.Number
}) {
  override get message() {
    return `${this.sku}: ${this.wanted} wanted, ${this.left} left`
  }
}

export class Inventory extends Context.Tag("shop/Inventory")<Inventory, {
  readonly stock: (sku: string) => Effect.Effect<number, UnknownSku>
  readonly take: (sku: string, quantity: number) => Effect.Effect<void, OutOfStock | UnknownSku>
  /** The stock of every product, one at a time. */
  readonly levels: () => Stream.Stream<StockLevel>
}>() {}

export class StockLevel extends Schema.Class<StockLevel>("StockLevel")({ sku: Schema.String, left: Schema.Number }) {}

export const skus = ["apple", "pear", "plum"] as const

export const InventoryLive = Layer.effect(
  Inventory,
  Effect.gen(function*() {
    const initial = yield* Config.integer("initialStock").pipe(Config.withDefault(10))
    const stock = yield* Ref.make(new Map<string, number>(skus.map((sku) => [sku, initial])))
    const left = (sku: string) =>
      Effect.flatMap(Ref.get(stock), (map) => {
        const n = map.get(sku)
        return n === undefined ? Effect.fail(new UnknownSku({ sku })) : Effect.succeed(n)
      })
    return {
      stock: left,
      take: (sku, quantity) =>
        Effect.flatMap(left(sku), (n) =>
          n < quantity
            ? Effect.fail(new OutOfStock({ sku, wanted: quantity, left: n }))
            : Ref.update(stock, (map) => new Map(map).set(sku, n - quantity))),
      levels: () =>
        Stream.flatMap(
          Stream.fromEffect(Ref.get(stock)),
          (map) => Stream.fromIterable([...map].map(([sku, left]) => new StockLevel({ sku, left })))
        )
    }
  })
)
