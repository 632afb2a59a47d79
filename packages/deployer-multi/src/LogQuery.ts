/**
 * Service Weaver's log query language: a subset of CEL over the fields of a
 * log entry, as `weaver multi logs 'app == "hello" && msg.contains("error")'`
 * takes it.
 *
 * A query is a condition over these fields:
 *
 * | field            | value                                                 |
 * |------------------|-------------------------------------------------------|
 * | `app`            | the application name                                  |
 * | `version`        | the first 8 characters of the deployment id           |
 * | `full_version`   | the deployment id                                     |
 * | `component`      | the short component name (`hello.Reverser`)           |
 * | `full_component` | the component name (`hello/Reverser`)                 |
 * | `node`           | the first 8 characters of the replica id              |
 * | `full_node`      | the replica id                                        |
 * | `time`           | when the entry was logged                             |
 * | `level`          | `debug`, `info`, `warn`, `error`, `stdout`, `stderr`  |
 * | `source`         | `file:line`                                           |
 * | `msg`            | the message                                           |
 * | `attrs`          | the attributes, a map from string to string           |
 *
 * and is made of `!`, `&&`, `||`, parentheses, comparisons (`==`, `!=`, `<`,
 * `<=`, `>`, `>=`) with a field or `attrs["key"]` on the left and a constant
 * string on the right (`time` compares with `timestamp("RFC 3339")`),
 * `x.contains("s")`, `x.matches("regex")` (a JavaScript regular expression,
 * matching anywhere in the value) and `"key" in attrs`. `attrs["key"]` implies
 * `"key" in attrs`: a comparison on a missing attribute is false.
 *
 * ```text
 * app == "todo" && level == "error"
 * msg.matches("error: file .* already closed")
 * attrs["foo"] == "bar" || !("foo" in attrs)
 * time >= timestamp("2024-01-02T15:04:05Z")
 * ```
 *
 * @since 0.1.0
 */
import * as Logging from "@effect-weaver/runtime/Logging"
import { type ASTNode, parse as celParse } from "@marcbachmann/cel-js"
import * as Data from "effect/Data"
import type * as Effect from "effect/Effect"
import * as Either from "effect/Either"

/**
 * A query that is not valid: a syntax error, an unknown field or a construct
 * outside the supported subset. `position` is the offset in `query` of what
 * is wrong; the message quotes the query with a caret under it.
 *
 * @since 0.1.0
 * @category errors
 */
export class QueryError extends Data.TaggedError("QueryError")<{
  readonly query: string
  readonly position: number
  readonly reason: string
}> {
  /**
   * The 1-based line of {@link QueryError.position}.
   *
   * @since 0.1.0
   */
  get line(): number {
    return this.query.slice(0, this.position).split("\n").length
  }

  /**
   * The 1-based column of {@link QueryError.position} in its line.
   *
   * @since 0.1.0
   */
  get column(): number {
    return this.position - (this.query.lastIndexOf("\n", this.position - 1) + 1) + 1
  }

  /**
   * @since 0.1.0
   */
  override get message(): string {
    const lines = this.query.split("\n")
    const line = this.line
    const text = lines[line - 1] ?? ""
    // Keep tabs in the caret line so the caret lines up under a tab-indented query.
    const pad = text.slice(0, this.column - 1).replace(/[^\t]/g, " ")
    const at = lines.length > 1 ? `line ${line}, column ${this.column}` : `column ${this.column}`
    return `invalid query at ${at}: ${this.reason}\n  ${text}\n  ${pad}^`
  }
}

/**
 * A compiled query: whether an entry matches.
 *
 * @since 0.1.0
 * @category models
 */
export type Predicate = (entry: Logging.Entry) => boolean

/**
 * The fields a query may name.
 *
 * @since 0.1.0
 * @category models
 */
export const fields: ReadonlyArray<string> = [
  "app",
  "version",
  "full_version",
  "component",
  "full_component",
  "node",
  "full_node",
  "time",
  "level",
  "source",
  "msg",
  "attrs"
]

const shorten = (id: string) => id.slice(0, 8)

const stringFields: Record<string, (entry: Logging.Entry) => string> = {
  app: (e) => e.app,
  version: (e) => shorten(e.version),
  full_version: (e) => e.version,
  component: (e) => Logging.shortComponent(e.component),
  full_component: (e) => e.component,
  node: (e) => shorten(e.node),
  full_node: (e) => e.node,
  level: (e) => e.level,
  source: (e) => e.source,
  msg: (e) => e.msg
}

