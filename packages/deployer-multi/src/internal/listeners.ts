/**
 * The listeners of a multiprocess deployment: one proxy per listener,
 * balancing over the replicas that export it, at layer 7 (http) or layer 4
 * (tcp) as the replicas say.
 *
 * @internal
 */
import type * as Listener from "@effect-weaver/runtime/Listener"
import type * as WeaverConfig from "@effect-weaver/runtime/WeaverConfig"
import * as Effect from "effect/Effect"
import * as Scope from "effect/Scope"
import * as Proxy from "../Proxy.js"

/** @internal */
export interface Listeners {
  /** The running proxies, by listener. */
  readonly proxies: ReadonlyMap<string, Proxy.Proxy["Type"]>
  /**
   * The proxy of `listener`, started on first use (on its `[multi]
   * listeners.<name>.address`, or any free port) for the rest of the
   * deployment.
   */
  readonly proxyFor: (listener: string) => Effect.Effect<Proxy.Proxy["Type"], Proxy.ProxyError>
  /**
   * Replica `replicaId` serves `listener` on `address`, speaking `kind`: its
   * proxy sends requests (or connections) there too. Fails if another replica
   * serves the listener as another kind.
   */
  readonly exportListener: (
    replicaId: string,
    listener: string,
    address: string,
    kind: Listener.Kind
  ) => Effect.Effect<Proxy.Proxy["Type"], Proxy.ProxyError>
  /** Replica `replicaId` is gone: no proxy sends requests to it any more. */
  readonly drop: (replicaId: string) => void
}

/** @internal */
export const make = Effect.fnUntraced(function*(config: WeaverConfig.WeaverConfig) {
  const scope = yield* Effect.scope
  const proxies = new Map<string, Proxy.Proxy["Type"]>()
  const exported = new Map<string, Map<string, string>>() // replica id → listener → address
  const lock = yield* Effect.makeSemaphore(1)
  const proxyFor = (listener: string) =>
    lock.withPermits(1)(Effect.suspend(() => {
      const found = proxies.get(listener)
      if (found !== undefined) return Effect.succeed(found)
      const address = config.multi.listeners[listener]?.address ?? "localhost:0"
      return Proxy.make({ listener, address }).pipe(
        Scope.extend(scope),
        Effect.tap((proxy) =>
          Effect.zipRight(
            Effect.sync(() => proxies.set(listener, proxy)),
            Effect.logInfo(`proxy for listener ${listener} on ${proxy.address}`)
          )
        )
      )
    }))
  const refresh = () => {
    for (const [listener, proxy] of proxies) {
      const backends: Array<string> = []
      for (const byListener of exported.values()) {
        const address = byListener.get(listener)
        if (address !== undefined) backends.push(address)
      }
      proxy.setBackends(backends)
    }
  }
  const exportListener = (replicaId: string, listener: string, address: string, kind: Listener.Kind) =>
    proxyFor(listener).pipe(
      Effect.tap((proxy) => proxy.setKind(kind)),
      Effect.tap(() =>
        Effect.sync(() => {
          let byListener = exported.get(replicaId)
          if (byListener === undefined) {
            byListener = new Map()
            exported.set(replicaId, byListener)
          }
          byListener.set(listener, address)
          refresh()
        })
      )
    )
  const drop = (replicaId: string) => {
    exported.delete(replicaId)
    refresh()
  }
  return { proxies, proxyFor, exportListener, drop } satisfies Listeners
})
