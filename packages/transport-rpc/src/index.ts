/**
 * @since 0.1.0
 */
export * as Balancer from "./Balancer.js"

/**
 * @since 0.1.0
 */
export * as Client from "./Client.js"

/**
 * @since 0.1.0
 */
export * as Server from "./Server.js"

/**
 * @since 0.1.0
 */
export * as TransportRpc from "./TransportRpc.js"

/**
 * @since 0.1.0
 */
export * as Wire from "./Wire.js"
