/**
 * hello, plus `GET /who`: which version and pod of main answered, and which of Reverser it called. The end-to-end
 * suite deploys it to see calls spread over replicas and stay within a version.
 */
import { Component, Weaver } from "@effect-weaver/core"
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect, Schema } from "effect"

const identity = () => `${process.env.WHO_VARIANT ?? "?"}/${process.env.POD_NAME ?? "?"}`

export class Reverser extends Component.Tag("who/Reverser")<Reverser>()({
  reverse: Component.method({ payload: Schema.String, success: Schema.String }),
  whoami: Component.method({ success: Schema.String })
}) {}

const ReverserImpl = Component.implement(
  Reverser,
  Effect.succeed({
    reverse: (s: string) => Effect.succeed([...s].reverse().join("")),
    whoami: () => Effect.sync(identity)
  })
)

const Params = Schema.Struct({ name: Schema.optionalWith(Schema.String, { default: () => "World" }) })

const Main = Weaver.main(
  Effect.gen(function*() {
    const reverser = yield* Reverser
    const router = HttpRouter.empty.pipe(
      HttpRouter.get(
        "/hello",
        Effect.gen(function*() {
          const { name } = yield* HttpServerRequest.schemaSearchParams(Params)
          return HttpServerResponse.text(`Hello, ${yield* reverser.reverse(name)}!\n`)
        }).pipe(Effect.orDie)
      ),
      HttpRouter.get(
        "/who",
        Effect.map(reverser.whoami(), (callee) => HttpServerResponse.text(`${identity()} -> ${callee}\n`)).pipe(
          Effect.orDie
        )
      )
    )
    yield* Weaver.serve("hello", router)
  }),
  { listeners: ["hello"] }
)

export const app = Weaver.app({ main: Main, components: [ReverserImpl] })
