/**
 * Applications: the main component, the set of implementations, and how to
 * run them.
 *
 * @since 0.1.0
 */
import * as Address from "@effect-weaver/runtime/Address"
import * as AppModel from "@effect-weaver/runtime/App"
import type * as Component from "@effect-weaver/runtime/Component"
import { callSite } from "@effect-weaver/runtime/Component"
import * as ConfigCheck from "@effect-weaver/runtime/ConfigCheck"
import * as HttpMetrics from "@effect-weaver/runtime/HttpMetrics"
import type { Kind as ListenerKind } from "@effect-weaver/runtime/Listener"
import * as Logging from "@effect-weaver/runtime/Logging"
import * as Runtime from "@effect-weaver/runtime/Runtime"
import * as Tracing from "@effect-weaver/runtime/Tracing"
import { Transport } from "@effect-weaver/runtime/Transport"
import * as Weavelet from "@effect-weaver/runtime/Weavelet"
import * as WeaverConfig from "@effect-weaver/runtime/WeaverConfig"
import * as TransportLocal from "@effect-weaver/transport-local/TransportLocal"
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
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Http from "node:http"
import * as Net from "node:net"
import * as Path from "node:path"
import * as Url from "node:url"
import * as WorkerThreads from "node:worker_threads"

/**
 * The name of the main component, in logs, metrics and status tables.
 *
 * @since 0.1.0
 * @category constants
 */
export const mainName = AppModel.mainName

/**
 * The health check every served listener answers with `OK`.
 *
 * @since 0.1.0
 * @category constants
 */
export const healthzPath = AppModel.healthzPath

/**
 * The main component (see {@link main}).
 *
 * @since 0.1.0
 * @category models
 */
export type Main<E = unknown, R = unknown> = AppModel.Main<E, R>

/**
 * An application (see {@link app}). `R` is what no implementation provides:
 * `Weaver.run` needs it to be `never`.
 *
 * @since 0.1.0
 * @category models
 */
export type App<R = never, E = unknown> = AppModel.App<R, E>

/**
 * Declares the main component. `listeners` names the listeners it serves
 * with {@link serve} or {@link listener}; their addresses come from the
 * `[single]` and `[multi]` sections of weaver.toml.
 *
 * `singleton: true` (since 0.2.0) runs main's colocation group as exactly
 * one replica in every deployment, so the main Effect runs once per
 * deployment (and again in the new process if that one dies); see
 * `Component.ImplementOptions` for what a singleton means.
 *
 * @since 0.1.0
 * @category constructors
 */
export const main = <E, R>(
  effect: Effect.Effect<unknown, E, R>,
  options?: { readonly listeners?: ReadonlyArray<string>; readonly singleton?: boolean }
): Main<E, Exclude<R, Scope.Scope | Weavelet.Weavelet>> => ({
  _tag: "Main",
  effect: effect as any,
  listeners: options?.listeners ?? [],
  singleton: options?.singleton === true,
  source: callSite()
})

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
 * The transport for an application embedded in a program: the `Transport` in
 * context if there is one, otherwise the local transport.
 */
const defaultTransport: Effect.Effect<Layer.Layer<Transport>> = Effect.map(
  Effect.serviceOption(Transport),
  Option.match({
    onSome: (transport) => Layer.succeed(Transport, transport),
    onNone: () => TransportLocal.layer
  })
)

/**
 * The runtime a process gets from how it was launched: a weavelet of the
 * deployment when a deployer started it, the single-process runtime over the
 * local transport otherwise. The weavelet runtime is imported only in a
 * weavelet (a literal import that bundlers follow), so that a single process
 * never loads the wire protocol.
 */
const launchedRuntime: Effect.Effect<Layer.Layer<Runtime.Runtime>> = Effect.suspend(() =>
  Runtime.launchedByDeployer()
    ? Effect.promise(() => import("@effect-weaver/transport-multiprocess/Weavelet")).pipe(
      Effect.map((module) => module.layer)
    )
    : inWorkerThread()
    ? Effect.promise(() => import("@effect-weaver/transport-worker/Worker")).pipe(
      Effect.map((module) => Layer.succeed(Runtime.Runtime, { name: "worker", run: module.runApp }))
    )
    : Effect.succeed(Runtime.layerSingle(singleTransport))
)

/** Whether this is a worker thread the single runtime started for a colocation group (`[single] workers`). */
const inWorkerThread = () =>
  !WorkerThreads.isMainThread &&
  (WorkerThreads.workerData as { weaverWorker?: unknown } | undefined)?.weaverWorker === true

/**
 * The single runtime's transport: direct calls, or with `[single] workers` each colocation group in a worker
 * thread running this very program (`Weaver.run` there serves the group).
 */
const singleTransport: Runtime.SingleTransport = ({ app, config, deploymentId }) =>
  !config.single.workers ? TransportLocal.layer : Layer.unwrapEffect(
    Effect.promise(() => import("@effect-weaver/transport-worker/TransportWorker")).pipe(
      Effect.map((TransportWorker) => {
        const components = app.implementations.map((impl) => impl.component.componentName)
        return TransportWorker.layer({
          deploymentId,
          appModule: { url: Url.pathToFileURL(Path.resolve(process.argv[1]!)).href, components },
          groups: TransportWorker.groupsOf(components, config.serviceweaver.colocate),
          singletons: AppModel.singletons(app),
          config: {
            file: config.file,
            dir: config.dir,
            text: Fs.existsSync(config.file) ? Fs.readFileSync(config.file, "utf8") : ""
          }
        })
      })
    )
  )

