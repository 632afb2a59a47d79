import { weavertest } from "@effect-weaver/weavertest"
import { assert } from "@effect/vitest"
import { Effect, FastCheck } from "effect"
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

  runner.prop(
    "reverse twice is identity, for any string",
    app,
    // The payload schema's own arbitrary, and any UTF-16 string (lone surrogates included).
    [weavertest.payloadOf(Reverser, "reverse"), FastCheck.string({ unit: "binary" })],
    ([schemaString, anyString]) =>
      Effect.gen(function*() {
        const reverser = yield* Reverser
        for (const s of [schemaString, anyString]) {
          assert.strictEqual(yield* reverser.reverse(yield* reverser.reverse(s)), s)
        }
      })
  )
}
