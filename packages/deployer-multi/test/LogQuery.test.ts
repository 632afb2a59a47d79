import type { Logging } from "@effect-weaver/runtime"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as LogQuery from "../src/LogQuery.js"

const micros = (iso: string) => Date.parse(iso) * 1000

const entries: Record<string, Logging.Entry> = {
  reverse: {
    app: "hello",
    version: "5c9753e4-c476-4f93-97a0-0ea599184178",
    component: "hello/Reverser",
    node: "a1b2c3d4-0000-4000-8000-000000000001",
    timeMicros: micros("2024-01-02T15:04:05.123Z") + 456,
    level: "info",
    source: "Reverser.ts:12",
    msg: "reversing name",
    attrs: [["foo", "bar"], ["n", "10"]]
  },
  closed: {
    app: "todo",
    version: "11111111-2222-4333-8444-555555555555",
    component: "main",
    node: "ffffffff-0000-4000-8000-000000000002",
    timeMicros: micros("2024-01-02T16:00:00Z"),
    level: "error",
    source: "store.ts:40",
    msg: "error: file x.txt already closed",
    attrs: [["foo", "baz"]]
  },
  printed: {
    app: "hello",
    version: "5c9753e4-c476-4f93-97a0-0ea599184178",
    component: "main",
    node: "a1b2c3d4-0000-4000-8000-000000000001",
    timeMicros: micros("2024-01-03T00:00:00Z"),
    level: "stdout",
    source: "",
    msg: "This was printed",
    attrs: []
  }
}

const matching = (query: string) =>
  Effect.map(
    LogQuery.compile(query),
    (predicate) => Object.keys(entries).filter((name) => predicate(entries[name]!))
  )

const cases: ReadonlyArray<readonly [string, ReadonlyArray<string>]> = [
  ["", ["reverse", "closed", "printed"]],
  [`app == "hello"`, ["reverse", "printed"]],
  [`app != "hello"`, ["closed"]],
  [`app=="todo" && level=="error"`, ["closed"]],
  [`app == "todo" || level == "stdout"`, ["closed", "printed"]],
  [`!(app == "hello")`, ["closed"]],
  [`!(app == "hello" && level == "info") && app == "hello"`, ["printed"]],
  [`version == "5c9753e4"`, ["reverse", "printed"]],
  [`version == "5c9753e4-c476-4f93-97a0-0ea599184178"`, []],
  [`full_version == "5c9753e4-c476-4f93-97a0-0ea599184178"`, ["reverse", "printed"]],
  [`component == "hello.Reverser"`, ["reverse"]],
  [`full_component == "hello/Reverser"`, ["reverse"]],
  [`component == "hello/Reverser"`, []],
  [`node == "ffffffff"`, ["closed"]],
  [`full_node == "a1b2c3d4-0000-4000-8000-000000000001"`, ["reverse", "printed"]],
  [`level < "f"`, ["closed"]],
  [`level <= "info"`, ["reverse", "closed"]],
  [`level > "info"`, ["printed"]],
  [`level >= "info"`, ["reverse", "printed"]],
  [`source.contains("Reverser.ts")`, ["reverse"]],
  [`msg.contains("error")`, ["closed"]],
  [`msg.matches("error: file .* already closed")`, ["closed"]],
  [`msg.matches("^This")`, ["printed"]],
  [`level.matches("warn|error")`, ["closed"]],
  [`attrs["foo"] == "bar"`, ["reverse"]],
  [`attrs["foo"] != "bar"`, ["closed"]],
  [`attrs["n"] > "09"`, ["reverse"]],
  [`attrs["foo"].contains("ba")`, ["reverse", "closed"]],
  [`attrs["foo"].matches("z$")`, ["closed"]],
  [`"foo" in attrs`, ["reverse", "closed"]],
  [`!("foo" in attrs)`, ["printed"]],
  [`!(attrs["foo"] == "bar")`, ["closed", "printed"]],
  [`attrs["missing"] != "x"`, []],
  [`time < timestamp("2024-01-02T15:04:05.123457Z")`, ["reverse"]],
  [`time == timestamp("2024-01-02T15:04:05.123456Z")`, ["reverse"]],
  [`time > timestamp("2024-01-02T15:04:05.123456Z")`, ["closed", "printed"]],
  [`time >= timestamp("2024-01-02T17:00:00+01:00")`, ["closed", "printed"]],
  [`time <= timestamp("2024-01-02T10:59:59-05:00")`, ["reverse"]],
  [`time != timestamp("2024-01-03T00:00:00Z")`, ["reverse", "closed"]]
]

describe("LogQuery.compile", () => {
  for (const [query, expected] of cases) {
    it.effect(`${query === "" ? "(empty)" : query} matches ${expected.join(", ") || "nothing"}`, () =>
      Effect.gen(function*() {
        assert.deepStrictEqual(yield* matching(query), expected)
      }))
  }
})

