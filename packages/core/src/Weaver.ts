/**
 * Applications: the main component, the set of implementations, and how to
 * run them.
 *
 * @since 0.1.0
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import type * as HttpApp from "@effect/platform/HttpApp"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpServer from "@effect/platform/HttpServer"
import { ServeError } from "@effect/platform/HttpServerError"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberRef from "effect/FiberRef"
import { globalValue } from "effect/GlobalValue"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Crypto from "node:crypto"
import * as Http from "node:http"
import * as Net from "node:net"
import * as Path from "node:path"
import * as Address from "./Address.js"
import type * as Component from "./Component.js"
import { callSite } from "./Component.js"
import * as HttpMetrics from "./HttpMetrics.js"
import { componentBox, currentComponent } from "./internal/fiberRefs.js"
import * as Logging from "./Logging.js"
import * as Registry from "./Registry.js"
import * as StatusServer from "./StatusServer.js"
import * as Tracing from "./Tracing.js"
import { Transport } from "./Transport.js"
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
  readonly source: string
}

/**
 * Declares the main component. `listeners` names the listeners it serves
 * with {@link serve} or {@link listener}; their addresses come from the
 * `[single]` and `[multi]` sections of weaver.toml.
 *
 * @since 0.1.0
 * @category constructors
 */
export const main = <E, R>(
  effect: Effect.Effect<unknown, E, R>,
  options?: { readonly listeners?: ReadonlyArray<string> }
): Main<E, Exclude<R, Scope.Scope | Weavelet.Weavelet>> => ({
  _tag: "Main",
  effect: effect as any,
  listeners: options?.listeners ?? [],
  source: callSite()
})

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
   * The file (path or URL) whose code called {@link app}, when known: how a
   * deployer that only has the app value (the weavertest Multi runner) loads
   * the same app in another process.
   */
  readonly module?: string | undefined
  /** @internal */
  readonly _R?: (_: never) => R
}

type ImplR<I> = I extends Component.Implementation<any, infer R> ? R : never
type ImplSelf<I> = I extends Component.Implementation<infer T, any> ? Component.Identifier<T> : never
type MainR<M> = M extends Main<any, infer R> ? R : never
type MainE<M> = M extends Main<infer E, any> ? E : never

/**
 * Assembles an application. A component used by the main component or by an
 * implementation but implemented by none shows up in the type of the result
 * and is rejected by `Weaver.run`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const app = <
  const I extends ReadonlyArray<Component.Implementation<any, any>>,
  M extends Main<any, any> | undefined = undefined
>(options: {
  readonly main?: M
  readonly components: I
}): App<Exclude<MainR<M> | ImplR<I[number]>, ImplSelf<I[number]> | Weavelet.Weavelet>, MainE<M>> => {
  const names = new Set<string>()
  for (const impl of options.components) {
    const name = impl.component.componentName
    if (names.has(name)) throw new Error(`Weaver.app: component ${name} is implemented twice`)
    names.add(name)
  }
  return {
    _tag: "App",
    module: callerFile(),
    main: options.main,
    implementations: options.components,
    listeners: new Set([...(options.main?.listeners ?? []), ...options.components.flatMap((impl) => impl.listeners)])
  }
}

/** The file of the code that called `Weaver.app`, from the stack (`file:///…` or an absolute path). */
const callerFile = (): string | undefined => {
  const holder: { stack?: string } = {}
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = 2
  Error.captureStackTrace(holder, app)
  Error.stackTraceLimit = limit
  const line = holder.stack?.split("\n")[1] ?? ""
  const match = /((?:file:\/\/)?\/[^():]+):\d+:\d+\)?\s*$/.exec(line)
  return match?.[1]
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
  listeners: app.listeners
})

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
      app: appName(options.config),
      deploymentId: options.deploymentId ?? Crypto.randomUUID(),
      replicaId: options.replicaId ?? Crypto.randomUUID(),
      config: options.config,
      implementations: app.implementations,
      componentConfigs,
      fakes: options.fakes,
      retry: options.retry,
      extraComponents: options.extraComponents,
      hosted: options.hosted,
      listeners: options.listeners ?? {
        declared: app.listeners,
        address: (name) => options.config.single.listeners[name]?.address ?? "localhost:0"
      }
    })
  })

const appName = (config: WeaverConfig.WeaverConfig) =>
  config.serviceweaver.name ?? Path.basename(process.argv[1] ?? "app").replace(/\.[cm]?[jt]s$/, "")

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
 * The transport for a process that was not launched by a deployer: the
 * `Transport` in context if there is one, otherwise the local transport.
 */
