import { Weaver } from "@effect-weaver/core"
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect, Schema } from "effect"
import { ClockImpl } from "./Clock.js"
import { Greeter, GreeterImpl } from "./Greeter.js"

const GreetParams = Schema.Struct({ name: Schema.optionalWith(Schema.String, { default: () => "" }) })

/**
 * Serves `GET /greet?name=Ada` → `Hello, Ada! It is 09:30.` on the `greeter` listener.
 */
export const Main = Weaver.main(
  Effect.gen(function*() {
    const greeter = yield* Greeter
    const router = HttpRouter.empty.pipe(
      HttpRouter.get(
        "/greet",
        Effect.gen(function*() {
          const { name } = yield* HttpServerRequest.schemaSearchParams(GreetParams)
          return HttpServerResponse.text(`${yield* greeter.greet(name)}\n`)
        }).pipe(
          Effect.catchTags({
            EmptyName: (e) => HttpServerResponse.text(`${e.message}\n`, { status: 400 }),
            ParseError: (e) => HttpServerResponse.text(`bad request: ${e.message}\n`, { status: 400 }),
            RemoteCallError: (e) => HttpServerResponse.text(`${e.message}\n`, { status: 503 })
          })
        )
      )
    )
    yield* Weaver.serve("greeter", router)
  }),
  { listeners: ["greeter"] }
)

export const app = Weaver.app({ main: Main, components: [GreeterImpl, ClockImpl] })
