/**
 * A deployed weavelet's runtime: the process a deployer launches.
 *
 * @since 0.1.0
 */

/**
 * The transport of a process in a deployment.
 *
 * @since 0.1.0
 */
export * as TransportMultiprocess from "./TransportMultiprocess.js"

/**
 * The weavelet side of a deployment.
 *
 * @since 0.1.0
 */
export * as Weavelet from "./Weavelet.js"
