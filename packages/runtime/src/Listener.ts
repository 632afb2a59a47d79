/**
 * What a deployment knows of a listener besides its address: the protocol
 * its application speaks on it, which tells a deployer how to put a proxy in
 * front of it.
 *
 * @since 0.2.0
 */
import * as Schema from "effect/Schema"

/**
 * The kind of a listener: `http` for one served with `Weaver.serve` (a
 * deployer may proxy it request by request, at layer 7), `tcp` for one bound
 * with `Weaver.listener` and used for any protocol (a deployer proxies it
 * connection by connection, at layer 4, and never looks at the bytes).
 *
 * @since 0.2.0
 * @category schemas
 */
export const Kind = Schema.Literal("http", "tcp")

/**
 * @since 0.2.0
 * @category models
 */
export type Kind = typeof Kind.Type

/**
 * How a listener of `kind` is served, for messages: `tcp (Weaver.listener)`.
 *
 * @since 0.2.0
 * @category formatting
 */
export const describe = (kind: Kind): string => kind === "http" ? "http (Weaver.serve)" : "tcp (Weaver.listener)"
