/**
 * Prices, with a discount read from config. A plain Effect service.
 */
import { Config, Context, Effect, Layer } from "effect"
import { UnknownSku } from "./Inventory.js"

const list: Record<string, number> = { apple: 120, pear: 150, plum: 90 }

export class Pricing extends Context.Tag("shop/Pricing")<Pricing, {
  /** The price of one unit, in cents, after the discount. */
  readonly price: (sku: string) => Effect.Effect<number, UnknownSku>
}>() {}

export const PricingLive = Layer.effect(
  Pricing,
  Effect.gen(function*() {
    const discount = yield* Config.integer("discountPercent").pipe(Config.withDefault(0))
    return {
      price: (sku) => {
        const cents = list[sku]
        return cents === undefined
          ? Effect.fail(new UnknownSku({ sku }))
          : Effect.succeed(Math.round(cents * (100 - discount) / 100))
      }
    }
  })
)
