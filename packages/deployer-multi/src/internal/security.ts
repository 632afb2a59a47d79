/**
 * Mutual TLS and call-graph authorization of a multiprocess deployment: the
 * deployment's certificate authority, made when it starts, a certificate
 * per colocation group (issued once, handed to each replica over its control
 * socket), and the call graph the replicas report as their components
 * resolve one another, from which a group's callable components follow.
 *
 * @internal
 */
import * as Certificates from "@effect-weaver/runtime/Certificates"
import * as Control from "@effect-weaver/runtime/Control"
import * as Effect from "effect/Effect"
import type * as Groups from "./groups.js"

/** @internal */
export interface Security {
  /** The credentials of `group`'s replicas. */
  readonly credentials: (group: Groups.Group) => Effect.Effect<Certificates.Credentials, Control.ControlError>
  /**
   * The components a peer of group `name` may call: those its members'
   * code resolved (`Requires`). A group the deployment has not formed may
   * call nothing.
   */
  readonly authorize: (name: string) => ReadonlyArray<string>
  /** Records an edge of the call graph: the code of `caller` resolved `component`. */
  readonly requires: (caller: string, component: string) => void
}

/**
 * Makes the deployment's authority. `groups` are the deployment's groups,
 * by name.
 *
 * @internal
 */
export const make = (
  app: string,
  groups: ReadonlyMap<string, Groups.Group>
): Effect.Effect<Security, Certificates.CertificateError> =>
  Effect.gen(function*() {
    const authority = yield* Certificates.makeAuthority(app)
    const issued = new Map<string, Effect.Effect<Certificates.Credentials, Control.ControlError>>()
    const graph = new Map<string, Set<string>>()
    return {
      credentials: (group) => {
        let credentials = issued.get(group.name)
        if (credentials === undefined) {
          credentials = Effect.runSync(Effect.cached(
            authority.issue({ group: group.name, components: group.components }).pipe(
              Effect.mapError((error) => new Control.ControlError({ message: error.message }))
            )
          ))
          issued.set(group.name, credentials)
        }
        return credentials
      },
      authorize: (name) => {
        const group = groups.get(name)
        if (group === undefined) return []
        const callable = new Set<string>()
        for (const member of group.components) {
          for (const component of graph.get(member) ?? []) callable.add(component)
        }
        return [...callable]
      },
      requires: (caller, component) => {
        let required = graph.get(caller)
        if (required === undefined) graph.set(caller, required = new Set())
        required.add(component)
      }
    }
  })

/**
 * `Authorize` and `Requires` as the envelope handler and the deployer
 * service answer them: without mutual TLS, every component may be called
 * and no edge is kept.
 *
 * @internal
 */
export const authorize = (security: Security | undefined, name: string): Effect.Effect<ReadonlyArray<string>> =>
  Effect.sync(() => security?.authorize(name) ?? [Control.anyComponent])

/** @internal */
export const requires = (security: Security | undefined, caller: string, component: string): Effect.Effect<void> =>
  Effect.sync(() => security?.requires(caller, component))