const bad: ReadonlyArray<readonly [string, number, string]> = [
  [`app == "hello" && mgs.contains("x")`, 19, `unknown field "mgs"`],
  [`app == `, 8, `unexpected token: EOF`],
  [`app == "a" &&& b`, 14, `unexpected character: &`],
  [`(app == "a"`, 12, `expected RPAREN, got EOF`],
  [`"hello" == app`, 1, `the left side of == must be a field or attrs["key"], not "hello"`],
  [`app == version`, 8, `the right side of == must be a constant string, not field version`],
  [`level == 42`, 10, `the right side of == must be a constant string, not 42`],
  [`time > "2024"`, 8, `time must be compared with timestamp("RFC 3339"), not "2024"`],
  [`time > timestamp("yesterday")`, 18, `invalid timestamp "yesterday": expected RFC 3339`],
  [`app.startsWith("h")`, 1, `unsupported method startsWith: use contains or matches`],
  [`msg.matches("(")`, 13, `invalid regular expression`],
  [`msg.contains(app)`, 14, `the argument of contains must be a constant string, not field app`],
  [`app + "x" == "hellox"`, 1, `the left side of == must be a field or attrs["key"], not an expression`],
  [`attrs == "x"`, 1, `attrs must be indexed with a constant string, as in attrs["key"]`],
  [`attrs[app] == "x"`, 7, `an attribute key must be a constant string`],
  [`"k" in app`, 8, `the right side of in must be attrs`],
  [`app`, 1, `expected a condition, such as app == "..."`],
  [`size(app) == 3`, 1, `the left side of == must be a field or attrs["key"], not a call to size`],
  [`attrs.foo == "x"`, 7, `fields have no members; to read an attribute write attrs["key"]`],
  [`app == "hello" &&\n  lvl == "x"`, 3, `unknown field "lvl"`]
]

describe("LogQuery.compile errors", () => {
  for (const [query, column, reason] of bad) {
    it.effect(`${JSON.stringify(query)} fails at column ${column}: ${reason}`, () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(LogQuery.compile(query))
        assert.strictEqual(error._tag, "QueryError")
        assert.strictEqual(error.column, column)
        assert.include(error.message.split("\n")[0], reason)
        const lines = error.message.split("\n")
        assert.strictEqual(lines.length, 3)
        assert.match(lines[0]!, /^invalid query at (line \d+, )?column \d+: /)
        // The caret sits under the offending character of the quoted line.
        assert.strictEqual(lines[2]!.indexOf("^"), lines[1]!.indexOf(query.split("\n")[error.line - 1]!) + column - 1)
      }))
  }

  it.effect("the message quotes the query with a caret under the unknown field", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(LogQuery.compile(`app == "hello" && mgs.contains("x")`))
      assert.strictEqual(
        error.message,
        `invalid query at column 19: unknown field "mgs"; the fields are app, version, full_version, component, full_component, node, full_node, time, level, source, msg, attrs
  app == "hello" && mgs.contains("x")
                    ^`
      )
    }))

  it.effect("a multi-line query names the line and quotes only it", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(LogQuery.compile(`app == "hello" &&\n  lvl == "x"`))
      assert.strictEqual(error.line, 2)
      assert.strictEqual(error.message.split("\n").slice(1).join("\n"), `    lvl == "x"\n    ^`)
      assert.match(error.message, /^invalid query at line 2, column 3: unknown field "lvl"/)
    }))

  it("compileEither reports the same error outside Effect", () => {
    const result = LogQuery.compileEither(`mgs == "x"`)
    assert.isTrue(Either.isLeft(result))
    assert.strictEqual(Either.isLeft(result) && result.left.column, 1)
  })
})

describe("LogQuery.parseTimestamp", () => {
  it("reads RFC 3339 with offsets and up to microsecond fractions", () => {
    assert.strictEqual(LogQuery.parseTimestamp("1970-01-01T00:00:01Z"), 1_000_000)
    assert.strictEqual(LogQuery.parseTimestamp("1970-01-01T00:00:01.000002Z"), 1_000_002)
    assert.strictEqual(LogQuery.parseTimestamp("1970-01-01T01:00:01.5+01:00"), 1_500_000)
    assert.strictEqual(LogQuery.parseTimestamp("1970-01-01t00:00:01.123456789z"), 1_123_456)
    assert.isUndefined(LogQuery.parseTimestamp("1970-01-01 00:00:01Z"))
    assert.isUndefined(LogQuery.parseTimestamp("1970-01-01T00:00:01"))
    assert.isUndefined(LogQuery.parseTimestamp("1970-13-01T00:00:01Z"))
  })
})
