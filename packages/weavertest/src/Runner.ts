/**
 * Runners: the same test body under every way of deploying an application,
 * as Service Weaver's `weavertest.Runner`.
 *
 * @since 0.1.0
 */
import { Logging, Weavelet, Weaver, WeaverConfig } from "@effect-weaver/core"
import type { Transport } from "@effect-weaver/core"
import * as TransportLocal from "@effect-weaver/transport-local/TransportLocal"
import { it } from "@effect/vitest"
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as HashSet from "effect/HashSet"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Crypto from "node:crypto"
import type * as Fake from "./Fake.js"

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
  readonly transport: Layer.Layer<Transport.Transport, never, Scope.Scope>
}

/**
 * Options of a runner.
 *
 * - `config`: the text of a weaver.toml, parsed as a config file named
 *   `<weavertest config>`; component sections in it are decoded by the
 *   components' config schemas, and a mistake fails the test with a message
 *   naming the section and key.
 * - `fakes`: components to replace (see `weavertest.fake`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly config?: string | undefined
  readonly fakes?: ReadonlyArray<Fake.Fake> | undefined
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
export interface Runner {
  readonly name: string
  readonly options: Options
  /**
   * Registers a vitest test named `<runner>/<name>` (real time, as `it.live`)
   * that starts `app` and runs `body` with a client of every component in
   * its context. The body plays the main component; the app's own main is
   * not run. Logs are quiet unless `WEAVERTEST_VERBOSE` is set.
   */
  readonly test: <A, E, R extends Requirement>(
    name: string,
    app: Weaver.App<any, any>,
    body: Effect.Effect<A, E, R>,
    timeout?: number
  ) => void
  /**
   * The Effect {@link Runner.test} runs, for use in a test written by hand:
   * starts `app`, runs `body` with clients of every component, and stops the
   * app when the body ends.
   */
  readonly run: <A, E, R extends Requirement>(
    app: Weaver.App<any, any>,
    body: Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E | WeaverConfig.WeaverConfigError>
  /** A runner like this one; the options given replace this runner's. */
  readonly with: (options: Options) => Runner
}

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
  appName: string
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
      // Built first in the test's scope, so it is released last: components may still call out while closing.
      const transport = yield* Layer.buildWithScope(definition.transport, yield* Effect.scope)
      const weavelet = yield* Weaver.makeWeavelet(app, { config, deploymentId, replicaId, fakes, extraComponents })
        .pipe(Effect.provide(transport))
      return yield* body.pipe(
        Effect.provide(weavelet.clients(Weaver.mainName)),
        Effect.provideService(Weavelet.Weavelet, weavelet)
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
  const runner: Runner = {
    name: definition.name,
    options,
    test: (name, app, body, timeout) =>
      it.live(
        `${definition.name}/${name}`,
        () => runApp(definition, options, app, body, name) as Effect.Effect<unknown, unknown>,
        timeout
      ),
    run: (app, body) => runApp(definition, options, app, body, "weavertest") as any,
    with: (overrides) =>
      makeRunner(definition, {
        config: "config" in overrides ? overrides.config : options.config,
        fakes: "fakes" in overrides ? overrides.fakes : options.fakes
      })
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
export const allRunners = (options?: Options): ReadonlyArray<Runner> =>
  [local].map((runner) => options === undefined ? runner : runner.with(options))
