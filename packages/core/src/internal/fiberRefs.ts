import * as FiberRef from "effect/FiberRef"
import * as GlobalValue from "effect/GlobalValue"

/** @internal */
export interface ComponentInfo {
  readonly name: string
  /** `file:line` of the implementation, shown in log lines. */
  readonly source: string
}

/**
 * The component whose code the fiber is running, for logs and metrics.
 *
 * @internal
 */
export const currentComponent = GlobalValue.globalValue(
  Symbol.for("@effect-weaver/core/currentComponent"),
  () => FiberRef.unsafeMake<ComponentInfo | undefined>(undefined)
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
