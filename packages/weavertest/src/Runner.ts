/**
 * Runners: the same test body under every way of deploying an application,
 * as Service Weaver's `weavertest.Runner`.
 *
 * @since 0.1.0
 */
import { Weaver, WeaverConfig } from "@effect-weaver/core"
import type { Component } from "@effect-weaver/core"
import type { Transport } from "@effect-weaver/core"
import * as Deployer from "@effect-weaver/deployer-multi/Deployer"
import { App, Logging, Transport as CoreTransport, Weavelet } from "@effect-weaver/runtime"
import * as TransportLocal from "@effect-weaver/transport-local/TransportLocal"
import * as TransportRpc from "@effect-weaver/transport-rpc/TransportRpc"
import * as TransportWorker from "@effect-weaver/transport-worker/TransportWorker"
import { it } from "@effect/vitest"
import * as Arbitrary from "effect/Arbitrary"
import * as Console from "effect/Console"
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as FastCheck from "effect/FastCheck"
import * as FiberRef from "effect/FiberRef"
import * as HashSet from "effect/HashSet"
import * as Layer from "effect/Layer"
import * as Runtime from "effect/Runtime"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Crypto from "node:crypto"
import * as Chaos from "./Chaos.js"
import type * as Fake from "./Fake.js"
import * as AppBundle from "./internal/appBundle.js"
import * as MultiDeployment from "./MultiDeployment.js"

/**
 * What a runner is made of: a name (the prefix of its test names) and the
 * transport the application's weavelet runs over. The transport Layer is
 * built once per test, in the test's scope.
 *
 * @since 0.1.0
 * @category runtime
 */
export interface RunnerDefinition {
  readonly name: string
  readonly transport?: Layer.Layer<Transport.Transport, never, Scope.Scope> | undefined
  /**
   * For runners that place components elsewhere (the Multi runner starts
   * processes): builds, in the test's scope, the transport of the test
   * process and what the test process hosts. When set, `transport` is unused.
   */
  readonly deploy?: ((setup: DeploySetup) => Effect.Effect<Deployment, unknown, Scope.Scope>) | undefined
  /** The timeout of its tests, when the test gives none (vitest's default otherwise). */
  readonly timeout?: number | undefined
}

/**
 * What {@link RunnerDefinition.deploy} is given.
 *
 * @since 0.1.0
 * @category runtime
 */
export interface DeploySetup {
  readonly app: Weaver.App<any, any>
  readonly config: WeaverConfig.WeaverConfig
  /** The inline config text of the runner, if any. */
  readonly configText: string | undefined
  readonly deploymentId: string
  readonly fakes: ReadonlyMap<string, Weavelet.AnyHandlers>
  /** The faked components (their method specs). */
  readonly fakeComponents: ReadonlyArray<Component.Any>
}

/**
 * What {@link RunnerDefinition.deploy} returns.
 *
 * @since 0.1.0
 * @category runtime
 */
export interface Deployment {
  readonly transport: Layer.Layer<Transport.Transport>
  /** The components the test process hosts (constructs) itself. */
  readonly hosted: ReadonlySet<string>
  /** Called once the test process's weavelet exists, before the body runs. */
  readonly started: (weavelet: Weavelet.Weavelet["Type"]) => Effect.Effect<void, never, Scope.Scope>
  /** Told each edge of the call graph the test process sees (see `Weavelet.Options.onRequire`). */
  readonly onRequire?: ((caller: string, component: string) => void) | undefined
  /** The groups of replicas the deployment started, for chaos to kill (see `Chaos.killReplicas`). */
  readonly groups?: Effect.Effect<ReadonlyArray<Chaos.ReplicaGroup>> | undefined
}

