/**
 * The Kubernetes deployer (`weaver kube deploy`), built only on
 * `@effect-weaver/runtime`.
 *
 * @since 0.1.0
 */

/**
 * What runs in every pod: the envelope of its weavelet.
 *
 * @since 0.1.0
 */
export * as Babysitter from "./Babysitter.js"

/**
 * Builds, writes and applies a version.
 *
 * @since 0.1.0
 */
export * as Deployer from "./Deployer.js"

/**
 * The kube config (YAML).
 *
 * @since 0.1.0
 */
export * as KubeConfig from "./KubeConfig.js"

/**
 * The Kubernetes objects of a version.
 *
 * @since 0.1.0
 */
export * as Manifests from "./Manifests.js"

/**
 * The versions, groups, pods and listeners in a cluster.
 *
 * @since 0.1.0
 */
export * as Status from "./Status.js"
