/**
 * The deployment behind the weavertest Multi runner: the multi deployer
 * (`@effect-weaver/deployer-multi`) starting the app's groups as processes,
 * while the test process plays the main group: it runs the test body and
 * serves the fakes to the replicas over the wire protocol.
 *
 * @since 0.1.0
 */
import * as Deployer from "@effect-weaver/deployer-multi/Deployer"
import type { WeaverConfig } from "@effect-weaver/runtime"
import { App } from "@effect-weaver/runtime"
import { Weavelet as CoreWeavelet } from "@effect-weaver/runtime"
import type { Transport } from "@effect-weaver/runtime"
import * as TransportMultiprocess from "@effect-weaver/transport-multiprocess/TransportMultiprocess"
import * as Server from "@effect-weaver/transport-rpc/Server"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Url from "node:url"

/**
 * What the `weavertest` Multi runner needs to run a test body against a
 * multiprocess deployment.
 *
 * @since 0.1.0
 * @category models
 */
export interface TestDeployment {
  readonly deployer: Deployer.Deployer["Type"]
  /** The transport of the test process, which plays the main group. */
  readonly transport: Layer.Layer<Transport.Transport>
  /** Serves the fakes of the test process to the replicas; call once its weavelet exists. */
  readonly started: (weavelet: CoreWeavelet.Weavelet["Type"]) => Effect.Effect<void, never, Scope.Scope>
  /** Reports an edge of the call graph the test process sees to the deployer (mutual TLS authorizes by it). */
  readonly onRequire: (caller: string, component: string) => void
}

// Multi tests start processes; a few deployments at a time keep a small machine responsive.
const testPermits = Effect.unsafeMakeSemaphore(2)

/**
 * Deploys `app` for a test: the test process hosts the main group (the test
 * body and the fakes), every other component runs in its own group (or its
 * `colocate` group) of `[multi] replicas` processes (2 by default), started
 * on first use, but a singleton's group of one process, started at once.
 * The replicas import the app from the module that called `Weaver.app`
 * (`app.module`), so the app must be defined in a module of its own, not in
 * the test file. At most two test deployments run at once in a
 * process; the others wait.
 *
 * @since 0.1.0
 * @category testing
 */
export const make = (options: {
  readonly app: App.App<any, any>
  readonly config: WeaverConfig.WeaverConfig
  readonly configText: string | undefined
  readonly deploymentId: string
  readonly fakes: ReadonlyMap<string, CoreWeavelet.AnyHandlers>
  readonly verbose?: boolean | undefined
  /**
   * How a replica loads the app: the `node` arguments that start it and the
   * URL of the module it imports the app from (the weavertest Multi runner
   * gives a bundle of the app and the weavelet). By default a replica imports
   * `app.module` itself, through tsx and with this repository's source
   * condition, which only works where tsx is installed.
   */
  readonly child?: { readonly args: ReadonlyArray<string>; readonly moduleUrl: string } | undefined
}): Effect.Effect<TestDeployment, Deployer.DeployError, Scope.Scope> =>
  Effect.gen(function*() {
    const module = options.app.module
    if (module === undefined) {
      return yield* new Deployer.DeployError({
        reason: "the Multi runner loads the app in other processes, but cannot tell which module defines it: " +
          "define it with Weaver.app in a module of its own"
      })
    }
    yield* Effect.acquireRelease(testPermits.take(1), () => testPermits.release(1))
    const url = options.child?.moduleUrl ?? (module.startsWith("file:") ? module : Url.pathToFileURL(module).href)
    const deployer = yield* Deployer.make({
      app: options.config.serviceweaver.name ?? "weavertest",
      deploymentId: options.deploymentId,
      config: options.config,
      configSource: { file: options.config.file, dir: options.config.dir, text: options.configText ?? "" },
      launch: {
        command: process.execPath,
        args: options.child?.args ?? [
          "--conditions=@effect-weaver/source",
          "--import",
          "tsx",
          "--input-type=module",
          "--eval",
          `import("@effect-weaver/transport-multiprocess/Weavelet").then((m) => m.main())`
        ],
        env: { ...process.env },
        cwd: process.cwd()
      },
      appModule: { url, components: options.app.implementations.map((impl) => impl.component.componentName) },
      mainInProcess: true,
      external: [...options.fakes.keys()],
      singletons: App.singletons(options.app),
      register: false,
      logFiles: false,
      output: options.verbose ? undefined : () => undefined
    })
    // This process hosts the main group: under `[multi] mtls` it calls and serves over mutual TLS with the
    // group's certificate (credentials is undefined otherwise: plain TCP).
    const credentials = yield* deployer.credentials(Deployer.mainGroup).pipe(
      Effect.mapError((error) => new Deployer.DeployError({ reason: `mutual TLS: ${error.message}` }))
    )
    const transport = TransportMultiprocess.layer({
      deploymentId: deployer.deploymentId,
      activate: deployer.activate,
      routing: deployer.routing,
      tls: credentials
    })
    const started = (weavelet: CoreWeavelet.Weavelet["Type"]) =>
      Effect.gen(function*() {
        const fakes = options.fakes
        // The fakes are the main group's components: replicas that call them reach this process.
        const serving: CoreWeavelet.Weavelet["Type"] = {
          ...weavelet,
          hosts: (name) => fakes.has(name),
          handlers: (name) => {
            const fake = fakes.get(name)
            return fake !== undefined ? Effect.succeed(fake) : weavelet.handlers(name)
          }
        }
        const server = yield* Server.serve({
          host: "127.0.0.1",
          port: 0,
          tls: credentials === undefined
            ? undefined
            : { credentials, authorize: (peer) => deployer.authorize(peer.group) }
        }).pipe(
          Effect.provideService(CoreWeavelet.Weavelet, serving),
          Effect.orDie
        )
        yield* deployer.addExternalReplica(Deployer.mainGroup, server.address)
      })
    // Edges reach the deployer at once (it is in this process), before any call they authorize.
    const onRequire = (caller: string, component: string) => Effect.runSync(deployer.requires(caller, component))
    return { deployer, transport, started, onRequire }
  })
