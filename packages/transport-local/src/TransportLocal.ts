/**
 * The local transport: every component is hosted in this process and called
 * directly, without encoding. The reference semantics the other transports
 * are measured against, and the single-process deployment.
 *
 * @since 0.1.0
 */
// Deep imports: the runtime's index would also load the deployer API (@effect/rpc) into every single process.
import * as Transport from "@effect-weaver/runtime/Transport"
import * as Weavelet from "@effect-weaver/runtime/Weavelet"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

/**
 * The local transport as a value.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Transport.Transport["Type"] = {
  name: "local",
  connect: (component) =>
    Effect.flatMap(Weavelet.Weavelet, (weavelet) =>
      weavelet.hosts(component.componentName)
        ? Weavelet.localConnection(component)
        : Effect.die(
          new Error(
            `component ${component.componentName} is not hosted in this process and the local transport cannot reach it`
          )
        ))
}

/**
 * Provides the local transport.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<Transport.Transport> = Layer.succeed(Transport.Transport, make)
