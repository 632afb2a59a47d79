/**
 * @since 0.1.0
 */
export * as Bundle from "./Bundle.js"

/**
 * @since 0.1.0
 */
export * as Cli from "./Cli.js"

/**
 * @since 0.1.0
 */
export * as Dashboard from "./dashboard/Server.js"

/**
 * @since 0.1.0
 */
export * as Kube from "./Kube.js"

/**
 * @since 0.1.0
 */
export * as Logs from "./Logs.js"

/**
 * @since 0.1.0
 */
export * as Metrics from "./Metrics.js"

/**
 * @since 0.1.0
 */
export * as Profile from "./Profile.js"

/**
 * @since 0.1.0
 */
export * as Purge from "./Purge.js"

/**
 * @since 0.1.0
 */
export * as Status from "./Status.js"