const defaultTransport: Effect.Effect<Layer.Layer<Transport>> = Effect.flatMap(
  Effect.serviceOption(Transport),
  Option.match({
    onSome: (transport) => Effect.succeed(Layer.succeed(Transport, transport)),
    onNone: () =>
      runtimes.local !== undefined
        ? Effect.succeed(runtimes.local)
        // Core cannot depend on a transport package (they depend on core), so it is resolved at run time.
        : Effect.promise(() => import(transportLocal) as Promise<{ readonly layer: Layer.Layer<Transport> }>).pipe(
          Effect.map((module) => module.layer)
        )
  })
)
const transportLocal = "@effect-weaver/transport-local"

/**
 * What {@link run} hands a process to: the local transport, and the weavelet
 * runtime for a process a deployer started.
 *
 * @since 0.1.0
 * @category running
 */
export interface Runtimes {
  readonly local?: Layer.Layer<Transport> | undefined
  readonly weavelet?: (<E>(app: App<never, E>) => Effect.Effect<void, unknown>) | undefined
}

const runtimes: { -readonly [K in keyof Runtimes]: Runtimes[K] } = globalValue(
  Symbol.for("@effect-weaver/core/Weaver/runtimes"),
  () => ({})
)

/**
 * Registers runtimes for {@link run}; the transport packages call it when
 * they are loaded. `run` imports a runtime nobody registered by its package
 * name, which a bundler cannot follow: registration is how a bundled binary
 * (`weaver bundle`) finds the runtimes inside the bundle.
 *
 * @since 0.1.0
 * @category running
 */
export const registerRuntimes = (registered: Runtimes): void => {
  Object.assign(runtimes, registered)
}

/**
 * Runs an application in this process, as Service Weaver's `weaver.Run`
 * does: the config comes from the file named by `SERVICEWEAVER_CONFIG` (if
 * set), every component is hosted here and constructed on first use, the
 * deployment appears in `weaver single status`, and the main component runs
 * until it ends or the process is interrupted.
 *
 * @example
 * ```ts
 * Weaver.run(app).pipe(NodeRuntime.runMain)
 * ```
 *
 * @since 0.1.0
 * @category running
 */
export const run = <E>(app: App<never, E>): Effect.Effect<void, E | WeaverConfig.WeaverConfigError> =>
  process.env[weaveletEnv] !== undefined ? runWeavelet(app) : runSingle(app)

/**
 * The environment variable through which a deployer hands a process its
 * weavelet bootstrap: with it, {@link run} hosts only what the deployer
 * assigns (see `@effect-weaver/transport-multiprocess`).
 *
 * @since 0.1.0
 * @category constants
 */
export const weaveletEnv = "WEAVER_WEAVELET"

// Core cannot depend on transport packages (they depend on core), so the weavelet runtime is resolved at run time.
const multiprocessWeavelet = "@effect-weaver/transport-multiprocess/Weavelet"

const runWeavelet = <E>(app: App<never, E>): Effect.Effect<void, E | WeaverConfig.WeaverConfigError> => {
  type Run = (app: App<never, E>) => Effect.Effect<void, E | WeaverConfig.WeaverConfigError>
  const registered = runtimes.weavelet as Run | undefined
  return registered !== undefined
    ? registered(app)
    : Effect.promise(() => import(multiprocessWeavelet) as Promise<{ readonly run: Run }>).pipe(
      Effect.flatMap((module) => module.run(app))
    )
}

