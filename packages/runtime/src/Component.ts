/**
 * Components: named services whose methods are described by schemas.
 *
 * A component is declared once, as a `Context.Tag` class, and implemented
 * once. Where its implementation runs (in the caller's process, in another
 * process, on another machine) is decided by the deployment, never by code:
 * callers only ever see the client described by the declaration.
 *
 * @since 0.1.0
 */
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as FiberRef from "effect/FiberRef"
import { dual } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { RemoteCallError } from "./ComponentError.js"
import * as fiberRefs from "./internal/fiberRefs.js"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: unique symbol = Symbol.for("@effect-weaver/core/Component")

/**
 * @since 0.1.0
 * @category type ids
 */
export type TypeId = typeof TypeId

/**
 * A method of a component: payload, success and error schemas plus options.
 *
 * @since 0.1.0
 * @category models
 */
export interface Method<
  Payload extends Schema.Schema.Any = Schema.Schema.Any,
  Success extends Schema.Schema.Any = Schema.Schema.Any,
  Error extends Schema.Schema.All = Schema.Schema.All,
  Streaming extends boolean = boolean
> {
  readonly payload: Payload
  /** The result, or for a streaming method the schema of each element of its stream. */
  readonly success: Success
  readonly error: Error
  /**
   * Whether the method answers with a `Stream` of `success` values instead of
   * one value (see {@link method}).
   */
  readonly stream: Streaming
  /**
   * Whether the runtime may retry the method after a transport failure.
   * `false` is Service Weaver's `NotRetriable`.
   */
  readonly retry: boolean
  /**
   * Affinity routing: calls whose payloads map to the same key go to the same
   * replica, on a best-effort basis.
   */
  readonly routeBy: ((payload: any) => string | number) | undefined
  /**
   * The deadline of each call, in milliseconds from when it is made, or
   * `undefined` for none. An earlier deadline already in force is kept.
   */
  readonly timeout: number | undefined
}

/**
 * Any method.
 *
 * @since 0.1.0
 * @category models
 */
export type AnyMethod = Method<Schema.Schema.Any, Schema.Schema.Any, Schema.Schema.All, boolean>

/**
 * The methods of a component, by name.
 *
 * @since 0.1.0
 * @category models
 */
export type Methods = { readonly [name: string]: AnyMethod }

/**
 * Declares a method.
 *
 * `payload` defaults to `Schema.Void` (a method called with no argument),
 * `success` to `Schema.Void` and `error` to `Schema.Never`. Schemas must not
 * need services to encode or decode: they are how the method crosses the wire.
 *
 * Options:
 * - `retry: false` marks the method as not safe to run twice, so the runtime
 *   never retries it after a transport failure.
 * - `routeBy: (payload) => key` sends calls with the same key to the same
 *   replica where there are several (best effort; never rely on it for
 *   correctness).
 * - `timeout` gives every call of the method a deadline (see
 *   {@link withTimeout}); an earlier deadline already in force is kept.
 * - `stream: true` declares a streaming method, as Effect RPC's
 *   `Rpc.make(tag, { stream: true })` does: its client returns a
 *   `Stream.Stream` of `success` values (failing with a declared `error` or
 *   `RemoteCallError`) and its handler returns such a Stream. Elements cross the wire in batches under credit-based flow
 *   control, so neither side buffers more than a window of elements; a
 *   consumer that stops early (`Stream.take`, interruption) cancels the
 *   producer, wherever it runs. A deadline bounds the whole stream; a
 *   transport failure is retried only before the first element reached the
 *   consumer.
 *
 * @example
 * ```ts
 * reverse: Component.method({ payload: Schema.String, success: Schema.String })
 * // a stream of numbers
 * countTo: Component.method({ payload: Schema.Number, success: Schema.Number, stream: true })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const method = <
  Payload extends Schema.Schema.Any = typeof Schema.Void,
  Success extends Schema.Schema.Any = typeof Schema.Void,
  Error extends Schema.Schema.All = typeof Schema.Never,
  const Streaming extends boolean = false
>(options: {
  readonly payload?: Payload
  readonly success?: Success
  readonly error?: Error
  readonly stream?: Streaming
  readonly retry?: boolean
  readonly routeBy?: (payload: Schema.Schema.Type<Payload>) => string | number
  readonly timeout?: Duration.DurationInput
  // NoInfer: a method written inside a component's declaration must not take its schemas from the declaration's
  // contextual type (any schema), which would make an omitted `error` `any` instead of `never`, and `success` too.
}): Method<NoInfer<Payload>, NoInfer<Success>, NoInfer<Error>, NoInfer<Streaming>> => ({
  payload: (options.payload ?? Schema.Void) as Payload,
  success: (options.success ?? Schema.Void) as Success,
  error: (options.error ?? Schema.Never) as Error,
  stream: (options.stream ?? false) as Streaming,
  retry: options.retry ?? true,
  routeBy: options.routeBy,
  timeout: options.timeout === undefined ? undefined : Duration.toMillis(options.timeout)
})

/**
 * Encoders and decoders of one method, derived once from its schemas: what a
 * transport that crosses a process or thread boundary sends instead of the
 * values themselves.
 *
 * @since 0.1.0
 * @category codec
 */
