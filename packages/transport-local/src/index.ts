/**
 * @since 0.1.0
 */
export * as TransportLocal from "./TransportLocal.js"

/**
 * The local transport Layer (also `TransportLocal.layer`); `Weaver.run`
 * loads it by this name when no deployer launched the process.
 *
 * @since 0.1.0
 */
export { layer } from "./TransportLocal.js"
