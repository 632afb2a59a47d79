/**
 * The transport of a process in a multiprocess deployment: components of
 * the process's own colocation group are called directly; calls to any other
 * component first activate it (its group is started if it is not running)
 * and then go over the RPC transport to its replicas, following every
 * routing update the deployer pushes.
 *
 * @since 0.1.0
 */
import type { Certificates } from "@effect-weaver/runtime"
import { Transport, Weavelet } from "@effect-weaver/runtime"
import * as TransportRpc from "@effect-weaver/transport-rpc/TransportRpc"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"

/**
 * How the transport finds components: the deployer's side of the control
 * plane, seen from a weavelet.
 *
 * @since 0.1.0
 * @category models
 */
export interface Placement {
  readonly deploymentId: string
  /** Starts the component's group if needed (Service Weaver's `ActivateComponent`). */
  readonly activate: (component: string) => Effect.Effect<void, unknown>
  /** The component's replica addresses, a new set on every change. */
  readonly routing: (component: string) => Stream.Stream<ReadonlyArray<string>, unknown>
  /** Mutual TLS credentials of this process: calls then go over TLS, to replicas whose certificate names the component. */
  readonly tls?: Certificates.Credentials | undefined
}

/**
 * The replica sets of a component, activating it first. A failure of the
 * control plane ends the stream (the last replica set stays in use).
 *
 * @since 0.1.0
 * @category constructors
 */
export const resolve = (placement: Placement) => (component: string): Stream.Stream<ReadonlyArray<string>> =>
  Stream.unwrap(Effect.as(placement.activate(component), placement.routing(component))).pipe(
    Stream.tapErrorCause((cause) =>
      Effect.logWarning(`routing of ${component} stopped`, cause).pipe(Effect.annotateLogs("transport", "multi"))
    ),
    Stream.catchAllCause(() => Stream.empty)
  )

/**
 * How long the first call to a component waits for its group to have a
 * ready replica (process start included) before calls fail as unreachable.
 *
 * @since 0.1.0
 * @category constants
 */
export const startTimeout = Duration.seconds(60)

/**
 * The transport as a scoped value: the RPC transport, whose first connection
 * to a remote component waits (up to {@link startTimeout}) for the component
 * to be activated and one of its replicas to be ready.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = Effect.fnUntraced(function*(placement: Placement) {
  const rpc = yield* TransportRpc.make({
    deploymentId: placement.deploymentId,
    resolve: resolve(placement),
    tls: placement.tls
  })
  const transport: Transport.Transport["Type"] = {
    name: "multi",
    connect: (component) =>
      Effect.flatMap(Weavelet.Weavelet, (weavelet) => {
        if (weavelet.hosts(component.componentName)) return rpc.connect(component)
        const ready = resolve(placement)(component.componentName).pipe(
          Stream.take(1),
          Stream.runDrain,
          Effect.timeout(startTimeout),
          Effect.ignore
        )
        return Effect.zipRight(ready, rpc.connect(component))
      })
  }
  return transport
})

/**
 * Provides the transport.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (placement: Placement): Layer.Layer<Transport.Transport> =>
  Layer.scoped(Transport.Transport, make(placement))