/**
 * Runs an application in this process, as Service Weaver's `weaver.Run`
 * does, on the runtime the process was launched with (see
 * `@effect-weaver/runtime/Runtime`): by hand, the config comes from the file
 * named by `SERVICEWEAVER_CONFIG` (if set), every component is hosted here
 * and constructed on first use, the deployment appears in
 * `weaver single status`, and the main component runs until it ends or the
 * process is interrupted; started by a deployer, the process hosts what the
 * deployer assigns it. A `Runtime` already in context is used instead.
 *
 * A deployer checking a config before it deploys (`ConfigCheck.env` is set)
 * gets its answer instead: the config is checked against the application,
 * the result printed, and the process exits without running anything.
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
  Effect.suspend(() => ConfigCheck.requested() ? ConfigCheck.answer(AppModel.shape(app)) : runOnRuntime(app))

/** Runs `app` on the runtime in context, or on the one the process was launched with. */
const runOnRuntime = <E>(app: App<never, E>): Effect.Effect<void, E | WeaverConfig.WeaverConfigError> =>
  Effect.flatMap(
    Effect.serviceOption(Runtime.Runtime),
    Option.match({
      onSome: (runtime) => runtime.run(app),
      onNone: () =>
        Effect.flatMap(
          launchedRuntime,
          (layer) => Effect.flatMap(Runtime.Runtime, (runtime) => runtime.run(app)).pipe(Effect.provide(layer))
        )
    })
  ) as Effect.Effect<void, E | WeaverConfig.WeaverConfigError>

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
 * Options of {@link listener}.
 *
 * @since 0.2.0
 * @category models
 */
export interface ListenerOptions {
  /**
   * What the application speaks on the listener, which decides the proxy a
   * deployer puts in front of it: `tcp` (the default), any protocol, passed
   * through connection by connection and never looked at (raw TCP, MQTT,
   * HTTP/2 cleartext, gRPC); `http`, HTTP/1.1 served by the application's own
   * server on the listener, proxied request by request as {@link serve}'s are.
   */
  readonly kind?: ListenerKind | undefined
}

/**
 * Binds the named listener for use with any protocol, closing it with the
 * scope: the application accepts the connections of the returned
 * `net.Server` itself. Under `weaver multi`, users reach it through a
 * layer-4 proxy that balances connections (not requests) over the replicas
 * and passes their bytes through untouched. For HTTP, use {@link serve}.
 *
 * @example
 * ```ts
 * const { server } = yield* Weaver.listener("echo")
 * server.on("connection", (socket) => socket.pipe(socket))
 * ```
 *
 * @since 0.1.0
 * @category listeners
 */
export const listener = (
  name: string,
  options?: ListenerOptions
): Effect.Effect<Listener, ServeError, Weavelet.Weavelet | Scope.Scope> =>
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
    yield* weavelet.listening(name, address, options?.kind ?? "tcp")
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
        : server.address.path,
      "http"
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
  /**
   * A client whose methods return Promises; a failure rejects with the error value. Takes a component, or the
   * Tag of a service lifted with `Component.lift`.
   */
  readonly client: <I, S>(tag: Context.Tag<I, S>) => PromiseService<S>
  readonly close: () => Promise<void>
}

/**
 * The Promise flavour of a component client, for code outside Effect: a
 * streaming method returns an `AsyncIterable` of its elements (`for await`;
 * leaving the loop early cancels the producer).
 *
 * @since 0.1.0
 * @category models
 */
export type PromiseClient<M extends Component.Methods> = PromiseService<Component.Client<M>>

/**
 * The Promise flavour of a service: each method returning an Effect returns
 * a Promise of its success instead, and a streaming method an
 * `AsyncIterable` of its elements.
 *
 * @since 0.2.0
 * @category models
 */
export type PromiseService<S> = {
  readonly [K in keyof S]: S[K] extends (...args: infer A) => Effect.Effect<infer R, any, any> ?
    (...args: A) => Promise<R>
    // A streaming method (tested second: an Effect is also a Stream, of one element).
    : S[K] extends (...args: infer A) => Stream.Stream<infer R, any, any> ? (...args: A) => AsyncIterable<R>
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
  app: App<never, any>,
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
    const logger = Logging.layerPretty({ app: AppModel.name(config), deploymentId, replicaId })
    return Layer.scoped(Weavelet.Weavelet, AppModel.makeWeavelet(app, { config, deploymentId, replicaId })).pipe(
      Layer.provide(transport),
      Layer.provideMerge(logger)
    )
  }))
  const runtime = ManagedRuntime.make(layer)
  const weavelet = await runtime.runPromiseExit(Weavelet.Weavelet).then(unwrap)
  const clients = weavelet.clients(mainName)
  const run = <A>(effect: Effect.Effect<A, unknown>) => runtime.runPromiseExit(effect).then(unwrap)
  const streamRuntime = await runtime.runtime()
  return {
    deploymentId: weavelet.deploymentId,
    client: (tag) => {
      const client = Context.unsafeGet(clients, tag) as Record<
        string,
        (...args: ReadonlyArray<unknown>) => Effect.Effect<unknown, unknown>
      >
      const methods = (tag as Partial<Component.Any>).methods
      const promised: Record<string, (...args: ReadonlyArray<unknown>) => Promise<unknown> | AsyncIterable<unknown>> =
        {}
      for (const method of Object.keys(client)) {
        promised[method] = methods?.[method]?.stream
          ? (...args) =>
            Stream.toAsyncIterableRuntime(
              client[method]!(...args) as unknown as Stream.Stream<unknown, unknown>,
              streamRuntime
            )
          : (...args) => run(client[method]!(...args))
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
