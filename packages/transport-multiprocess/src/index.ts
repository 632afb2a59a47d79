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

/**
 * The transport of a process in a multiprocess deployment.
 *
 * @since 0.1.0
 */
export * as TransportMultiprocess from "./TransportMultiprocess.js"

/**
 * The weavelet side of a multiprocess deployment.
 *
 * @since 0.1.0
 */
export * as Weavelet from "./Weavelet.js"
