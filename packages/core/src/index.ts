/**
 * @since 0.1.0
 */
export * as Address from "./Address.js"

/**
 * @since 0.1.0
 */
export * as Component from "./Component.js"

/**
 * @since 0.1.0
 */
export * as ComponentError from "./ComponentError.js"

/**
 * @since 0.1.0
 */
export * as HttpMetrics from "./HttpMetrics.js"

/**
 * @since 0.1.0
 */
export * as Logging from "./Logging.js"

/**
 * @since 0.1.0
 */
export * as MethodMetrics from "./MethodMetrics.js"

/**
 * @since 0.1.0
 */
export * as Metrics from "./Metrics.js"

/**
 * @since 0.1.0
 */
export * as Profiling from "./Profiling.js"

/**
 * @since 0.1.0
 */
export * as Perfetto from "./Perfetto.js"

/**
 * @since 0.1.0
 */
export * as Prometheus from "./Prometheus.js"

/**
 * @since 0.1.0
 */
export * as Registry from "./Registry.js"

/**
 * @since 0.1.0
 */
export * as StatusServer from "./StatusServer.js"

/**
 * @since 0.1.0
 */
export * as Tracing from "./Tracing.js"

/**
 * @since 0.1.0
 */
export * as Transport from "./Transport.js"

/**
 * @since 0.1.0
 */
export * as Weavelet from "./Weavelet.js"

/**
 * @since 0.1.0
 */
export * as Weaver from "./Weaver.js"

/**
 * @since 0.1.0
 */
export * as WeaverConfig from "./WeaverConfig.js"

/**
 * Transport failures of a component call; see `ComponentError.RemoteCallError`.
 * Exported by name because every caller may need to catch it.
 *
 * @since 0.1.0
 */
export { RemoteCallError } from "./ComponentError.js"
