/**
 * The multi deployer, built only on `@effect-weaver/runtime`.
 *
 * @since 0.1.0
 */

/**
 * The multi deployer.
 *
 * @since 0.1.0
 */
export * as Deployer from "./Deployer.js"

/**
 * The query language of `weaver multi logs`.
 *
 * @since 0.1.0
 */
export * as LogQuery from "./LogQuery.js"

/**
 * The listener proxy.
 *
 * @since 0.1.0
 */
export * as Proxy from "./Proxy.js"

/**
 * The status server of a multiprocess deployment.
 *
 * @since 0.1.0
 */
export * as Status from "./Status.js"