export interface Codec {
  readonly encodePayload: (value: unknown) => unknown
  readonly decodePayload: (value: unknown) => unknown
  readonly encodeSuccess: (value: unknown) => unknown
  readonly decodeSuccess: (value: unknown) => unknown
  readonly encodeError: (value: unknown) => unknown
  readonly decodeError: (value: unknown) => unknown
  /**
   * Encodes a batch of a streaming method's elements (each with the
   * `success` schema), as transports send them.
   *
   * @since 0.2.0
   */
  readonly encodeElements: (values: ReadonlyArray<unknown>) => Array<unknown>
  /**
   * Decodes a batch of elements; throws on anything but an array of values
   * of the `success` schema.
   *
   * @since 0.2.0
   */
  readonly decodeElements: (value: unknown) => Array<unknown>
}

const codecs = new WeakMap<AnyMethod, Codec>()

/**
 * The codec of a method (cached per method declaration). Every function
 * throws a `ParseError` on a value that does not match its schema.
 *
 * @since 0.1.0
 * @category codec
 */
export const codec = (spec: AnyMethod): Codec => {
  let cached = codecs.get(spec)
  if (cached === undefined) {
    const payload = spec.payload as Schema.Schema<unknown, unknown, never>
    const success = spec.success as Schema.Schema<unknown, unknown, never>
    const error = spec.error as Schema.Schema<unknown, unknown, never>
    const encodeSuccess = Schema.encodeSync(success)
    const decodeSuccess = Schema.decodeUnknownSync(success)
    cached = {
      encodePayload: Schema.encodeSync(payload),
      decodePayload: Schema.decodeUnknownSync(payload),
      encodeSuccess,
      decodeSuccess,
      encodeError: Schema.encodeSync(error),
      decodeError: Schema.decodeUnknownSync(error),
      encodeElements: (values) => values.map((value) => encodeSuccess(value)),
      decodeElements: (value) => {
        if (!Array.isArray(value)) {
          throw new globalThis.Error(`a batch of stream elements must be an array, got ${typeof value}`)
        }
        return value.map((element) => decodeSuccess(element))
      }
    }
    codecs.set(spec, cached)
  }
  return cached
}

/**
 * The deadline (milliseconds since the epoch) of the component calls the
 * fiber makes, or `undefined` for none. A handler runs with its caller's
 * deadline, in whatever process it runs, so a deadline bounds a whole chain
 * of calls. Transports read it to carry it across the wire.
 *
 * @since 0.1.0
 * @category deadlines
 */
export const currentDeadline: FiberRef.FiberRef<number | undefined> = fiberRefs.currentDeadline

/**
 * Runs `self` with a deadline `duration` from now for every component call
 * it makes, co-located or remote (an earlier deadline already in force is
 * kept). A call still running at the deadline is interrupted and fails with
 * `RemoteCallError` (reason `Timeout`).
 *
 * @example
 * ```ts
 * const reversed = yield* reverser.reverse("abc").pipe(Component.withTimeout("50 millis"))
 * ```
 *
 * @since 0.1.0
 * @category deadlines
 */