const attr = (entry: Logging.Entry, key: string): string | undefined => {
  for (const [k, v] of entry.attrs) if (k === key) return v
  return undefined
}

class Invalid {
  constructor(readonly position: number, readonly reason: string) {}
}

const invalid = (node: { readonly pos: number }, reason: string): never => {
  throw new Invalid(node.pos, reason)
}

/** A string-valued operand: a field other than `time`, or `attrs["key"]` (undefined when missing). */
type StringGetter = (entry: Logging.Entry) => string | undefined

type Operand =
  | { readonly _tag: "String"; readonly name: string; readonly get: StringGetter }
  | { readonly _tag: "Time" }

const describe = (node: ASTNode): string => {
  switch (node.op) {
    case "value":
      return typeof node.args === "string"
        ? JSON.stringify(node.args)
        : typeof node.args === "bigint" || typeof node.args === "number" || typeof node.args === "boolean"
        ? String(node.args)
        : "a constant"
    case "id":
      return `field ${node.args}`
    case "call":
    case "rcall":
      return `a call to ${node.args[0]}`
    default:
      return `an expression`
  }
}

const operand = (node: ASTNode, role: string): Operand => {
  if (node.op === "id") {
    const name = node.args
    if (name === "time") return { _tag: "Time" }
    const get = stringFields[name]
    if (get !== undefined) return { _tag: "String", name, get }
    if (name === "attrs") return invalid(node, `attrs must be indexed with a constant string, as in attrs["key"]`)
    return invalid(node, `unknown field ${JSON.stringify(name)}; the fields are ${fields.join(", ")}`)
  }
  if (node.op === "[]") {
    const [map, key] = node.args
    if (map.op !== "id" || map.args !== "attrs") {
      if (map.op === "id" && !fields.includes(map.args)) {
        return invalid(map, `unknown field ${JSON.stringify(map.args)}; the fields are ${fields.join(", ")}`)
      }
      return invalid(node, `only attrs can be indexed, as in attrs["key"]`)
    }
    if (key.op !== "value" || typeof key.args !== "string") {
      return invalid(key, `an attribute key must be a constant string, as in attrs["key"]`)
    }
    const k = key.args
    return { _tag: "String", name: `attrs[${JSON.stringify(k)}]`, get: (e) => attr(e, k) }
  }
  if (node.op === ".") {
    const [target] = node.args
    if (target.op === "id" && !fields.includes(target.args)) operand(target, role)
    return invalid(node, `fields have no members; to read an attribute write attrs["key"]`)
  }
  return invalid(node, `the ${role} must be a field or attrs["key"], not ${describe(node)}`)
}

const stringConstant = (node: ASTNode, what: string): string => {
  if (node.op === "value" && typeof node.args === "string") return node.args
  return invalid(node, `${what} must be a constant string, not ${describe(node)}`)
}

