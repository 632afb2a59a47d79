/**
 * @since 0.1.0
 */
export * as Conformance from "./Conformance.js"

/**
 * @since 0.1.0
 */
export * as Fake from "./Fake.js"

/**
 * @since 0.1.0
 */
export * as Runner from "./Runner.js"

/**
 * @since 0.1.0
 */
export * as Sim from "./Sim.js"

/**
 * The entry point of tests: `weavertest.allRunners()`, `weavertest.fake(…)`.
 *
 * @since 0.1.0
 */
export * as weavertest from "./weavertest.js"

/**
 * The deployment behind the Multi runner.
 *
 * @since 0.1.0
 */
export * as MultiDeployment from "./MultiDeployment.js"

/**
 * Faults injected into a test's calls, and replicas killed (the `chaos` option of a runner).
 *
 * @since 0.1.0
 */
export * as Chaos from "./Chaos.js"