export const withTimeout: {
  (duration: Duration.DurationInput): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  <A, E, R>(self: Effect.Effect<A, E, R>, duration: Duration.DurationInput): Effect.Effect<A, E, R>
} = dual(2, <A, E, R>(self: Effect.Effect<A, E, R>, duration: Duration.DurationInput) =>
  Effect.suspend(() => {
    const at = Date.now() + Duration.toMillis(duration)
    return Effect.locallyWith(self, currentDeadline, (current) => current !== undefined && current < at ? current : at)
  }))

/**
 * The client a caller gets for a component: one function per method, each
 * returning an Effect that may also fail with {@link RemoteCallError}.
 *
 * @since 0.1.0
 * @category models
 */
export type Client<M extends Methods> = {
  readonly [K in keyof M]: [Schema.Schema.Type<M[K]["payload"]>] extends [void] ? () => Result<M[K]>
    : (payload: Schema.Schema.Type<M[K]["payload"]>) => Result<M[K]>
}

/**
 * What calling a method returns: an Effect of its result, or for a streaming
 * method (`stream: true`) a Stream of its elements; either may also fail with
 * {@link RemoteCallError}.
 *
 * @since 0.2.0
 * @category models
 */
export type Result<T extends AnyMethod> = T["stream"] extends true ? Stream.Stream<
    Schema.Schema.Type<T["success"]>,
    Schema.Schema.Type<T["error"]> | RemoteCallError
  >
  : Effect.Effect<Schema.Schema.Type<T["success"]>, Schema.Schema.Type<T["error"]> | RemoteCallError>

/**
 * What an implementation provides: one handler per method. A handler fails
 * with the method's declared errors, or with the `RemoteCallError` of a call
 * it made and did not handle (its caller then gets a `RemoteCallError`).
 * The handler of a streaming method returns a Stream of its elements (an
 * Effect, which Effect treats as a Stream of one element, is one too).
 *
 * @since 0.1.0
 * @category models
 */
export type Handlers<M extends Methods> = {
  readonly [K in keyof M]: (payload: Schema.Schema.Type<M[K]["payload"]>) => HandlerResult<M[K]>
}

/**
 * What the handler of a method returns (see {@link Handlers}).
 *
 * @since 0.2.0
 * @category models
 */
export type HandlerResult<T extends AnyMethod> = T["stream"] extends true
  ? Stream.Stream<Schema.Schema.Type<T["success"]>, Schema.Schema.Type<T["error"]> | RemoteCallError>
  : Effect.Effect<Schema.Schema.Type<T["success"]>, Schema.Schema.Type<T["error"]> | RemoteCallError>

/**
 * The static side of a component declaration.
 *
 * @since 0.1.0
 * @category models
 */
export interface Tag<Self, Name extends string, M extends Methods> extends Context.TagClass<Self, Name, Client<M>> {
  readonly [TypeId]: TypeId
  /** The component's full name, as used in config sections, logs and metrics. */
  readonly componentName: Name
  readonly methods: M
}

/**
 * Any component declaration.
 *
 * @since 0.1.0
 * @category models
 */
export interface Any {
  readonly [TypeId]: TypeId
  readonly key: string
  readonly componentName: string
  readonly methods: Methods
}

/**
 * The methods of a component declaration.
 *
 * @since 0.1.0
 * @category models
 */
export type MethodsOf<T> = T extends { readonly methods: infer M extends Methods } ? M : never

/**
 * The identifier (`Self`) of a component declaration.
 *
 * @since 0.1.0
 * @category models
 */
export type Identifier<T> = T extends Context.Tag<infer I, any> ? I : never

const namePattern = /^[A-Za-z_][\w.-]*(\/[A-Za-z_][\w.-]*)*$/

