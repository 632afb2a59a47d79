/**
 * What application code imports. The runtime these build on is
 * `@effect-weaver/runtime`, for deployer and transport authors.
 *
 * @since 0.1.0
 */

/**
 * @since 0.1.0
 */
export * as Component from "@effect-weaver/runtime/Component"

/**
 * @since 0.1.0
 */
export * as ComponentError from "@effect-weaver/runtime/ComponentError"

/**
 * @since 0.1.0
 */
export * as Metrics from "@effect-weaver/runtime/Metrics"

/**
 * @since 0.1.0
 */
export * as Transport from "@effect-weaver/runtime/Transport"

/**
 * @since 0.1.0
 */
export * as Weaver from "./Weaver.js"

/**
 * @since 0.1.0
 */
export * as WeaverConfig from "@effect-weaver/runtime/WeaverConfig"

/**
 * Transport failures of a component call; see `ComponentError.RemoteCallError`.
 * Exported by name because every caller may need to catch it.
 *
 * @since 0.1.0
 */
export { RemoteCallError } from "@effect-weaver/runtime/ComponentError"
