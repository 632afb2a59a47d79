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
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as FiberRef from "effect/FiberRef"
import { dual } from "effect/Function"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
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
}

/**
 * Implements a component. `make` is an Effect that builds the handlers; the
 * components it depends on are ordinary requirements (`yield* Other`). It
 * runs once per process, the first time the component is needed, and its
 * scope lasts as long as the process.
 *
 * With a `config` schema, `make` is a function of the decoded config section.
 *
 * @example
 * ```ts
 * export const ReverserImpl = Component.implement(Reverser, Effect.gen(function*() {
 *   return { reverse: (s) => Effect.succeed([...s].reverse().join("")) }
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
  <T extends Any, C, E, R>(
    component: T,
    options: ImplementOptions<C>,
    make: (config: C) => Effect.Effect<Handlers<MethodsOf<T>>, E, R>
  ): Implementation<T, Exclude<R, Scope.Scope>>
} = (component: Any, optionsOrMake: any, make?: any): Implementation<any, any> => {
  const options: ImplementOptions<unknown> = make === undefined ? {} : optionsOrMake
  return {
    component,
    config: options.config,
    listeners: options.listeners ?? [],
    make: make === undefined ? () => optionsOrMake : make,
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