const runSingle = <E>(app: App<never, E>): Effect.Effect<void, E | WeaverConfig.WeaverConfigError> =>
  Effect.gen(function*() {
    yield* Tracing.preload
    const configFile = process.env.SERVICEWEAVER_CONFIG
    const config = configFile ? yield* WeaverConfig.load(configFile) : WeaverConfig.empty()
    for (const entry of config.serviceweaver.env) {
      const eq = entry.indexOf("=")
      process.env[entry.slice(0, eq)] = entry.slice(eq + 1)
    }
    const deploymentId = Crypto.randomUUID()
    const replicaId = Crypto.randomUUID()
    const name = appName(config)
    const components = [mainName, ...app.implementations.map((impl) => impl.component.componentName)]
    const traces = Tracing.makeStore()
    const statusAddress = yield* startStatusServer({ app: name, deploymentId, replicaId, traces })
    const update = yield* Registry.register({
      app: name,
      deploymentId,
      tool: "single",
      pid: process.pid,
      startedAt: Date.now(),
      configFile: configFile ? Path.resolve(configFile) : undefined,
      components: components.map((component) => ({ name: component, pids: [process.pid] })),
      listeners: [],
      statusAddress
    })
    const transport = yield* defaultTransport
    const origin = { app: name, deploymentId, replicaId }
    yield* Effect.gen(function*() {
      const weavelet = yield* makeWeavelet(app, {
        config,
        deploymentId,
        replicaId,
        listeners: {
          declared: app.listeners,
          address: (listener) => config.single.listeners[listener]?.address ?? "localhost:0",
          onListening: (listener, address) =>
            Effect.zipRight(
              Effect.sync(() => process.stdout.write(`${listener} listener available on ${address}\n`)),
              update((d) => ({ ...d, listeners: [...d.listeners, { name: listener, address }] }))
            )
        }
      })
      process.stdout.write(`${Logging.banner(name, deploymentId)}\n`)
      yield* runMain(app, weavelet)
    }).pipe(
      Effect.provide(
        Layer.mergeAll(transport, Logging.layerPretty(origin), Tracing.layer({ ...origin, store: traces }))
      )
    )
  }).pipe(Effect.scoped)

/** The status server, if it can bind: without one the app still runs, only `weaver single metrics` misses it. */
const startStatusServer = (options: StatusServer.Options): Effect.Effect<string | undefined, never, Scope.Scope> =>
  StatusServer.make(options).pipe(
    Effect.map((server) => server.address),
    Effect.catchAll((error) => Effect.as(Effect.logWarning("status server not started", error), undefined))
  )

/**
 * A listener bound by the deployment: a `net.Server` already listening on
 * the address configured for it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Listener {
  readonly name: string
  /** The bound address, `host:port`. */
  readonly address: string
  readonly server: Net.Server
}

/**
 * Binds the named listener for raw TCP use, closing it with the scope. For
 * HTTP, use {@link serve}.
 *
 * @since 0.1.0
 * @category listeners
 */
export const listener = (name: string): Effect.Effect<Listener, ServeError, Weavelet.Weavelet | Scope.Scope> =>
  Effect.gen(function*() {
    const weavelet = yield* Weavelet.Weavelet
    const { host, port } = Address.split(yield* weavelet.listenerAddress(name), "0.0.0.0")
    const server = Net.createServer()
    yield* Effect.acquireRelease(
      Effect.async<void, ServeError>((resume) => {
        server.once("error", (cause) => resume(Effect.fail(serveError(name, cause))))
        server.listen({ host, port }, () => resume(Effect.void))
      }),
      () =>
        Effect.async<void>((resume) => {
          server.close(() => resume(Effect.void))
        })
    )
    const bound = server.address()
    const address = bound === null || typeof bound === "string" ? String(bound) : Address.format(bound)
    yield* weavelet.listening(name, address)
    return { name, address, server }
  })

const serveError = (name: string, cause: unknown) =>
  new ServeError({ cause: new Error(`listener ${name}: ${cause instanceof Error ? cause.message : String(cause)}`) })

const healthz = HttpServerResponse.text("OK")

/**
 * Serves an HTTP app on the named listener until interrupted. Every
 * listener also answers `/debug/weaver/healthz`. Requests to the app are
 * counted in the `serviceweaver_http_*` metrics labelled with the listener's
 * name (see `HttpMetrics.instrument`); health checks are not. Requests are
 * traced (an `http.server` span, parented on an incoming `traceparent`) when
 * sampled: see `Tracing.Sampling`. Unsampled requests run under a span that
 * records nothing (`Tracing.NonRecordingSpan`), and so does every span
 * started inside them: `Effect.annotateCurrentSpan` in a handler is cheap,
 * and only sampled requests are traced.
 *
 * @example
 * ```ts
 * yield* Weaver.serve("hello", HttpRouter.empty.pipe(HttpRouter.get("/hello", handler)))
 * ```
 *
 * @since 0.1.0
 * @category listeners
 */
export const serve = <E, R>(
  name: string,
  httpApp: HttpApp.Default<E, R>
): Effect.Effect<
  never,
  ServeError,
  Weavelet.Weavelet | Exclude<R, HttpServerRequest.HttpServerRequest | Scope.Scope>
