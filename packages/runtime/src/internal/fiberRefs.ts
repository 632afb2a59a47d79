import * as FiberRef from "effect/FiberRef"
import * as GlobalValue from "effect/GlobalValue"

/** @internal */
export interface ComponentInfo {
  readonly name: string
  /** `file:line` of the implementation, shown in log lines. */
  readonly source: string
}

/**
 * A fiber's record of the component whose code it is running. A call sets
 * `value` in place on the box its fiber owns, instead of setting a FiberRef:
 * `setFiberRef` copies the fiber's whole FiberRefs map, twice per call. A
 * forked fiber starts with a snapshot (a box it does not own yet), so what a
 * parent does later never shows in its children, and a joined child leaves
 * its parent's box alone.
 *
 * @internal
 */
export interface ComponentBox {
  /** The fiber that may write `value` in place; `undefined` until one claims the box. */
  owner: unknown
  value: ComponentInfo | undefined
}

/** @internal */
export const componentBox = (value: ComponentInfo | undefined): ComponentBox => ({ owner: undefined, value })

/**
 * The component whose code the fiber is running, for logs and metrics.
 *
 * @internal
 */
export const currentComponent = GlobalValue.globalValue(
  Symbol.for("@effect-weaver/core/currentComponent"),
  () =>
    FiberRef.unsafeMake<ComponentBox>(componentBox(undefined), {
      fork: (box) => componentBox(box.value),
      join: (parent) => parent
    })
)

/**
 * The components whose construction this fiber is inside, outermost first.
 *
 * @internal
 */
export const constructing = GlobalValue.globalValue(
  Symbol.for("@effect-weaver/core/constructing"),
  () => FiberRef.unsafeMake<ReadonlyArray<string>>([])
)

/**
 * The absolute deadline (milliseconds since the epoch) of the calls the
 * fiber makes, or `undefined` for none.
 *
 * @internal
 */
export const currentDeadline = GlobalValue.globalValue(
  Symbol.for("@effect-weaver/core/currentDeadline"),
  () => FiberRef.unsafeMake<number | undefined>(undefined)
)

/**
 * The key under which a client carries what to do when the code of a
 * component resolves it (`yield* Other`): record that its caller requires
 * the component, for the call graph.
 *
 * @internal
 */
export const clientResolved: unique symbol = Symbol.for("@effect-weaver/runtime/Component/resolved")
