/**
 * What tests call, as `weavertest.*`:
 *
 * ```ts
 * import { weavertest } from "@effect-weaver/weavertest"
 *
 * for (const runner of weavertest.allRunners()) {
 *   runner.test("reverses", app, Effect.gen(function*() {
 *     const reverser = yield* Reverser
 *     assert.strictEqual(yield* reverser.reverse("abc"), "cba")
 *   }))
 * }
 * ```
 *
 * @since 0.1.0
 */

/**
 * Replaces a component in tests; see `Fake.make`.
 *
 * @since 0.1.0
 * @category constructors
 */
export { make as fake } from "./Fake.js"

/**
 * A fake component; see `Fake.Fake`.
 *
 * @since 0.1.0
 * @category models
 */
export type { Fake } from "./Fake.js"

/**
 * The conformance kit: registers the cases every transport must pass under
 * each runner given; see the `Conformance` module.
 *
 * @since 0.1.0
 * @category testing
 */
export { conformance } from "./Conformance.js"

/**
 * Runners and their options; see the `Runner` module.
 *
 * @since 0.1.0
 * @category testing
 */
export { allRunners, local, makeRunner, multi, payloadOf, rpc, worker } from "./Runner.js"

/**
 * Runner types; see the `Runner` module.
 *
 * @since 0.1.0
 * @category models
 */
export type { Arbitraries, ArbitraryValues, Options, Requirement, Runner, RunnerDefinition } from "./Runner.js"

/**
 * The chaos of the running test, in its body's context: `(yield* weavertest.Chaos).counts()`; see the `Chaos`
 * module for the `chaos` option of runners.
 *
 * @since 0.1.0
 * @category testing
 */
export { Chaos } from "./Chaos.js"

/**
 * The deterministic simulator (Service Weaver's `sim`): `weavertest.sim.search(workload, options)`; see the
 * `Sim` module.
 *
 * @since 0.1.0
 * @category testing
 */
export * as sim from "./Sim.js"