> =>
  Effect.scoped(Effect.gen(function*() {
    const weavelet = yield* Weavelet.Weavelet
    const { host, port } = Address.split(yield* weavelet.listenerAddress(name), "0.0.0.0")
    const server = yield* NodeHttpServer.make(() => Http.createServer(), { host, port })
    const instrumented = HttpMetrics.instrument(name, httpApp)
    const sample = Tracing.makeSampler((yield* FiberRef.get(Tracing.currentSampling)) ?? Tracing.samplingFromEnv())
    const ended = Effect.sync(sample.ended)
    const app: HttpApp.Default<E, R> = Effect.withFiberRuntime((fiber) => {
      const request = Context.unsafeGet(fiber.currentContext, HttpServerRequest.HttpServerRequest)
      if (request.url === healthzPath) return healthz
      const span = fiber.currentSpan
      // Unsampled: the tracer middleware below made no span. Run under one that records nothing, as cheap as none.
      if (span === undefined) return Effect.withParentSpan(instrumented, Tracing.unsampledSpan(request.headers))
      return span.sampled ? Effect.ensuring(instrumented, ended) : instrumented
    }) as HttpApp.Default<E, R>
    yield* HttpServer.serveEffect()(app).pipe(
      HttpMiddleware.withTracerDisabledWhenEffect((request) => request.url === healthzPath || !sample(request.headers)),
      Effect.provideService(HttpServer.HttpServer, server)
    )
    yield* weavelet.listening(
      name,
      server.address._tag === "TcpAddress"
        ? Address.format({ address: server.address.hostname, port: server.address.port })
        : server.address.path
    )
    return yield* Effect.never
  })) as any

/**
 * An application embedded in an existing Node server: Promise-based clients
 * and a `close` that releases every component.
 *
 * @since 0.1.0
 * @category models
 */
export interface Embedded {
  readonly deploymentId: string
  /** A client whose methods return Promises; a failure rejects with the error value. */
  readonly client: <T extends Component.Any>(component: T) => PromiseClient<Component.MethodsOf<T>>
  readonly close: () => Promise<void>
}

/**
 * The Promise flavour of a component client, for code outside Effect.
 *
 * @since 0.1.0
 * @category models
 */
export type PromiseClient<M extends Component.Methods> = {
  readonly [K in keyof Component.Client<M>]: Component.Client<M>[K] extends
    (...args: infer A) => Effect.Effect<infer S, any> ? (...args: A) => Promise<S>
    : never
}

/**
 * Starts an application inside an existing Node program (express, fastify,
 * node:http) without running its main component. `config` is a path to a
 * weaver.toml, or `{ toml }` with its text.
 *
 * @example
 * ```ts
 * const weaver = await Weaver.embed(app, { config: "weaver.toml" })
 * await weaver.client(Reverser).reverse("abc") // "cba"
 * await weaver.close()
 * ```
 *
 * @since 0.1.0
 * @category running
 */
export const embed = async (
  app: App<any, any>,
  options?: { readonly config?: string | { readonly toml: string } | undefined }
): Promise<Embedded> => {
  const source = options?.config
  const loadConfig = source === undefined
    ? Effect.succeed(WeaverConfig.empty())
    : typeof source === "string"
    ? WeaverConfig.load(source)
    : WeaverConfig.parse(source.toml)
  const layer = Layer.unwrapEffect(Effect.gen(function*() {
    const config = yield* loadConfig
    const transport = yield* defaultTransport
    const deploymentId = Crypto.randomUUID()
    const replicaId = Crypto.randomUUID()
    const logger = Logging.layerPretty({ app: appName(config), deploymentId, replicaId })
    return Layer.scoped(Weavelet.Weavelet, makeWeavelet(app, { config, deploymentId, replicaId })).pipe(
      Layer.provide(transport),
      Layer.provideMerge(logger)
    )
  }))
  const runtime = ManagedRuntime.make(layer)
  const weavelet = await runtime.runPromiseExit(Weavelet.Weavelet).then(unwrap)
  const clients = weavelet.clients(mainName)
  const run = <A>(effect: Effect.Effect<A, unknown>) => runtime.runPromiseExit(effect).then(unwrap)
  return {
    deploymentId: weavelet.deploymentId,
    client: (component) => {
      const client = Context.unsafeGet(clients, component as any) as Record<
        string,
        (p?: unknown) => Effect.Effect<unknown, unknown>
      >
      const promised: Record<string, (p?: unknown) => Promise<unknown>> = {}
      for (const method of Object.keys(component.methods)) {
        promised[method] = (payload) => run(client[method]!(payload))
      }
      return promised as any
    },
    close: () => runtime.dispose()
  }
}

const unwrap = <A>(exit: Exit.Exit<A, unknown>): A => {
  if (Exit.isSuccess(exit)) return exit.value
  throw Cause.squash(exit.cause)
}
