import { Weaver } from "@effect-weaver/core"
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect, Schema } from "effect"
import { Reverser, ReverserImpl } from "./Reverser.js"

const HelloParams = Schema.Struct({ name: Schema.optionalWith(Schema.String, { default: () => "World" }) })

/**
 * Serves `GET /hello?name=Weaver` → `Hello, revaeW!` on the `hello` listener.
 */
export const Main = Weaver.main(
  Effect.gen(function*() {
    const reverser = yield* Reverser
    const router = HttpRouter.empty.pipe(
      HttpRouter.get(
        "/hello",
        Effect.gen(function*() {
          const { name } = yield* HttpServerRequest.schemaSearchParams(HelloParams)
          const reversed = yield* reverser.reverse(name)
          return HttpServerResponse.text(`Hello, ${reversed}!\n`)
        }).pipe(
          Effect.catchTag("ParseError", (e) => HttpServerResponse.text(`bad request: ${e.message}\n`, { status: 400 })),
          Effect.catchTag("RemoteCallError", (e) => HttpServerResponse.text(`${e.message}\n`, { status: 503 }))
        )
      )
    )
    yield* Weaver.serve("hello", router)
  }),
  { listeners: ["hello"] }
)

export const app = Weaver.app({ main: Main, components: [ReverserImpl] })
