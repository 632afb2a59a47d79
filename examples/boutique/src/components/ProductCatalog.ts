/**
 * The product catalog component.
 *
 * @since 0.2.0
 */
import { Component } from "@effect-weaver/core"
import { Effect, Schema } from "effect"
import * as Catalog from "../domain/Catalog.js"
import { Product } from "./Model.js"

/**
 * No product has this id.
 *
 * @since 0.2.0
 * @category errors
 */
export class ProductNotFound extends Schema.TaggedError<ProductNotFound>()("ProductNotFound", {
  productId: Schema.String
}) {
  override get message() {
    return `no product with id ${JSON.stringify(this.productId)}`
  }
}

/**
 * Lists, gets and searches the products.
 *
 * @since 0.2.0
 * @category components
 */
export class ProductCatalog extends Component.Tag("boutique/ProductCatalog")<ProductCatalog>()({
  listProducts: Component.method({ success: Schema.Array(Product) }),
  getProduct: Component.method({ payload: Schema.String, success: Product, error: ProductNotFound }),
  searchProducts: Component.method({ payload: Schema.String, success: Schema.Array(Product) })
}) {}

/**
 * @since 0.2.0
 * @category implementations
 */
export const ProductCatalogImpl = Component.implement(
  ProductCatalog,
  Effect.succeed({
    listProducts: () => Effect.succeed(Catalog.all),
    getProduct: (id) => {
      const product = Catalog.get(id)
      return product === undefined ? Effect.fail(new ProductNotFound({ productId: id })) : Effect.succeed(product)
    },
    searchProducts: (query) => Effect.sync(() => Catalog.search(query))
  })
)
