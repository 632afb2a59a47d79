/**
 * Placement and routing: the colocation groups of a multiprocess deployment,
 * their replica slots, and the ready addresses of each group that every
 * `Routing` stream of its components follows.
 *
 * @internal
 */
import * as ConfigCheck from "@effect-weaver/runtime/ConfigCheck"
import type * as Envelope from "@effect-weaver/runtime/Envelope"
import type * as WeaverConfig from "@effect-weaver/runtime/WeaverConfig"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import type { GroupInfo } from "../Deployer.js"
import type * as Status from "../Status.js"

/**
 * The name of the main component's colocation group.
 *
 * @internal
 */
export const mainGroup = "main"

/**
 * One replica slot of a group: the replica running in it, if any. A replica
 * that exits is restarted in the same slot.
 *
 * @internal
 */
export interface Slot {
  readonly index: number
  current: { readonly envelope: Envelope.Envelope["Type"]; address: string | undefined } | undefined
  /** Set when the slot's replica crash-looped and is not restarted again. */
  givenUp: boolean
}

/** @internal */
export interface Group {
  readonly name: string
  readonly components: ReadonlyArray<string>
  readonly runMain: boolean
  /** The singletons it holds: when any, it has one slot (see `ConfigCheck.singletonsIn`). */
  readonly singletons: ReadonlyArray<string>
  readonly slots: Array<Slot>
  /** The ready addresses: external replicas', then those of the slots'. */
  readonly addresses: SubscriptionRef.SubscriptionRef<ReadonlyArray<string>>
  /** Replicas hosted outside the deployer's processes (the in-process main group). */
  readonly external: Array<string>
  started: boolean
  restarts: number
}

/** @internal */
export interface Groups {
  /** The groups formed so far, by name. */
  readonly all: ReadonlyMap<string, Group>
  /** The components the in-process main group hosts besides main (weavertest fakes). */
  readonly external: ReadonlySet<string>
  /** The group hosting `component`, formed on first use. */
  readonly of: (component: string) => Group
}

/**
 * Forms groups as Service Weaver does: one per `colocate` entry of
 * weaver.toml, one per other component; the one holding main (and the
 * `external` components) is named {@link mainGroup}. Each has `[multi]
 * replicas` slots, but a group holding one of `singletons` has one.
 *
 * @internal
 */
export const make = (
  config: WeaverConfig.WeaverConfig,
  externalComponents: ReadonlyArray<string>,
  singletons: ReadonlyArray<string> = []
): Groups => {
  const all = new Map<string, Group>()
  const external = new Set(externalComponents)
  const nameOf = (component: string): string => {
    if (component === mainGroup || external.has(component)) return mainGroup
    for (const entry of config.serviceweaver.colocate) {
      if (entry.includes(component)) return entry.includes(mainGroup) ? mainGroup : entry[0]!
    }
    return component
  }
  const of = (component: string): Group => {
    const name = nameOf(component)
    let group = all.get(name)
    if (group === undefined) {
      const entry = config.serviceweaver.colocate.find((e) => e.includes(component) || e.includes(name))
      const components = name === mainGroup
        ? [mainGroup, ...(entry ?? []).filter((c) => c !== mainGroup), ...external]
        : [...(entry ?? [component])]
      const held = ConfigCheck.singletonsIn({ singletons }, components)
      group = {
        name,
        components,
        runMain: name === mainGroup,
        singletons: held,
        slots: Array.from(
          { length: held.length > 0 ? 1 : config.multi.replicas },
          (_, index) => ({ index, current: undefined, givenUp: false })
        ),
        addresses: Effect.runSync(SubscriptionRef.make<ReadonlyArray<string>>([])),
        external: [],
        started: false,
        restarts: 0
      }
      all.set(name, group)
    }
    return group
  }
  return { all, external, of }
}

/**
 * Sets the group's ready addresses, which every `Routing` stream of its
 * components then receives.
 *
 * @internal
 */
export const publish = (group: Group): Effect.Effect<void> =>
  SubscriptionRef.set(group.addresses, [
    ...group.external,
    ...group.slots.flatMap((s) => s.current?.address === undefined ? [] : [s.current.address])
  ])

/**
 * The `Routing` stream of a component of `group`: its ready addresses once
 * there is one, then every change.
 *
 * @internal
 */
export const routing = (group: Group): Stream.Stream<ReadonlyArray<string>> =>
  group.addresses.changes.pipe(
    Stream.dropWhile((addresses) => addresses.length === 0),
    Stream.changesWith((a, b) => a.length === b.length && a.every((x, i) => x === b[i]))
  )

/**
 * The pids of the group's running replicas.
 *
 * @internal
 */
export const pids = (group: Group): ReadonlyArray<number> =>
  group.slots.flatMap((s) => s.current === undefined ? [] : [s.current.envelope.pid])

/**
 * The group as `Deployer.groups` reports it.
 *
 * @internal
 */
export const info = (group: Group): GroupInfo => ({
  name: group.name,
  components: group.components,
  started: group.started,
  restarts: group.restarts,
  givenUp: group.slots.filter((slot) => slot.givenUp).length,
  replicas: group.slots.flatMap((s) =>
    s.current === undefined
      ? []
      : [{ replicaId: s.current.envelope.replicaId, pid: s.current.envelope.pid, address: s.current.address }]
  )
})

/**
 * The group and its ready replicas, as the status server reaches them.
 *
 * @internal
 */
export const statusGroup = (group: Group): Status.Group => ({
  name: group.name,
  replicas: group.slots.flatMap((slot) => {
    const current = slot.current
    return current === undefined || current.address === undefined ? [] : [{
      replicaId: current.envelope.replicaId,
      metrics: current.envelope.metrics,
      profile: current.envelope.profile
    }]
  })
})
