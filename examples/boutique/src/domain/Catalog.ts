/**
 * The product catalog: the demo's `products.json`, looked up by id and
 * searched by name and description.
 *
 * @since 0.2.0
 */
import products from "../../data/products.json" with { type: "json" }
import type { Money } from "./Money.js"
import * as MoneyOps from "./Money.js"

/**
 * A product of the catalog.
 *
 * @since 0.2.0
 * @category models
 */
export interface Product {
  readonly id: string
  readonly name: string
  readonly description: string
  readonly picture: string
  readonly priceUsd: Money
  /** Categories such as "clothing" or "kitchen", also the ad service's keywords. */
  readonly categories: ReadonlyArray<string>
}

const check = (list: ReadonlyArray<Product>): ReadonlyArray<Product> => {
  const ids = new Set<string>()
  for (const [i, p] of list.entries()) {
    const where = `data/products.json: product ${i} (${JSON.stringify(p.id)})`
    if (typeof p.id !== "string" || p.id === "" || ids.has(p.id)) throw new Error(`${where}: missing or repeated id`)
    if (p.priceUsd?.currencyCode !== "USD" || !MoneyOps.isValid(p.priceUsd) || p.priceUsd.units < 0) {
      throw new Error(`${where}: priceUsd is not a valid USD amount`)
    }
    ids.add(p.id)
  }
  return list
}

/**
 * Every product, in the file's order.
 *
 * @since 0.2.0
 * @category data
 */
export const all: ReadonlyArray<Product> = check(products)

const byId = new Map(all.map((p) => [p.id, p]))

/**
 * The product with this id, if any.
 *
 * @since 0.2.0
 * @category lookups
 */
export const get = (id: string): Product | undefined => byId.get(id)

/**
 * Products whose name or description contains `query`, ignoring case.
 *
 * @since 0.2.0
 * @category lookups
 */
export const search = (query: string): ReadonlyArray<Product> => {
  const q = query.toLowerCase()
  return all.filter((p) => p.name.toLowerCase().includes(q) || p.description.toLowerCase().includes(q))
}
