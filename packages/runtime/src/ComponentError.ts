/**
 * Errors raised by the component runtime.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import * as Schema from "effect/Schema"

/**
 * Why a remote call failed.
 *
 * - `Unreachable`: no replica of the component could be reached.
 * - `Timeout`: the call's deadline expired.
 * - `Protocol`: a peer sent something the wire protocol does not allow.
 * - `Decode`: a payload, result or error did not match the method's schema.
 * - `Handler`: the implementation died (a defect) while handling the call.
 * - `Cancelled`: the call was cancelled by the other side.
 *
 * @since 0.1.0
 * @category models
 */
export const RemoteCallReason = Schema.Literal(
  "Unreachable",
  "Timeout",
  "Protocol",
  "Decode",
  "Handler",
  "Cancelled",
  "Unauthorized"
)

/**
 * The reason carried by a {@link RemoteCallError}.
 *
 * @since 0.1.0
 * @category models
 */
export type RemoteCallReason = typeof RemoteCallReason.Type

/**
 * A call to a component failed in the transport, not in the method.
 *
 * As in Service Weaver, a `RemoteCallError` means the method **may have run
 * zero, one or many times**: only retry methods that are idempotent. Errors
 * the method declares in its `error` schema never arrive as a
 * `RemoteCallError`; they arrive as themselves and are caught with
 * `Effect.catchTag` exactly as in a local call.
 *
 * @since 0.1.0
 * @category errors
 */
export class RemoteCallError extends Schema.TaggedError<RemoteCallError>("@effect-weaver/core/RemoteCallError")(
  "RemoteCallError",
  {
    component: Schema.String,
    method: Schema.String,
    reason: RemoteCallReason,
    detail: Schema.String
  }
) {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `call to ${this.component}.${this.method} failed (${this.reason}): ${this.detail}`
  }
}

/**
 * A component's implementation failed while it was being constructed.
 *
 * Construction happens once per process, on first use; a failure is a
 * defect at every call site, named after the component that failed.
 *
 * @since 0.1.0
 * @category errors
 */
export class ComponentConstructionError extends Data.TaggedError("ComponentConstructionError")<{
  readonly component: string
  readonly cause: unknown
}> {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `component ${this.component} failed to construct: ${describe(this.cause)}`
  }
}

/**
 * Components depend on each other in a cycle while being constructed: each
 * waits for the next, so none of them could ever finish.
 *
 * @since 0.1.0
 * @category errors
 */
export class ComponentCycleError extends Data.TaggedError("ComponentCycleError")<{
  readonly path: ReadonlyArray<string>
}> {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `cycle in component construction: ${this.path.join(" → ")}`
  }
}

/**
 * A component was called that the application does not contain.
 *
 * @since 0.1.0
 * @category errors
 */
export class UnknownComponentError extends Data.TaggedError("UnknownComponentError")<{
  readonly component: string
  readonly known: ReadonlyArray<string>
}> {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `component ${this.component} is not part of this application (it has: ${
      this.known.join(", ") || "no components"
    }); add its implementation to Weaver.app({ components })`
  }
}

const describe = (cause: unknown): string => {
  if (cause instanceof Error) return cause.message
  if (typeof cause === "object" && cause !== null && "_tag" in cause) {
    const message = (cause as { message?: unknown }).message
    return typeof message === "string" && message !== "" ? `${String(cause._tag)}: ${message}` : String(cause._tag)
  }
  return String(cause)
}
