import { Logging } from "@effect-weaver/runtime"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"

// 3 November, 08:55:15.650149 local time: pretty prints local time, so build the instant from local fields.
const timeMicros = new Date(2025, 10, 3, 8, 55, 15, 650).getTime() * 1000 + 149

const entry: Logging.Entry = {
  app: "hello",
  version: "dep",
  component: "hello/Reverser",
  node: "73ddcd04-0e1d-4d3c-9f55-0123456789ab",
  timeMicros,
  level: "info",
  source: "Reverser.ts:12",
  msg: "msg",
  attrs: [["key", "v"]]
}

describe("Logging", () => {
  it("pretty prints Service Weaver's line shape", () => {
    assert.strictEqual(
      Logging.pretty(entry),
      `I1103 08:55:15.650149 hello.Reverser 73ddcd04 Reverser.ts:12 │ msg key="v"`
    )
  })

  it("pretty: levels, main, no source, several attributes", () => {
    const line = Logging.pretty({
      ...entry,
      component: "main",
      level: "error",
      source: "",
      msg: "failed",
      attrs: [["a", "1"], ["b", `say "hi"`]]
    })
    assert.strictEqual(line, `E1103 08:55:15.650149 main 73ddcd04 │ failed a="1" b="say \\"hi\\""`)
    assert.strictEqual(Logging.pretty({ ...entry, level: "warn", attrs: [] }).slice(0, 1), "W")
    assert.strictEqual(Logging.pretty({ ...entry, level: "debug", attrs: [] }).slice(0, 1), "D")
    assert.strictEqual(Logging.pretty({ ...entry, level: "stdout", attrs: [] }).slice(0, 1), "S")
  })

  it("pretty pads microseconds and dates", () => {
    const early = new Date(2025, 0, 2, 3, 4, 5, 6).getTime() * 1000 + 7
    assert.strictEqual(
      Logging.pretty({ ...entry, timeMicros: early, attrs: [] }),
      `I0102 03:04:05.006007 hello.Reverser 73ddcd04 Reverser.ts:12 │ msg`
    )
  })

  it("pretty with color wraps fields in ANSI codes but keeps the text", () => {
    const line = Logging.pretty(entry, { color: true })
    assert.include(line, "\x1b[")

    assert.strictEqual(line.replace(/\x1b\[\d+m/g, ""), Logging.pretty(entry))
  })

  it("shortComponent keeps the last two segments", () => {
    assert.strictEqual(Logging.shortComponent("github.com/acme/app/Cart"), "app.Cart")
    assert.strictEqual(Logging.shortComponent("hello/Reverser"), "hello.Reverser")
    assert.strictEqual(Logging.shortComponent("main"), "main")
  })

  it.live("a rate limiter writes at most its lines per interval and counts the rest when the interval ends", () =>
    Effect.gen(function*() {
      const written: Array<readonly [string, string | undefined]> = []
      const limiter = Logging.makeRateLimiter({
        lines: 3,
        interval: "100 millis",
        about: "bad things",
        write: (message, peer) => written.push([message, peer])
      })
      for (let i = 0; i < 25; i++) limiter.log(`bad ${i}`, `peer ${i}`)
      assert.deepStrictEqual(written, [["bad 0", "peer 0"], ["bad 1", "peer 1"], ["bad 2", "peer 2"]])
      // Nothing else is logged: the count still comes, when the interval ends.
      yield* Effect.sleep("200 millis")
      assert.deepStrictEqual(written[3], [
        "suppressed 22 more warnings about bad things (at most 3 per 100ms are written)",
        undefined
      ])
      limiter.log("bad again")
      assert.strictEqual(written[4]![0], "bad again", "a new interval writes again")
      limiter.flush()
      assert.strictEqual(written.length, 5, "nothing to count")
    }))

  it.effect("withComponent attributes log entries to a component", () =>
    Effect.gen(function*() {
      const entries: Array<Logging.Entry> = []
      const origin = { app: "a", deploymentId: "d", replicaId: "r" }
      yield* Effect.logWarning("about a connection").pipe(
        Logging.withComponent("hello/Reverser"),
        Effect.provide(
          Logger.replace(Logger.defaultLogger, Logger.make((o) => entries.push(Logging.toEntry(origin, o))))
        )
      )
      yield* Effect.logWarning("and as main").pipe(
        Effect.provide(
          Logger.replace(Logger.defaultLogger, Logger.make((o) => entries.push(Logging.toEntry(origin, o))))
        )
      )
      assert.deepStrictEqual(entries.map((e) => e.component), ["hello/Reverser", "main"])
    }))
})
