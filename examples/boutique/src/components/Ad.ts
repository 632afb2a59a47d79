/**
 * The ad component.
 *
 * @since 0.2.0
 */
import { Component } from "@effect-weaver/core"
import { Effect, Schema } from "effect"
import * as Ads from "../domain/Ads.js"
import { Ad as AdSchema } from "./Model.js"

/**
 * Serves ads for a page's keywords.
 *
 * @since 0.2.0
 * @category components
 */
export class Ad extends Component.Tag("boutique/Ad")<Ad>()({
  getAds: Component.method({ payload: Schema.Array(Schema.String), success: Schema.Array(AdSchema) })
}) {}

/**
 * @since 0.2.0
 * @category implementations
 */
export const AdImpl = Component.implement(
  Ad,
  Effect.succeed({ getAds: (keywords) => Effect.sync(() => Ads.forKeywords(keywords)) })
)
