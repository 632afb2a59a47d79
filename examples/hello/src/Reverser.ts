import { Component } from "@effect-weaver/core"
import { Effect, Schema } from "effect"

/**
 * Reverses strings.
 */
export class Reverser extends Component.Tag("hello/Reverser")<Reverser>()({
  reverse: Component.method({ payload: Schema.String, success: Schema.String })
}) {}

export const ReverserImpl = Component.implement(
  Reverser,
  Effect.gen(function*() {
    yield* Effect.logInfo("reverser ready")
    return {
      reverse: (s) => Effect.succeed([...s].reverse().join(""))
    }
  })
)