/**
 * Declares a component: a fully qualified name (`"hello/Reverser"`) and its
 * methods. The result is a `Context.Tag` class, so callers get the client with
 * `yield* Reverser`.
 *
 * @example
 * ```ts
 * export class Reverser extends Component.Tag("hello/Reverser")<Reverser>()({
 *   reverse: Component.method({ payload: Schema.String, success: Schema.String })
 * }) {}
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const Tag =
  <const Name extends string>(name: Name) => <Self>() => <const M extends Methods>(methods: M): Tag<Self, Name, M> => {
    if (!namePattern.test(name) || name === "main") {
      throw new globalThis.Error(
        `invalid component name ${JSON.stringify(name)}: use a path such as "app/Component" ("main" is reserved)`
      )
    }
    for (const key of Object.keys(methods)) {
      if (!/^[A-Za-z_$][\w$]*$/.test(key)) {
        throw new globalThis.Error(`component ${name}: invalid method name ${JSON.stringify(key)}`)
      }
    }
    const Base = Context.Tag(name)<Self, Client<M>>()
    return Object.assign(Base, {
      [TypeId]: TypeId,
      componentName: name,
      methods,
      _op: "Commit",
      commit: resolve
    }) as any
  }

/**
 * What `yield* Component` runs: the client in the context, as a
 * `Context.Tag` resolves it, telling the client it was resolved, so that the
 * weavelet records its caller as one that requires the component (the call
 * graph mutual TLS authorizes calls with).
 */
function resolve(this: Context.Tag<any, any>) {
  return Effect.map(Effect.context<never>(), (context) => {
    const client = Context.unsafeGet(context, this)
    client[fiberRefs.clientResolved]?.()
    return client
  })
}

/**
 * Returns `true` if the value is a component declaration.
 *
 * @since 0.1.0
 * @category guards
 */
export const isComponent = (u: unknown): u is Any => typeof u === "function" && TypeId in u

/**
 * An implementation of a component, ready to be listed in `Weaver.app`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Implementation<T extends Any = Any, R = any> {
  readonly component: T
  readonly config: Schema.Schema<any, any, never> | undefined
  readonly listeners: ReadonlyArray<string>
  readonly make: (config: any) => Effect.Effect<Handlers<Methods>, unknown, R | Scope.Scope>
  /**
   * Whether the component is a singleton: its colocation group runs exactly
   * one replica in every deployment (see {@link ImplementOptions.singleton}).
   */
  readonly singleton: boolean
  /** Where the implementation was written, `file:line`, for log lines. */
  readonly source: string
  /** @internal */
  readonly _R?: (_: never) => R
}

/**
 * Options for {@link implement}.
 *
 * @since 0.1.0
 * @category models
 */
export interface ImplementOptions<C> {
  /**
   * The schema of the component's section in weaver.toml. The section is
   * decoded when the application starts; unknown keys are an error.
   */
  readonly config?: Schema.Schema<C, any, never>
  /** Names of the listeners this component serves with `Weaver.serve`. */
  readonly listeners?: ReadonlyArray<string>
  /**
   * A singleton: the component's colocation group runs exactly one replica
   * in every deployment, whatever `[multi] replicas` or a kube scaling spec
   * say for other groups (components co-located with it run once too), and
   * the deployment constructs it when it starts rather than on first call.
   * Its construction (`make`) is then the run-once hook of a deployment: a
   * migration, a leader's work, a scheduler.
   *
   * "Once" means at most one live instance at a time: if its process dies,
   * the deployer restarts it and `make` runs again in the new process (the
   * old instance's in-memory state is gone). Calls made while it is down
   * wait for the new replica, within their deadline and the retry policy.
   *
   * @since 0.2.0
   */
  readonly singleton?: boolean
}

