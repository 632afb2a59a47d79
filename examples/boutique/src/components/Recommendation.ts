/**
 * The recommendation component.
 *
 * @since 0.2.0
 */
import { Component } from "@effect-weaver/core"
import { Effect, Schema } from "effect"
import * as Recommend from "../domain/Recommendation.js"
import { ProductCatalog } from "./ProductCatalog.js"

/**
 * Recommends products from the catalog.
 *
 * @since 0.2.0
 * @category components
 */
export class Recommendation extends Component.Tag("boutique/Recommendation")<Recommendation>()({
  listRecommendations: Component.method({
    payload: Schema.Struct({ userId: Schema.String, productIds: Schema.Array(Schema.String) }),
    success: Schema.Array(Schema.String)
  })
}) {}

/**
 * @since 0.2.0
 * @category implementations
 */
export const RecommendationImpl = Component.implement(
  Recommendation,
  Effect.map(ProductCatalog, (catalog) => ({
    listRecommendations: ({ productIds }) =>
      Effect.map(catalog.listProducts(), (products) => Recommend.recommend(products.map((p) => p.id), productIds))
  }))
)
