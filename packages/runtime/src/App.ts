/**
 * An application as the runtime sees it: its main component and the
 * implementations of its components (built by `Weaver.app` and `Weaver.main`
 * in `@effect-weaver/core`), how a weavelet is made for it, and how its main
 * runs.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Crypto from "node:crypto"
import * as Path from "node:path"
import * as Component from "./Component.js"
import { componentBox, currentComponent } from "./internal/fiberRefs.js"
import type { Transport } from "./Transport.js"
import * as Weavelet from "./Weavelet.js"
import * as WeaverConfig from "./WeaverConfig.js"

/**
 * The name of the main component, in logs, metrics and status tables.
 *
 * @since 0.1.0
 * @category constants
 */
export const mainName = "main"

/**
 * The health check every served listener answers with `OK`.
 *
 * @since 0.1.0
 * @category constants
 */
export const healthzPath = "/debug/weaver/healthz"

/**
 * The main component: the Effect a deployment runs, with clients of every
 * component available as requirements.
 *
 * @since 0.1.0
 * @category models
 */
export interface Main<E = unknown, R = unknown> {
  readonly _tag: "Main"
  readonly effect: Effect.Effect<unknown, E, R | Scope.Scope>
  readonly listeners: ReadonlyArray<string>
  /**
   * A singleton main: its colocation group runs exactly one replica, so the
   * main Effect runs once per deployment (see `Component.ImplementOptions`).
   *
   * @since 0.2.0
   */
  readonly singleton?: boolean | undefined
  readonly source: string
}

/**
 * An application: an optional main component plus the implementations of
 * its components. `R` is what no implementation provides: `Weaver.run`
 * needs it to be `never`.
 *
 * @since 0.1.0
 * @category models
 */
export interface App<R = never, E = unknown> {
  readonly _tag: "App"
  readonly main: Main<E, any> | undefined
  readonly implementations: ReadonlyArray<Component.Implementation>
  readonly listeners: ReadonlySet<string>
  /**
   * The file (path or URL) whose code called `Weaver.app`, when known: how a
   * deployer that only has the app value (the weavertest Multi runner) loads
   * the same app in another process.
   */
  readonly module?: string | undefined
  /** @internal */
  readonly _R?: (_: never) => R
}

/**
 * The components and listeners an application declares, for checking
 * config against it.
 *
 * @since 0.1.0
 * @category runtime
 */
export const shape = (app: App<any, any>): WeaverConfig.AppShape => ({
  components: new Map(app.implementations.map((impl) => [impl.component.componentName, impl.config])),
  listeners: app.listeners,
  serves: new Map([
    ...(app.main === undefined || app.main.listeners.length === 0 ? [] : [[mainName, app.main.listeners] as const]),
    ...app.implementations.filter((impl) => impl.listeners.length > 0).map((impl) =>
      [impl.component.componentName, impl.listeners] as const
    )
  ]),
  singletons: singletons(app)
})

/**
 * The application's singletons: the components declared `singleton: true`,
 * and `main` if it is.
 *
 * @since 0.2.0
 * @category runtime
 */
export const singletons = (app: App<any, any>): ReadonlyArray<string> => [
  ...(app.main?.singleton === true ? [mainName] : []),
  ...app.implementations.filter((impl) => impl.singleton).map((impl) => impl.component.componentName)
]

/**
 * Options for {@link makeWeavelet}.
 *
 * @since 0.1.0
 * @category models
 */
export interface WeaveletOptions {
  readonly config: WeaverConfig.WeaverConfig
  readonly deploymentId?: string | undefined
  readonly replicaId?: string | undefined
  readonly fakes?: ReadonlyMap<string, Weavelet.AnyHandlers> | undefined
  readonly extraComponents?: ReadonlyArray<Component.Any> | undefined
  readonly hosted?: ReadonlySet<string> | undefined
  readonly listeners?: Weavelet.ListenerOptions | undefined
  readonly retry?: Partial<Weavelet.RetryPolicy> | undefined
  readonly onRequire?: ((caller: string, component: string) => void) | undefined
}

