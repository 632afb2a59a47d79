import { weavertest } from "@effect-weaver/weavertest"
import { assert } from "@effect/vitest"
import { Effect } from "effect"
import { app } from "../src/app.js"
import { Reverser } from "../src/Reverser.js"

for (const runner of weavertest.allRunners()) {
  runner.test(
    "reverses",
    app,
    Effect.gen(function*() {
      const reverser = yield* Reverser
      assert.strictEqual(yield* reverser.reverse("abc"), "cba")
      assert.strictEqual(yield* reverser.reverse(""), "")
    })
  )

  runner.test(
    "reverses by code point, keeping accents and emoji whole",
    app,
    Effect.gen(function*() {
      const reverser = yield* Reverser
      assert.strictEqual(yield* reverser.reverse("héllo🙂"), "🙂olléh")
      assert.strictEqual(yield* reverser.reverse(yield* reverser.reverse("héllo🙂")), "héllo🙂")
    })
  )
}
