/**
 * Ads as the demo's ad service serves them: the ad of each context keyword
 * it has one for, otherwise two at random.
 *
 * @since 0.2.0
 */

/**
 * An ad.
 *
 * @since 0.2.0
 * @category models
 */
export interface Ad {
  /** Where a click on the ad leads. */
  readonly redirectUrl: string
  readonly text: string
}

const byCategory: ReadonlyMap<string, Ad> = new Map([
  ["hair", { redirectUrl: "/product/2ZYFJ3GM2N", text: "Hairdryer for sale. 50% off." }],
  ["clothing", { redirectUrl: "/product/66VCHSJNUP", text: "Tank top for sale. 20% off." }],
  ["accessories", { redirectUrl: "/product/1YMWWN1N4O", text: "Watch for sale. Buy one, get second kit for free" }],
  ["footwear", { redirectUrl: "/product/L9ECAV7KIM", text: "Loafers for sale. Buy one, get second one for free" }],
  ["decor", { redirectUrl: "/product/0PUK6V6EV0", text: "Candle holder for sale. 30% off." }],
  ["kitchen", { redirectUrl: "/product/9SIQT8TOJO", text: "Bamboo glass jar for sale. 10% off." }]
])
const every = [...byCategory.values()]

/**
 * How many ads are served when no keyword matches.
 *
 * @since 0.2.0
 * @category constants
 */
export const randomAdCount = 2

/**
 * The ads for a page about `keywords`.
 *
 * @since 0.2.0
 * @category ads
 */
export const forKeywords = (keywords: ReadonlyArray<string>): ReadonlyArray<Ad> => {
  const matched = keywords.flatMap((k) => byCategory.get(k) ?? [])
  return matched.length > 0
    ? matched
    : Array.from({ length: randomAdCount }, () => every[Math.floor(Math.random() * every.length)]!)
}
