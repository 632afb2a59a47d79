/**
 * The runtime tier: what deployers and transports build on. Applications
 * import `@effect-weaver/core` instead.
 *
 * @since 0.1.0
 */

/**
 * Host and port strings.
 *
 * @since 0.1.0
 */
export * as Address from "./Address.js"

/**
 * Applications as the runtime sees them.
 *
 * @since 0.1.0
 */
export * as App from "./App.js"

/**
 * Mutual TLS between the processes of a deployment.
 *
 * @since 0.1.0
 */
export * as Certificates from "./Certificates.js"

/**
 * Component declarations and implementations.
 *
 * @since 0.1.0
 */
export * as Component from "./Component.js"

/**
 * Errors of component calls and construction.
 *
 * @since 0.1.0
 */
export * as ComponentError from "./ComponentError.js"

/**
 * The config check a deployer asks of an application's binary.
 *
 * @since 0.1.0
 */
export * as ConfigCheck from "./ConfigCheck.js"

/**
 * The control plane between envelopes and weavelets.
 *
 * @since 0.1.0
 */
export * as Control from "./Control.js"

/**
 * The deployer's side of one weavelet process.
 *
 * @since 0.1.0
 */
export * as Envelope from "./Envelope.js"

/**
 * Metrics of served HTTP requests.
 *
 * @since 0.1.0
 */
export * as HttpMetrics from "./HttpMetrics.js"

/**
 * The kind (protocol) of a listener.
 *
 * @since 0.2.0
 */
export * as Listener from "./Listener.js"

/**
 * Log files of deployments.
 *
 * @since 0.1.0
 */
export * as LogFile from "./LogFile.js"

/**
 * Log entries and loggers.
 *
 * @since 0.1.0
 */
export * as Logging from "./Logging.js"

/**
 * Method metrics of component calls.
 *
 * @since 0.1.0
 */
export * as MethodMetrics from "./MethodMetrics.js"

/**
 * Application metrics.
 *
 * @since 0.1.0
 */
export * as Metrics from "./Metrics.js"

/**
 * Traces as Perfetto JSON.
 *
 * @since 0.1.0
 */
export * as Perfetto from "./Perfetto.js"

/**
 * CPU and heap profiles.
 *
 * @since 0.1.0
 */
export * as Profiling from "./Profiling.js"

/**
 * Metrics in Prometheus' text format.
 *
 * @since 0.1.0
 */
export * as Prometheus from "./Prometheus.js"

/**
 * The registry of deployments on this machine.
 *
 * @since 0.1.0
 */
export * as Registry from "./Registry.js"

/**
 * How a process runs an application.
 *
 * @since 0.1.0
 */
export * as Runtime from "./Runtime.js"

/**
 * The status server of a process.
 *
 * @since 0.1.0
 */
export * as StatusServer from "./StatusServer.js"

/**
 * Tracing and the trace store.
 *
 * @since 0.1.0
 */
export * as Tracing from "./Tracing.js"

/**
 * The Transport SPI.
 *
 * @since 0.1.0
 */
export * as Transport from "./Transport.js"

/**
 * The weavelet: hosting components and the call pipeline.
 *
 * @since 0.1.0
 */
export * as Weavelet from "./Weavelet.js"

/**
 * weaver.toml.
 *
 * @since 0.1.0
 */
export * as WeaverConfig from "./WeaverConfig.js"

/**
 * Transport failures of a component call.
 *
 * @since 0.1.0
 */
export { RemoteCallError } from "./ComponentError.js"