/**
 * Options of a runner.
 *
 * - `config`: the text of a weaver.toml, parsed as a config file named
 *   `<weavertest config>`; component sections in it are decoded by the
 *   components' config schemas, and a mistake fails the test with a message
 *   naming the section and key.
 * - `fakes`: components to replace (see `weavertest.fake`).
 * - `chaos`: faults injected into the calls of the test's process, and
 *   replicas killed under Multi (see the `Chaos` module): e.g.
 *   `{ rate: 0.05, seed: 7, kill: true }`. Unset, it is read from the
 *   `WEAVERTEST_CHAOS` environment variable (`Chaos.fromEnv`); `false` turns
 *   it off whatever the environment says.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly config?: string | undefined
  readonly fakes?: ReadonlyArray<Fake.Fake> | undefined
  readonly chaos?: Chaos.Options | false | undefined
}

/**
 * What a test body may require: component clients (and a Scope, closed when
 * the test ends).
 *
 * @since 0.1.0
 * @category models
 */
export type Requirement = Context.TagClassShape<string, any> | Scope.Scope

/**
 * A way of running tests against an application.
 *
 * @since 0.1.0
 * @category models
 */
export interface Runner<Faked = never> {
  readonly name: string
  readonly options: Options
  /**
   * Registers a vitest test named `<runner>/<name>` (real time, as `it.live`)
   * that starts `app` and runs `body` with a client of every component in
   * its context (and the test's `Chaos.Chaos`). The body plays the main
   * component; the app's own main is not run. An app that uses a component
   * nobody implements is a compile error, unless the runner fakes it. Logs are quiet unless
   * `WEAVERTEST_VERBOSE` is set.
   */
  readonly test: <A, E, R extends Requirement>(
    name: string,
    app: Weaver.App<Faked, any>,
    body: Effect.Effect<A, E, R>,
    timeout?: number
  ) => void
  /**
   * The Effect {@link Runner.test} runs, for use in a test written by hand:
   * starts `app`, runs `body` with clients of every component, and stops the
   * app when the body ends.
   */
  readonly run: <A, E, R extends Requirement>(
    app: Weaver.App<Faked, any>,
    body: Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E | WeaverConfig.WeaverConfigError>
  /**
   * Registers a property test named `<runner>/<name>`: starts `app` once,
   * then runs `body` for inputs generated by fast-check from `arbitraries`
   * (fast-check arbitraries or Schemas, such as a method's payload schema;
   * see {@link payloadOf}), as an array or a record. A failing input is shrunk
   * and reported.
   */
  readonly prop: <const Arbs extends Arbitraries, A, E, R extends Requirement>(
    name: string,
    app: Weaver.App<Faked, any>,
    arbitraries: Arbs,
    body: (values: ArbitraryValues<Arbs>) => Effect.Effect<A, E, R>,
    options?: { readonly timeout?: number; readonly numRuns?: number }
  ) => void
  /** A runner like this one; the options given replace this runner's. */
  readonly with: <const O extends Options>(
    options: O
  ) => Runner<"fakes" extends keyof O ? Fake.Replaced<O["fakes"]> : Faked>
}

/**
 * Input generators for {@link Runner.prop}: fast-check arbitraries or
 * Schemas, as an array or a record.
 *
 * @since 0.1.0
 * @category models
 */
export type Arbitraries =
  | ReadonlyArray<Schema.Schema.Any | FastCheck.Arbitrary<any>>
  | { readonly [key: string]: Schema.Schema.Any | FastCheck.Arbitrary<any> }

/**
 * The values {@link Runner.prop} generates from {@link Arbitraries}.
 *
 * @since 0.1.0
 * @category models
 */
export type ArbitraryValues<Arbs extends Arbitraries> = {
  -readonly [K in keyof Arbs]: Arbs[K] extends FastCheck.Arbitrary<infer T> ? T : Schema.Schema.Type<Arbs[K]>
}

/**
 * The payload schema of a component method, for {@link Runner.prop}:
 * `runner.prop("…", app, [payloadOf(Reverser, "reverse")], ([s]) => …)`.
 *
 * @since 0.1.0
 * @category testing
 */
export const payloadOf = <T extends Component.Any, K extends keyof Component.MethodsOf<T> & string>(
  component: T,
  method: K
): Component.MethodsOf<T>[K]["payload"] => component.methods[method]!.payload

const toArbitrary = (value: Schema.Schema.Any | FastCheck.Arbitrary<any>): FastCheck.Arbitrary<any> =>
  Schema.isSchema(value) ? Arbitrary.make(value as Schema.Schema<any, any, never>) : value

const property = (
  arbitraries: Arbitraries,
  body: (values: any) => Effect.Effect<unknown, unknown, any>,
  numRuns: number | undefined
) =>
  Effect.flatMap(Effect.runtime<any>(), (runtime) => {
    const run = (values: unknown) => Runtime.runPromise(runtime)(body(values)).then(() => true)
    const check = Array.isArray(arbitraries)
      ? FastCheck.asyncProperty(FastCheck.tuple(...(arbitraries as ReadonlyArray<any>).map(toArbitrary)), run)
      : FastCheck.asyncProperty(
        FastCheck.record(
          Object.fromEntries(Object.entries(arbitraries).map(([key, value]) => [key, toArbitrary(value)]))
        ),
        run
      )
    return Effect.promise(() => FastCheck.assert(check as FastCheck.IAsyncProperty<any>, { numRuns: numRuns ?? 50 }))
  })

const configFile = "<weavertest config>"

const loadConfig = (text: string | undefined) =>
  text === undefined ? Effect.succeed(WeaverConfig.empty(configFile)) : WeaverConfig.parse(text, configFile)

const fakesByComponent = (fakes: ReadonlyArray<Fake.Fake>) =>
  Effect.suspend(() => {
    const byName = new Map<string, Weavelet.AnyHandlers>()
    for (const fake of fakes) {
      const name = fake.component.componentName
      if (byName.has(name)) return Effect.dieMessage(`weavertest: two fakes given for component ${name}`)
      byName.set(name, fake.handlers)
    }
    return Effect.succeed(byName)
  })

const quiet = HashSet.empty<any>()

const runApp = (
  definition: RunnerDefinition,
  options: Options,
  app: Weaver.App<any, any>,
  body: Effect.Effect<unknown, unknown, unknown>,
  appName: string,
  testName: string
): Effect.Effect<unknown, unknown> =>
  Effect.suspend(() => {
    const deploymentId = Crypto.randomUUID()
    const replicaId = Crypto.randomUUID()
    const loggers = process.env.WEAVERTEST_VERBOSE
      ? HashSet.make(Logging.makePretty({ app: appName, deploymentId, replicaId }))
      : quiet
    return Effect.gen(function*() {
      const parsed = yield* loadConfig(options.config)
      const config: WeaverConfig.WeaverConfig = {
        ...parsed,
        serviceweaver: { ...parsed.serviceweaver, name: parsed.serviceweaver.name ?? appName }
      }
      const fakes = yield* fakesByComponent(options.fakes ?? [])
      const implemented = new Set(app.implementations.map((impl) => impl.component.componentName))
      const extraComponents = (options.fakes ?? [])
        .map((fake) => fake.component)
        .filter((component) => !implemented.has(component.componentName))
      const deployment = definition.deploy === undefined
        ? undefined
        : yield* definition.deploy({
          app,
          config,
          configText: options.config,
          deploymentId,
          fakes,
          fakeComponents: (options.fakes ?? []).map((fake) => fake.component)
        })
      const chaosOptions = options.chaos === false
        ? undefined
        : options.chaos ?? Chaos.fromEnv(process.env.WEAVERTEST_CHAOS)
      const chaos = chaosOptions === undefined ? undefined : Chaos.make(chaosOptions)
      const transportLayer = deployment?.transport ?? definition.transport ?? TransportLocal.layer
      // Built first in the test's scope, so it is released last: components may still call out while closing.
      const transport = yield* Layer.buildWithScope(
        chaos === undefined ? transportLayer : Chaos.layer(chaos, transportLayer),
        yield* Effect.scope
      )
      const weavelet = yield* App.makeWeavelet(app, {
        config,
        deploymentId,
        replicaId,
        fakes,
        extraComponents,
        hosted: deployment?.hosted,
        onRequire: deployment?.onRequire
      }).pipe(Effect.provide(transport))
      if (deployment !== undefined) yield* deployment.started(weavelet)
      if (chaos !== undefined) {
        // Printed after the kills stop (finalizers run last first), and whether the body passed or not.
        yield* Effect.addFinalizer(() => Console.log(Chaos.summary(testName, chaos.service)))
        const kill = chaosOptions?.kill
        if (kill !== undefined && kill !== false && deployment?.groups !== undefined) {
          yield* Effect.forkScoped(Chaos.killReplicas(chaos, deployment.groups))
        }
      }
      return yield* body.pipe(
        Effect.provide(weavelet.clients(Weaver.mainName)),
        Effect.provideService(Weavelet.Weavelet, weavelet),
        Effect.provideService(Chaos.Chaos, chaos?.service ?? Chaos.none)
      )
    }).pipe(
      Effect.scoped,
      Effect.locally(FiberRef.currentLoggers, loggers)
    ) as Effect.Effect<unknown, unknown>
  })

/**
 * Builds a runner from its definition. Every runner gets the same `test`,
 * `run` and `with`; only the transport differs, so a new transport becomes
 * a runner with one line:
 *
 * ```ts
 * export const rpc = makeRunner({ name: "RPC", transport: TransportRpc.layerLoopback })
 * ```
 *
 * @since 0.1.0
 * @category runtime
 */
export const makeRunner = (definition: RunnerDefinition, options: Options = {}): Runner => {
  const runner: Runner<any> = {
    name: definition.name,
    options,
    test: (name, app, body, timeout) =>
      it.live(
        `${definition.name}/${name}`,
        () =>
          runApp(definition, options, app, body, name, `${definition.name}/${name}`) as Effect.Effect<unknown, unknown>,
        timeout ?? definition.timeout
      ),
    run: (app, body) => runApp(definition, options, app, body, "weavertest", `${definition.name}/run`) as any,
    prop: (name, app, arbitraries, body, propOptions) =>
      it.live(
        `${definition.name}/${name}`,
        () =>
          runApp(
            definition,
            options,
            app,
            property(arbitraries, body, propOptions?.numRuns),
            name,
            `${definition.name}/${name}`
          ),
        propOptions?.timeout ?? definition.timeout
      ),
    with: (overrides) =>
      makeRunner(definition, {
        config: "config" in overrides ? overrides.config : options.config,
        fakes: "fakes" in overrides ? overrides.fakes : options.fakes,
        chaos: "chaos" in overrides ? overrides.chaos : options.chaos
      }) as Runner<any>
  }
  return runner
}

/**
 * Runs every component in the test's process and calls them directly
 * (Service Weaver's `weavertest.Local`). Method metrics are still recorded.
 *
 * @since 0.1.0
 * @category testing
 */
export const local: Runner = makeRunner({ name: "Local", transport: TransportLocal.layer })

/**
 * Runs every component in the test's process but calls them through the
 * RPC transport over a real loopback socket, executing every retriable call
 * twice (Service Weaver's `weavertest.RPC`).
 *
 * @since 0.1.0
 * @category testing
 */
export const rpc: Runner = makeRunner({ name: "RPC", transport: TransportRpc.layerTest })

/**
 * Runs the components in child processes, as `weaver multi` does (Service
 * Weaver's `weavertest.Multi`): each component in its own colocation group
 * (or its `colocate` group) of 2 replicas, started on first use (a
 * singleton's group: one replica, started with the deployment), while the
 * test process hosts the test body and the fakes. The replicas import the
 * application from the module that called `Weaver.app`, so the app must be
 * defined in a module of its own (not in the test file); they run a bundle
 * of that module built with esbuild, so a TypeScript app needs no loader.
 * Tests get 120 seconds unless they say otherwise.
 *
 * @since 0.1.0
 * @category testing
 */
export const multi: Runner = makeRunner({
  name: "Multi",
  timeout: 120_000,
  deploy: (setup) =>
    Effect.gen(function*() {
      // The replicas run a bundle of the app module, which may be TypeScript (see internal/appBundle.ts).
      const child = setup.app.module === undefined ? undefined : yield* AppBundle.make(setup.app.module)
      const deployment = yield* MultiDeployment.make({
        ...setup,
        child,
        verbose: process.env.WEAVERTEST_VERBOSE !== undefined
      })
      return {
        transport: deployment.transport,
        hosted: new Set<string>(),
        started: deployment.started,
        onRequire: deployment.onRequire,
        groups: Effect.map(deployment.deployer.groups, (groups) =>
          groups
            .filter((group) => group.name !== Deployer.mainGroup)
            .map((group) => ({
              name: group.name,
              replicas: group.replicas.map((replica) => ({ pid: replica.pid, ready: replica.address !== undefined }))
            })))
      } satisfies Deployment
    })
})

/**
 * Runs each component group in a worker thread of the test's process
 * (`@effect-weaver/transport-worker`): calls cross threads over
 * MessagePorts, encoded with the methods' schemas, while the test thread
 * runs the body and serves the fakes. Like Multi, the app must be defined in
 * a module of its own (the workers import a bundle of it).
 *
 * @since 0.1.0
 * @category testing
 */
export const worker: Runner = makeRunner({
  name: "Worker",
  timeout: 60_000,
  deploy: (setup) =>
    Effect.gen(function*() {
      const module = setup.app.module
      if (module === undefined) {
        return yield* Effect.dieMessage(
          "weavertest: the Worker runner loads the app in worker threads, but cannot tell which module defines it: " +
            "define it with Weaver.app in a module of its own"
        )
      }
      const bundle = yield* AppBundle.make(module, "worker")
      const implemented = setup.app.implementations.map((impl) => impl.component)
      const groups = TransportWorker.groupsOf(
        implemented.map((c) => c.componentName),
        setup.config.serviceweaver.colocate,
        (name) => setup.fakes.has(name)
      )
      const hub = yield* TransportWorker.make({
        deploymentId: setup.deploymentId,
        appModule: { url: bundle.moduleUrl, components: implemented.map((c) => c.componentName) },
        groups,
        config: { file: setup.config.file, dir: setup.config.dir, text: setup.configText ?? "" },
        singletons: App.singletons(setup.app)
      })
      const specs = new Map([...implemented, ...setup.fakeComponents].map((c) => [c.componentName, c] as const))
      return {
        transport: Layer.succeed(CoreTransport.Transport, hub.transport),
        hosted: new Set<string>(),
        started: (weavelet) =>
          Effect.sync(() =>
            hub.serve(
              (name) => {
                const fake = setup.fakes.get(name)
                return fake !== undefined ? Effect.succeed(fake as any) : weavelet.handlers(name) as any
              },
              (name, method) => specs.get(name)?.methods[method]
            )
          )
      } satisfies Deployment
    })
})

/**
 * Every runner, with `options` applied to each. Loop over it to run the same
 * test under every deployment:
 *
 * ```ts
 * for (const runner of weavertest.allRunners()) {
 *   runner.test("reverses", app, Effect.gen(function*() { … }))
 * }
 * ```
 *
 * @since 0.1.0
 * @category testing
 */
export const allRunners = <const O extends Options = {}>(
  options?: O
): ReadonlyArray<Runner<"fakes" extends keyof O ? Fake.Replaced<O["fakes"]> : never>> =>
  [local, rpc, multi, worker].map((runner) => options === undefined ? runner : runner.with(options)) as Array<
    Runner<any>
  >