/**
 * Implements a component. `make` is an Effect that builds the handlers; the
 * components it depends on are ordinary requirements (`yield* Other`). It
 * runs once per process, the first time the component is needed, and its
 * scope lasts as long as the process.
 *
 * With options, `make` is an Effect, or with a `config` schema a function of
 * the decoded config section. `singleton: true` makes the component a
 * singleton (see {@link ImplementOptions.singleton}).
 *
 * @example
 * ```ts
 * export const ReverserImpl = Component.implement(Reverser, Effect.gen(function*() {
 *   return { reverse: (s) => Effect.succeed([...s].reverse().join("")) }
 * }))
 *
 * // runs once per deployment, when it starts
 * export const MigratorImpl = Component.implement(Migrator, { singleton: true }, Effect.gen(function*() {
 *   yield* migrate
 *   return { version: () => Effect.succeed(schemaVersion) }
 * }))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const implement: {
  <T extends Any, E, R>(
    component: T,
    make: Effect.Effect<Handlers<MethodsOf<T>>, E, R>
  ): Implementation<T, Exclude<R, Scope.Scope>>
  <T extends Any, E, R>(
    component: T,
    options: ImplementOptions<never> & { readonly config?: undefined },
    make: Effect.Effect<Handlers<MethodsOf<T>>, E, R>
  ): Implementation<T, Exclude<R, Scope.Scope>>
  <T extends Any, C, E, R>(
    component: T,
    options: ImplementOptions<C>,
    make: (config: C) => Effect.Effect<Handlers<MethodsOf<T>>, E, R>
  ): Implementation<T, Exclude<R, Scope.Scope>>
} = (component: Any, optionsOrMake: any, make?: any): Implementation<any, any> => {
  const options: ImplementOptions<unknown> = make === undefined ? {} : optionsOrMake
  const build = make === undefined ? optionsOrMake : make
  if (options.config !== undefined && Effect.isEffect(build)) {
    throw new globalThis.Error(
      `Component.implement(${component.componentName}): with a config schema, make is a function of the config: ` +
        `(config) => Effect`
    )
  }
  return {
    component,
    config: options.config,
    listeners: options.listeners ?? [],
    make: Effect.isEffect(build) ? () => build : build,
    singleton: options.singleton === true,
    source: callSite()
  }
}

/**
 * The file and line of the caller's caller, e.g. `Reverser.ts:12`.
 *
 * @internal
 */
export const callSite = (): string => {
  const holder: { stack?: string } = {}
  const limit = globalThis.Error.stackTraceLimit
  globalThis.Error.stackTraceLimit = 3
  globalThis.Error.captureStackTrace(holder, callSite)
  globalThis.Error.stackTraceLimit = limit
  const line = holder.stack?.split("\n")[2] ?? ""
  const match = /([^/\\(\s]+):(\d+):\d+\)?\s*$/.exec(line)
  return match ? `${match[1]}:${match[2]}` : "unknown:0"
}

/**
 * How one method of a lifted service crosses a process boundary: a schema
 * per argument, the success and the error (see {@link lift}). `success` may
 * be left out only for a method that succeeds with `void`, `error` only for
 * one that cannot fail, `args` only for one without arguments.
 *
 * @since 0.2.0
 * @category models
 */
export type LiftedMethod<F> = F extends (...args: infer Args) => Effect.Effect<infer A, infer E, infer R> ?
    & LiftedArgs<Args>
    & ([A] extends [void] ? { readonly success?: Schema.Schema<A, any, never> }
      : { readonly success: Schema.Schema<A, any, never> })
    & LiftedRest<Args, E, R>
  // A method returning a Stream (tested second: an Effect is also a Stream, of one element).
  : F extends (...args: infer Args) => Stream.Stream<infer A, infer E, infer R> ?
      & LiftedArgs<Args>
      & { readonly success: Schema.Schema<A, any, never>; readonly stream: true }
      & LiftedRest<Args, E, R>
  : never

type LiftedArgs<Args> = [Args] extends [readonly []] ? { readonly args?: readonly [] }
  : { readonly args: { readonly [I in keyof Args]: Schema.Schema<Args[I], any, never> } }

type LiftedRest<Args extends ReadonlyArray<unknown>, E, R> =
  & ([E] extends [never] ? { readonly error?: Schema.Schema<never, any, never> }
    : { readonly error: Schema.Schema<E, any, never> })
  & ([R] extends [never] ? unknown : { readonly "a lifted method may not require services": R })
  & {
    readonly retry?: boolean
    readonly routeBy?: (...args: Args) => string | number
    readonly timeout?: Duration.DurationInput
  }

