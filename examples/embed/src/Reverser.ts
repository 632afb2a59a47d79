import { Component, Weaver } from "@effect-weaver/core"
import { Effect, Schema } from "effect"

/**
 * Reverses strings, by code point.
 */
export class Reverser extends Component.Tag("embed/Reverser")<Reverser>()({
  reverse: Component.method({ payload: Schema.String, success: Schema.String })
}) {}

export const ReverserImpl = Component.implement(
  Reverser,
  Effect.succeed({
    reverse: (s) => Effect.succeed([...s].reverse().join(""))
  })
)

/**
 * No main component: the application is embedded in a server that already exists.
 */
export const app = Weaver.app({ components: [ReverserImpl] })
