/**
 * The shop as a plain Effect app: its services wired with Layers, in one process.
 */
import { Layer } from "effect"
import { InventoryLive } from "./Inventory.js"
import { OrdersLive } from "./Orders.js"
import { PricingLive } from "./Pricing.js"

export const ShopLive = OrdersLive.pipe(Layer.provideMerge(Layer.merge(InventoryLive, PricingLive)))
