/**
 * What the steps of a multiprocess deployment share: its identity and
 * options, and the state each step reads or changes.
 *
 * @internal
 */
import type * as Envelope from "@effect-weaver/runtime/Envelope"
import type * as Registry from "@effect-weaver/runtime/Registry"
import type * as Tracing from "@effect-weaver/runtime/Tracing"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { Options, Restart } from "../Deployer.js"
import * as Groups from "./groups.js"
import type * as Listeners from "./listeners.js"
import type * as Logs from "./logs.js"
import type * as Security from "./security.js"

/** @internal */
export interface Deployment {
  readonly app: string
  readonly deploymentId: string
  readonly options: Options
  readonly restart: Restart
  /** The replicas' health probe, checked; `false` when off. */
  readonly health: Envelope.HealthOptions | false
  /** The deployment's scope: replicas, proxies and log files live as long as it. */
  readonly scope: Scope.Scope
  /** The directory of the envelopes' control sockets. */
  readonly socketDir: string
  readonly logs: Logs.Logs
  readonly groups: Groups.Groups
  readonly listeners: Listeners.Listeners
  readonly traces: Tracing.Store
  /** Mutual TLS and call-graph authorization; undefined when `[multi] mtls` is off. */
  readonly security: Security.Security | undefined
  /** Changes the registry entry (a no-op when the deployment is not registered). */
  readonly updateRegistry: (f: (d: Registry.Deployment) => Registry.Deployment) => Effect.Effect<void>
  /** Completed, with the reason, when the deployment can serve nothing any more (see {@link givenUp}). */
  readonly failed: Deferred.Deferred<string>
  /** Set when the deployment ends: a replica that exits then is not restarted. */
  stopping: boolean
}

/**
 * Writes the pids of every started group and the addresses of the listeners'
 * proxies to the registry entry (`weaver multi status`).
 *
 * @internal
 */
export const writeRegistry = (deployment: Deployment): Effect.Effect<void> =>
  deployment.updateRegistry((d) => ({
    ...d,
    components: [...deployment.groups.all.values()].filter((g) => g.started).flatMap((g) => {
      const pids = Groups.pids(g)
      const givenUp = g.slots.filter((slot) => slot.givenUp).length
      return g.components.map((name) => ({
        name,
        pids: name === Groups.mainGroup && deployment.options.mainInProcess ? [process.pid] : pids,
        ...(givenUp > 0 ? { givenUp } : {})
      }))
    }),
    listeners: [...deployment.listeners.proxies.values()].map((p) => {
      const kind = p.kind()
      return { name: p.listener, address: p.address, ...(kind === undefined ? {} : { kind }) }
    })
  }))

/**
 * A replica of `group` was given up on (its slot is marked so), the last
 * one having ended with `lastExit`. Once no replica of the main group is
 * left nor will be restarted, the deployment serves nothing: it is recorded
 * as failed in the registry (`weaver multi status` shows it, after the
 * deployer is gone too) and {@link Deployment.failed} completes, which ends
 * the deployment.
 *
 * @internal
 */
export const givenUp = (deployment: Deployment, group: Groups.Group, lastExit: string): Effect.Effect<void> =>
  Effect.suspend(() => {
    const main = group.name === Groups.mainGroup && !deployment.options.mainInProcess
    if (!main || !group.slots.every((slot) => slot.givenUp) || deployment.stopping) return writeRegistry(deployment)
    const reason = `every replica of main crash-looped and was given up on (the last: ${lastExit}); nothing is ` +
      `left to serve the listeners, so deployment ${deployment.deploymentId.slice(0, 8)} of ${deployment.app} ` +
      `stops. See "weaver multi logs" for the replicas' output.`
    return writeRegistry(deployment).pipe(
      Effect.zipRight(deployment.updateRegistry((d) => ({ ...d, failure: { reason, at: Date.now() } }))),
      Effect.zipRight(Deferred.succeed(deployment.failed, reason))
    )
  })