const rfc3339 = /^(\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$/

/**
 * Parses an RFC 3339 timestamp to microseconds since the epoch, or returns
 * `undefined` when the text is not one.
 *
 * @since 0.1.0
 * @category constructors
 */
export const parseTimestamp = (text: string): number | undefined => {
  const match = rfc3339.exec(text)
  if (match === null) return undefined
  const millis = Date.parse(`${match[1]!.toUpperCase()}${match[3]!.toUpperCase()}`)
  if (Number.isNaN(millis)) return undefined
  const fraction = Number((match[2] ?? "").padEnd(6, "0").slice(0, 6))
  return millis * 1000 + fraction
}

const timestampConstant = (node: ASTNode): number => {
  if (node.op !== "call" || node.args[0] !== "timestamp") {
    return invalid(node, `time must be compared with timestamp("RFC 3339"), not ${describe(node)}`)
  }
  const args = node.args[1]
  if (args.length !== 1) return invalid(node, `timestamp takes one constant string`)
  const text = stringConstant(args[0]!, "the argument of timestamp")
  const micros = parseTimestamp(text)
  if (micros === undefined) {
    return invalid(
      args[0]!,
      `invalid timestamp ${JSON.stringify(text)}: expected RFC 3339, as in "2024-01-02T15:04:05.000Z"`
    )
  }
  return micros
}

const comparisons: Record<string, (a: string | number, b: string | number) => boolean> = {
  "==": (a, b) => a === b,
  "!=": (a, b) => a !== b,
  "<": (a, b) => a < b,
  "<=": (a, b) => a <= b,
  ">": (a, b) => a > b,
  ">=": (a, b) => a >= b
}

const compare = (op: string, left: ASTNode, right: ASTNode): Predicate => {
  if (left.op === "value" || left.op === "call") {
    return invalid(left, `the left side of ${op} must be a field or attrs["key"], not ${describe(left)}`)
  }
  const lhs = operand(left, `left side of ${op}`)
  const test = comparisons[op]!
  if (lhs._tag === "Time") {
    const micros = timestampConstant(right)
    return (e) => test(e.timeMicros, micros)
  }
  const value = stringConstant(right, `the right side of ${op}`)
  const get = lhs.get
  return (e) => {
    const v = get(e)
    return v !== undefined && test(v, value)
  }
}

const method = (node: ASTNode & { readonly op: "rcall" }): Predicate => {
  const [name, receiver, args] = node.args
  if (name !== "contains" && name !== "matches") {
    return invalid(node, `unsupported method ${name}: use contains or matches`)
  }
  const target = operand(receiver, `receiver of ${name}`)
  if (target._tag === "Time") return invalid(receiver, `time has no method ${name}`)
  if (args.length !== 1) return invalid(node, `${name} takes one constant string`)
  const argument = stringConstant(args[0]!, `the argument of ${name}`)
  const get = target.get
  if (name === "contains") {
    return (e) => get(e)?.includes(argument) ?? false
  }
  const regex = Either.try({ try: () => new RegExp(argument), catch: (e) => (e as Error).message })
  if (Either.isLeft(regex)) return invalid(args[0]!, `invalid regular expression: ${regex.left}`)
  const re = regex.right
  return (e) => {
    const v = get(e)
    return v !== undefined && re.test(v)
  }
}

const condition = (node: ASTNode): Predicate => {
  switch (node.op) {
    case "&&": {
      const [a, b] = node.args.map(condition) as [Predicate, Predicate]
      return (e) => a(e) && b(e)
    }
    case "||": {
      const [a, b] = node.args.map(condition) as [Predicate, Predicate]
      return (e) => a(e) || b(e)
    }
    case "!_": {
      const a = condition(node.args)
      return (e) => !a(e)
    }
    case "==":
    case "!=":
    case "<":
    case "<=":
    case ">":
    case ">=":
      return compare(node.op, node.args[0], node.args[1])
    case "in": {
      const [key, map] = node.args
      const k = stringConstant(key, `the left side of in`)
      if (map.op !== "id" || map.args !== "attrs") {
        return invalid(map, `the right side of in must be attrs, as in "key" in attrs`)
      }
      return (e) => attr(e, k) !== undefined
    }
    case "rcall":
      return method(node)
    case "call":
      return invalid(node, `unsupported function ${node.args[0]}: only timestamp, compared with time`)
    case "id":
    case "[]":
    case ".":
      operand(node, "condition")
      return invalid(node, `expected a condition, such as ${describe(node).replace(/^field /, "")} == "..."`)
    case "value":
      return invalid(node, `expected a condition, not the constant ${describe(node)}`)
    default:
      return invalid(node, `unsupported operator ${JSON.stringify(node.op.replace(/_$/, ""))}`)
  }
}

const compileSync = (query: string): Either.Either<Predicate, QueryError> => {
  if (query.trim() === "") return Either.right(() => true)
  return Either.try({
    try: () => condition(celParse(query).ast),
    catch: (e) => {
      if (e instanceof Invalid) return new QueryError({ query, position: e.position, reason: e.reason })
      const error = e as { readonly summary?: string; readonly message?: string; readonly range?: { start: number } }
      const summary = error.summary ?? String(error.message).split("\n")[0]!
      return new QueryError({
        query,
        position: Math.min(error.range?.start ?? 0, query.length),
        reason: summary.charAt(0).toLowerCase() + summary.slice(1)
      })
    }
  })
}

/**
 * Compiles a query to a predicate over log entries. An empty query matches
 * every entry.
 *
 * @since 0.1.0
 * @category constructors
 */
export const compile = (query: string): Effect.Effect<Predicate, QueryError> => compileSync(query)

/**
 * {@link compile}, as an `Either`, for callers outside Effect.
 *
 * @since 0.1.0
 * @category constructors
 */
export const compileEither: (query: string) => Either.Either<Predicate, QueryError> = compileSync
