import { Component } from "@effect-weaver/core"
import { Effect, Schema } from "effect"
import { Clock } from "./Clock.js"

/**
 * `greet("")`: there is nobody to greet. Declared in the method's `error`
 * schema, so callers catch it with `Effect.catchTag("EmptyName", …)` whether
 * the Greeter runs in their process or another.
 */
export class EmptyName extends Schema.TaggedError<EmptyName>()("EmptyName", {}) {
  override get message() {
    return "name must not be empty"
  }
}

/**
 * Greets people, with the greeting from its section of weaver.toml.
 */
export class Greeter extends Component.Tag("greeter/Greeter")<Greeter>()({
  greet: Component.method({ payload: Schema.String, success: Schema.String, error: EmptyName })
}) {}

/**
 * The `["greeter/Greeter"]` section of weaver.toml.
 */
export const GreeterConfig = Schema.Struct({
  Greeting: Schema.optionalWith(Schema.String, { default: () => "Hello" })
})

export const GreeterImpl = Component.implement(
  Greeter,
  { config: GreeterConfig },
  (config) =>
    Effect.gen(function*() {
      const clock = yield* Clock
      yield* Effect.logInfo(`greeter ready, greeting with "${config.Greeting}"`)
      return {
        greet: (name) =>
          name === ""
            ? Effect.fail(new EmptyName())
            : clock.now().pipe(
              Effect.map((time) => `${config.Greeting}, ${name}! It is ${time}.`),
              Effect.orDie
            )
      }
    })
)
