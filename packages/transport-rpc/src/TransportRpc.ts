/**
 * The RPC transport as Layers for core's `Transport` tag.
 *
 * - {@link layer}: the client side for a deployment. Components hosted in
 *   this process are called directly; the others over the wire, on replicas
 *   found through `resolve`. Serve this process's components with
 *   `Server.serve`.
 * - {@link layerTest}: the `weavertest` RPC runner. One process, but every
 *   call between components crosses a real loopback socket, and every
 *   retriable call is executed twice.
 *
 * @since 0.1.0
 */
import { Certificates, Transport, Weavelet } from "@effect-weaver/runtime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Client from "./Client.js"
import * as Server from "./Server.js"

/**
 * Options of {@link layer}: the client options, with the deployment id
 * defaulting to the weavelet's.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends Omit<Client.Options, "deploymentId"> {
  readonly deploymentId?: string | undefined
}

/**
 * The transport as a scoped value.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = Effect.fnUntraced(function*(options: Options) {
  const scope = yield* Effect.scope
  const clients = new Map<string, Effect.Effect<Client.Client>>()
  const clientFor = (deploymentId: string) => {
    let client = clients.get(deploymentId)
    if (client === undefined) {
      client = Effect.runSync(Effect.cached(Scope.extend(Client.make({ ...options, deploymentId }), scope)))
      clients.set(deploymentId, client)
    }
    return client
  }
  const transport: Transport.Transport["Type"] = {
    name: "rpc",
    connect: (component) =>
      Effect.flatMap(Weavelet.Weavelet, (weavelet) =>
        weavelet.hosts(component.componentName)
          ? Weavelet.localConnection(component)
          : Effect.flatMap(
            clientFor(options.deploymentId ?? weavelet.deploymentId),
            (client) => client.connect(component)
          ))
  }
  return transport
})

/**
 * Provides the RPC transport.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<Transport.Transport> =>
  Layer.scoped(Transport.Transport, make(options))

/**
 * The transport of the `weavertest` RPC runner: on first use it serves the
 * weavelet's components on `127.0.0.1:0` and connects a client to that
 * server, so every call goes through the wire protocol over a real socket;
 * every retriable call runs twice (the first result is discarded) to expose
 * methods that should be marked `retry: false`. Unless `mtls` is false, the
 * calls go over mutual TLS with a certificate naming every component, and
 * the server authorizes them by the call graph this process has seen (see
 * `Weavelet.requirements`): a call to a component no code resolved is
 * refused, as a deployment would refuse it.
 *
 * @since 0.1.0
 * @category testing
 */
export const makeTest = Effect.fnUntraced(function*(options?: {
  readonly duplicateRetriable?: boolean | undefined
  readonly mtls?: boolean | undefined
}) {
  const scope = yield* Effect.scope
  const started = new Map<Weavelet.Weavelet["Type"], Effect.Effect<Client.Client>>()
  const start = (weavelet: Weavelet.Weavelet["Type"]) =>
    Effect.gen(function*() {
      const credentials = options?.mtls === false ? undefined : yield* Effect.flatMap(
        testAuthority,
        (authority) => authority.issue({ group: "weavertest", components: [...weavelet.components.keys()] })
      )
      const server = yield* Server.serve({
        host: "127.0.0.1",
        port: 0,
        tls: credentials === undefined ? undefined : {
          credentials,
          authorize: () => Effect.sync(() => [...new Set([...weavelet.requirements.values()].flatMap((to) => [...to]))])
        }
      })
      return yield* Client.make({
        deploymentId: weavelet.deploymentId,
        resolve: () => Stream.make([server.address]),
        duplicateRetriable: options?.duplicateRetriable ?? true,
        tls: credentials
      })
    }).pipe(Effect.provideService(Weavelet.Weavelet, weavelet), Scope.extend(scope), Effect.orDie)
  const transport: Transport.Transport["Type"] = {
    name: "rpc",
    connect: (component) =>
      Effect.flatMap(Weavelet.Weavelet, (weavelet) => {
        let client = started.get(weavelet)
        if (client === undefined) {
          client = Effect.runSync(Effect.cached(start(weavelet)))
          started.set(weavelet, client)
        }
        return Effect.flatMap(client, (c) => c.connect(component))
      })
  }
  return transport
})

/** One authority for the test deployments of this process: made once, its key never leaves memory. */
const testAuthority = Effect.runSync(Effect.cached(Certificates.makeAuthority("weavertest")))

/**
 * Provides the transport of the `weavertest` RPC runner (see {@link makeTest}).
 *
 * @since 0.1.0
 * @category testing
 */
export const layerTest: Layer.Layer<Transport.Transport> = Layer.scoped(Transport.Transport, makeTest())
