/**
 * Recommendations as the demo's recommendation service makes them: up to
 * five catalog products the user is not looking at, at random.
 *
 * @since 0.2.0
 */

/**
 * The most products recommended at once.
 *
 * @since 0.2.0
 * @category constants
 */
export const maxRecommendations = 5

/**
 * Up to {@link maxRecommendations} ids of `catalog` not in `exclude`, in random order.
 *
 * @since 0.2.0
 * @category recommendations
 */
export const recommend = (catalog: ReadonlyArray<string>, exclude: ReadonlyArray<string>): ReadonlyArray<string> => {
  const excluded = new Set(exclude)
  const candidates = catalog.filter((id) => !excluded.has(id))
  // A partial Fisher-Yates shuffle: the first picks are a uniform sample.
  const n = Math.min(maxRecommendations, candidates.length)
  for (let i = 0; i < n; i++) {
    const j = i + Math.floor(Math.random() * (candidates.length - i))
    ;[candidates[i], candidates[j]] = [candidates[j]!, candidates[i]!]
  }
  return candidates.slice(0, n)
}
