/**
 * The single-process deployer, built only on `@effect-weaver/runtime`.
 *
 * @since 0.1.0
 */

/**
 * The single-process deployer.
 *
 * @since 0.1.0
 */
export * as Deployer from "./Deployer.js"