type EffectMethodKeys<S> = {
  [K in keyof S]: S[K] extends
    (...args: ReadonlyArray<any>) => Effect.Effect<any, any, any> | Stream.Stream<any, any, any> ? K
    : never
}[keyof S]

/**
 * The schemas {@link lift} needs for a service of type `S`: one
 * {@link LiftedMethod} per method. A service with members that are not
 * methods returning an Effect cannot be lifted (they could not be called in
 * another process).
 *
 * @since 0.2.0
 * @category models
 */
export type LiftedMethods<S> =
  & { readonly [K in EffectMethodKeys<S>]: LiftedMethod<S[K]> }
  & ([Exclude<keyof S, EffectMethodKeys<S>>] extends [never] ? unknown : {
    readonly "only methods returning an Effect or a Stream can be lifted; not these members": Exclude<
      keyof S,
      EffectMethodKeys<S>
    >
  })

/**
 * A component made from an existing service by {@link lift}: its
 * `Context.Tag` is the one the application already uses.
 *
 * @since 0.2.0
 * @category models
 */
export interface Lifted<I, S> extends Context.Tag<I, S>, Any {
  /** Turns the component's client into the service callers get under the original Tag. */
  readonly serviceOf: (client: Client<Methods>) => S
}

/**
 * Lifts an existing Effect service into a component, without rewriting it:
 * its `Context.Tag`, the `Layer` that builds it, and a schema for each
 * method (its arguments, success and error), given once, so that calls can
 * cross a process boundary.
 *
 * - The Tag the application already uses keeps working everywhere:
 *   `yield* Orders` gets the service, whose methods are the component's
 *   client — plain calls when co-located, remote calls otherwise. Because
 *   the Tag's types have no room for `RemoteCallError`, a call the transport
 *   could not complete (after the pipeline's retries) fails the caller with
 *   that `RemoteCallError` as a defect.
 * - The Layer is built once per process that hosts the component (in the
 *   weavelet's scope), when the component is first needed. Its requirements
 *   are resolved like a component's: other lifted services and components
 *   are clients; `Config` reads the component's section of weaver.toml
 *   (`["shop/Pricing"] discount = 10` for `Config.number("discount")`), then
 *   the environment. Any other service it needs is provided with
 *   `Layer.provide`, as in any Effect app.
 * - The component is named by the Tag's key unless `name` is given (a
 *   component name is a path such as `"shop/Orders"`). `singleton: true`
 *   makes it a singleton (see {@link ImplementOptions.singleton}): its Layer
 *   is then built once per deployment, as it starts.
 *
 * @example
 * ```ts
 * export const OrdersComponent = Component.lift(Orders, OrdersLive, {
 *   place: { args: [Order], success: Receipt, error: Schema.Union(OutOfStock, UnknownSku) },
 *   history: { success: Schema.Array(Receipt) }
 * })
 * export const app = Weaver.app({ main, components: [OrdersComponent, InventoryComponent] })
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const lift = <I, S, E, R>(
  tag: Context.Tag<I, S>,
  layer: Layer.Layer<I, E, R>,
  methods: LiftedMethods<S>,
  options?: { readonly name?: string | undefined; readonly singleton?: boolean | undefined }
): Implementation<Lifted<I, S>, Exclude<R, Scope.Scope>> => {
  const specs: Record<string, AnyMethod> = {}
  const arities: Record<string, number> = {}
  for (const [key, lifted] of Object.entries(methods as Record<string, LiftedSpec>)) {
    const args = lifted.args ?? []
    arities[key] = args.length
    const routeBy = lifted.routeBy
    specs[key] = method<Schema.Schema.Any, Schema.Schema.Any, Schema.Schema.All, boolean>({
      payload: args.length === 0 ? Schema.Void : args.length === 1 ? args[0]! : Schema.Tuple(...args),
      success: lifted.success ?? Schema.Void,
      error: lifted.error ?? Schema.Never,
      retry: lifted.retry ?? true,
      stream: lifted.stream === true,
      ...(routeBy === undefined ? {} : { routeBy: (payload) => routeBy(...argsOf(args.length, payload)) }),
      ...(lifted.timeout === undefined ? {} : { timeout: lifted.timeout })
    }) as AnyMethod
  }
  const name = options?.name ?? tag.key
  if (options?.name === undefined && !namePattern.test(name)) {
    throw new globalThis.Error(
      `Component.lift: the Tag's key ${JSON.stringify(name)} is not a component name; ` +
        `give one: Component.lift(Tag, layer, methods, { name: "app/Service" })`
    )
  }
  const declared = Tag(name)<I>()(specs)
  const serviceOf = (client: Client<Methods>): S => {
    let resolved = false
    const service: Record<string, (...args: ReadonlyArray<unknown>) => unknown> = {}
    for (const [key, arity] of Object.entries(arities)) {
      const call = client[key] as (payload?: unknown) => Effect.Effect<unknown, unknown> & Stream.Stream<unknown>
      const streaming = specs[key]!.stream
      service[key] = (...args) => {
        // Nothing resolves the original Tag through the component: its first call records the call-graph edge.
        if (!resolved) {
          resolved = true
          ;(client as { [fiberRefs.clientResolved]?: () => void })[fiberRefs.clientResolved]?.()
        }
        const result = call(payloadOf(arity, args))
        return streaming
          ? Stream.catchAll(
            result as Stream.Stream<unknown, unknown>,
            (e) => isRemoteCallError(e) ? Stream.die(e) : Stream.fail(e)
          )
          : Effect.catchIf(result, isRemoteCallError, Effect.die)
      }
    }
    return service as S
  }
  const component = Object.assign(declared, { serviceOf }) as unknown as Lifted<I, S>
  const make = (section: Record<string, unknown>) =>
    Effect.flatMap(
      Layer.build(Layer.provide(layer, Layer.setConfigProvider(sectionProvider(section)))),
      (context) => {
        const service = Context.get(context, tag) as Record<string, unknown>
        const handlers: Record<string, (payload: unknown) => Effect.Effect<unknown, unknown>> = {}
        for (const [key, arity] of Object.entries(arities)) {
          const fn = service[key]
          if (typeof fn !== "function") {
            return Effect.dieMessage(`Component.lift: the service ${tag.key} its Layer built has no method ${key}`)
          }
          handlers[key] = (payload) => fn.apply(service, argsOf(arity, payload))
        }
        return Effect.succeed(handlers)
      }
    )
  return {
    component,
    config: SectionSchema,
    listeners: [],
    make: make as Implementation["make"],
    singleton: options?.singleton === true,
    source: callSite()
  }
}

interface LiftedSpec {
  readonly args?: ReadonlyArray<Schema.Schema.Any>
  readonly success?: Schema.Schema.Any
  readonly error?: Schema.Schema.All
  readonly retry?: boolean
  readonly routeBy?: (...args: ReadonlyArray<unknown>) => string | number
  readonly timeout?: Duration.DurationInput
  readonly stream?: boolean
}

/** The payload of a lifted method: nothing, its one argument, or the tuple of its arguments. */
const payloadOf = (arity: number, args: ReadonlyArray<unknown>): unknown =>
  arity === 0 ? undefined : arity === 1 ? args[0] : args

/** The arguments of a lifted method from its payload. */
const argsOf = (arity: number, payload: unknown): ReadonlyArray<unknown> =>
  arity === 0 ? [] : arity === 1 ? [payload] : payload as ReadonlyArray<unknown>

const isRemoteCallError = (error: unknown): boolean =>
  typeof error === "object" && error !== null && (error as { readonly _tag?: unknown })._tag === "RemoteCallError"

/** A lifted component's section of weaver.toml: whatever its Layer reads with `Config`. */
const SectionSchema = Schema.Record({ key: Schema.String, value: Schema.Unknown })

/** `Config` reads the component's section, then the environment. */
const sectionProvider = (section: Record<string, unknown>): ConfigProvider.ConfigProvider =>
  ConfigProvider.fromJson(section).pipe(ConfigProvider.orElse(() => ConfigProvider.fromEnv()))
