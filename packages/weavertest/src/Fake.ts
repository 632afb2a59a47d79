/**
 * Fakes: hand-written implementations that replace a component in a test,
 * as Service Weaver's `weavertest.Fake`.
 *
 * @since 0.1.0
 */
import type { Component } from "@effect-weaver/core"
import type { Weavelet } from "@effect-weaver/runtime"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: unique symbol = Symbol.for("@effect-weaver/weavertest/Fake")

/**
 * @since 0.1.0
 * @category type ids
 */
export type TypeId = typeof TypeId

/**
 * A replacement for one component. Under every runner, every caller of the
 * component (the test body and other components alike) gets the fake, and
 * calls to it are always local: they never cross a transport.
 *
 * @since 0.1.0
 * @category models
 */
export interface Fake<I = any> {
  readonly [TypeId]: TypeId
  readonly component: Component.Any
  readonly handlers: Weavelet.AnyHandlers
  /** The component replaced, as a type: a runner given the fake accepts an app that leaves it unimplemented. */
  readonly _I?: (_: never) => I
}

/**
 * The components a list of fakes replaces, as a union of their identifiers.
 *
 * @since 0.2.0
 * @category models
 */
export type Replaced<Fakes> = Fakes extends ReadonlyArray<infer F> ? F extends Fake<infer I> ? I : never : never

/**
 * Replaces `component` with `handlers`, one per method of the component,
 * typed like the handlers of `Component.implement`. The component need not
 * be implemented in the application under test.
 *
 * @example
 * ```ts
 * const clock = weavertest.fake(Clock, { now: () => Effect.succeed("12:00") })
 * for (const runner of weavertest.allRunners({ fakes: [clock] })) {
 *   runner.test("greets at noon", app, Effect.gen(function*() { … }))
 * }
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <T extends Component.Any>(
  component: T,
  handlers: Component.Handlers<Component.MethodsOf<T>>
): Fake<Component.Identifier<T>> => ({
  [TypeId]: TypeId,
  component,
  handlers: handlers as unknown as Weavelet.AnyHandlers
})

/**
 * Returns `true` if the value is a {@link Fake}.
 *
 * @since 0.1.0
 * @category guards
 */
export const isFake = (u: unknown): u is Fake => typeof u === "object" && u !== null && TypeId in u
