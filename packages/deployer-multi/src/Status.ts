/**
 * The status server of a multiprocess deployment: core's `StatusServer`
 * (`/debug/weaver/prometheus`, `/metrics`, `/healthz`, `/profile`, traces)
 * fed by the deployer's replicas through the control plane instead of by
 * its own process.
 *
 * - Metrics are the snapshots of every ready replica (`GetMetrics`), merged
 *   with `Prometheus.merge`: each series keeps its values and gains the
 *   labels of its replica (`serviceweaver_node` is the replica id).
 * - A profile profiles one randomly chosen replica of every colocation group
 *   in parallel (`GetProfile`), scales each by its group's replica count and
 *   merges them, as Service Weaver's `ProfileGroups` does. Every sample is
 *   labelled `serviceweaver_group` with its group, for `pprof -tagfocus`.
 *
 * @since 0.1.0
 */
import type { Tracing } from "@effect-weaver/runtime"
import { Profiling, Prometheus, StatusServer } from "@effect-weaver/runtime"
import type { ServeError } from "@effect/platform/HttpServerError"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"

/**
 * One ready replica, as the status server reaches it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Replica {
  readonly replicaId: string
  readonly metrics: Effect.Effect<ReadonlyArray<Prometheus.MetricSnapshot>, { readonly message: string }>
  readonly profile: (options: Profiling.CollectOptions) => Effect.Effect<Uint8Array, Profiling.ProfilingError>
}

/**
 * One colocation group and its ready replicas.
 *
 * @since 0.1.0
 * @category models
 */
export interface Group {
  readonly name: string
  readonly replicas: ReadonlyArray<Replica>
}

/**
 * The pprof label naming the colocation group of every sample of a merged
 * profile.
 *
 * @since 0.1.0
 * @category constants
 */
export const groupLabel = "serviceweaver_group"

/**
 * The snapshots of every replica, merged and labelled by replica (see
 * `Prometheus.merge`). Replicas that do not answer are left out, with a
 * warning logged.
 *
 * @since 0.1.0
 * @category accessors
 */
export const metrics = Effect.fnUntraced(function*(
  origin: { readonly app: string; readonly deploymentId: string },
  groups: ReadonlyArray<Group>
) {
  const replicas = groups.flatMap((group) => group.replicas)
  const results = yield* Effect.forEach(replicas, (replica) => Effect.either(replica.metrics), {
    concurrency: "unbounded"
  })
  const gathered: Array<Prometheus.Replica> = []
  for (const [i, result] of results.entries()) {
    const replicaId = replicas[i]!.replicaId
    if (Either.isRight(result)) {
      gathered.push({ app: origin.app, deploymentId: origin.deploymentId, replicaId, metrics: result.right })
    } else {
      yield* Effect.logWarning(`metrics of replica ${replicaId} left out: ${result.left.message}`)
    }
  }
  return Prometheus.merge(gathered)
})

/**
 * Profiles one randomly chosen replica of every group that has one, in
 * parallel, scales each profile by its group's replica count and merges
 * them. Groups whose profile fails are left out with a warning logged; if
 * every group fails, so does the profile, with the first failure's reason
 * and every failure in its message.
 *
 * @since 0.1.0
 * @category accessors
 */
export const profileGroups = Effect.fnUntraced(function*(
  groups: ReadonlyArray<Group>,
  options: Profiling.CollectOptions
) {
  const live = groups.filter((group) => group.replicas.length > 0)
  if (live.length === 0) {
    return yield* new Profiling.ProfilingError({ reason: "failed", message: "no replica is ready to profile" })
  }
  const results = yield* Effect.forEach(live, (group) => {
    const replica = group.replicas[Math.floor(Math.random() * group.replicas.length)]!
    return replica.profile(options).pipe(
      Effect.flatMap((bytes) =>
        Profiling.merge([bytes], { scale: group.replicas.length, labels: { [groupLabel]: group.name } })
      ),
      Effect.mapError((error) =>
        new Profiling.ProfilingError({
          reason: error.reason,
          message: `group ${group.name} (replica ${replica.replicaId}): ${error.message}`
        })
      ),
      Effect.either
    )
  }, { concurrency: "unbounded" })
  const profiles: Array<Uint8Array> = []
  const failures: Array<Profiling.ProfilingError> = []
  for (const result of results) {
    if (Either.isRight(result)) profiles.push(result.right)
    else failures.push(result.left)
  }
  if (profiles.length === 0) {
    return yield* new Profiling.ProfilingError({
      reason: failures[0]!.reason,
      message: failures.map((failure) => failure.message).join("; ")
    })
  }
  for (const failure of failures) yield* Effect.logWarning(`profile left out: ${failure.message}`)
  return yield* Profiling.merge(profiles)
})

/**
 * Options of {@link make}.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly app: string
  readonly deploymentId: string
  /** The groups and their ready replicas, read on every request. */
  readonly groups: Effect.Effect<ReadonlyArray<Group>>
  /** The deployment's trace store, if it keeps one. */
  readonly traces?: Tracing.Store | undefined
}

/**
 * Starts the deployment's status server on `127.0.0.1` with a free port, for
 * the lifetime of the scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<StatusServer.StatusServer["Type"], ServeError, Scope.Scope> =>
  StatusServer.make(serverOptions(options))

/**
 * The deployment's status server as a Layer of the runtime's
 * `StatusServer` service.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<StatusServer.StatusServer, ServeError> =>
  StatusServer.layer(serverOptions(options))

/** The runtime's status server, fed by the replicas instead of by this process. */
const serverOptions = (options: Options): StatusServer.Options => ({
  app: options.app,
  deploymentId: options.deploymentId,
  replicaId: "deployer",
  traces: options.traces,
  snapshots: Effect.flatMap(options.groups, (groups) => metrics(options, groups)),
  profile: (collect) => Effect.flatMap(options.groups, (groups) => profileGroups(groups, collect))
})
