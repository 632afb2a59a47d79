import { weavertest } from "@effect-weaver/weavertest"
import { assert } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import { app } from "../src/app.js"
import { Clock } from "../src/Clock.js"
import { Greeter } from "../src/Greeter.js"

// The clock always says noon, so greetings can be compared exactly.
const noon = weavertest.fake(Clock, { now: () => Effect.succeed("12:00") })

// The app's own weaver.toml: its ["greeter/Greeter"] section sets the greeting.
const config = Fs.readFileSync(new URL("../weaver.toml", import.meta.url), "utf8")

for (const runner of weavertest.allRunners({ fakes: [noon] })) {
  runner.with({ config }).test(
    "greets with the greeting from weaver.toml",
    app,
    Effect.gen(function*() {
      const greeter = yield* Greeter
      assert.strictEqual(yield* greeter.greet("Ada"), "Bonjour, Ada! It is 12:00.")
    })
  )

  runner.test(
    "greets with Hello when no greeting is configured",
    app,
    Effect.gen(function*() {
      const greeter = yield* Greeter
      assert.strictEqual(yield* greeter.greet("Grace"), "Hello, Grace! It is 12:00.")
    })
  )

  runner.test(
    "an empty name fails with EmptyName",
    app,
    Effect.gen(function*() {
      const greeter = yield* Greeter
      const reply = yield* greeter.greet("").pipe(
        Effect.catchTag("EmptyName", (e) => Effect.succeed(`caught: ${e.message}`))
      )
      assert.strictEqual(reply, "caught: name must not be empty")
    })
  )

  runner.with({ fakes: [weavertest.fake(Clock, { now: () => Effect.succeed("23:59") })] }).test(
    "uses the fake clock it is given",
    app,
    Effect.gen(function*() {
      const greeter = yield* Greeter
      const clock = yield* Clock
      assert.strictEqual(yield* clock.now(), "23:59")
      assert.strictEqual(yield* greeter.greet("Linus"), "Hello, Linus! It is 23:59.")
    })
  )
}