/**
 * Checks the config against the application and builds the weavelet that
 * hosts it, over whatever `Transport` is provided.
 *
 * @since 0.1.0
 * @category runtime
 */
export const makeWeavelet = (
  app: App<any, any>,
  options: WeaveletOptions
): Effect.Effect<Weavelet.Weavelet["Type"], WeaverConfig.WeaverConfigError, Transport | Scope.Scope> =>
  Effect.gen(function*() {
    const componentConfigs = yield* WeaverConfig.validate(options.config, shape(app))
    return yield* Weavelet.make({
      app: name(options.config),
      deploymentId: options.deploymentId ?? Crypto.randomUUID(),
      replicaId: options.replicaId ?? Crypto.randomUUID(),
      config: options.config,
      implementations: app.implementations,
      componentConfigs,
      fakes: options.fakes,
      retry: options.retry,
      extraComponents: options.extraComponents,
      hosted: options.hosted,
      onRequire: options.onRequire,
      listeners: options.listeners ?? {
        declared: app.listeners,
        address: (name) => options.config.single.listeners[name]?.address ?? "localhost:0"
      }
    })
  })

/**
 * Runs the main component with clients of every component in its context.
 *
 * @since 0.1.0
 * @category runtime
 */
export const runMain = <E>(
  app: App<any, E>,
  weavelet: Weavelet.Weavelet["Type"]
): Effect.Effect<void, E, Scope.Scope> => {
  if (app.main === undefined) return Effect.dieMessage("Weaver.run: the application has no main component")
  const info = { name: mainName, source: app.main.source }
  return app.main.effect.pipe(
    Effect.asVoid,
    Effect.provide(weavelet.clients(mainName)),
    Effect.provideService(Weavelet.Weavelet, weavelet),
    Effect.locally(currentComponent, componentBox(info))
  ) as Effect.Effect<void, E, Scope.Scope>
}

/**
 * The application's name: `[serviceweaver] name`, else the entry's file name.
 *
 * @since 0.1.0
 * @category runtime
 */
export const name = (config: WeaverConfig.WeaverConfig): string =>
  config.serviceweaver.name ?? Path.basename(process.argv[1] ?? "app").replace(/\.[cm]?[jt]s$/, "")

const isApp = (u: unknown): u is App<any, any> =>
  typeof u === "object" && u !== null && (u as { readonly _tag?: unknown })._tag === "App" &&
  Array.isArray((u as { readonly implementations?: unknown }).implementations)

/**
 * Imports the module at `url` and picks the app it exports whose components
 * are exactly `components`, with every component declaration it exports
 * (those of fakes among them): how a weavelet whose deployer names the app by
 * module loads it (the weavertest Multi and Worker runners). Fails with the
 * reason, naming the module.
 *
 * @since 0.1.0
 * @category runtime
 */
export const importFrom = (
  url: string,
  components: ReadonlyArray<string>
): Effect.Effect<{ readonly app: App<any, any>; readonly exported: ReadonlyArray<Component.Any> }, string> =>
  Effect.tryPromise({
    try: () => import(url) as Promise<Record<string, unknown>>,
    catch: (cause) => `cannot import ${url}: ${String(cause)}`
  }).pipe(
    Effect.flatMap((module) => {
      const wanted = [...components].sort().join(",")
      const app = Object.values(module).find((value) =>
        isApp(value) && value.implementations.map((impl) => impl.component.componentName).sort().join(",") === wanted
      ) as App<any, any> | undefined
      return app === undefined
        ? Effect.fail(`${url} exports no Weaver.app with the components ${wanted || "(none)"}`)
        : Effect.succeed({ app, exported: Object.values(module).filter(Component.isComponent) })
    })
  )
