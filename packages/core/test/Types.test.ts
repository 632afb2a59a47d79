/**
 * The types a component's callers and implementers see (checked by `npm run check`, which type-checks the tests):
 * an omitted `error` is `never` and an omitted `success` is `void`, so an undeclared failure does not compile.
 */
import { Component, RemoteCallError, Weaver } from "@effect-weaver/core"
import { describe, expectTypeOf, it } from "@effect/vitest"
import { Effect, Schema, Stream } from "effect"

class Typed extends Component.Tag("types/Typed")<Typed>()({
  noError: Component.method({ payload: Schema.String, success: Schema.Number }),
  noSuccess: Component.method({ payload: Schema.String }),
  withError: Component.method({ payload: Schema.String, error: Schema.String }),
  nothing: Component.method({})
}) {}

type ClientOf = Effect.Effect.Success<typeof Typed>

class Streaming extends Component.Tag("types/Streaming")<Streaming>()({
  noError: Component.method({ payload: Schema.Number, success: Schema.String, stream: true }),
  withError: Component.method({ success: Schema.Number, error: Schema.String, stream: true }),
  notStreaming: Component.method({ success: Schema.Number, stream: false })
}) {}

type StreamingClient = Effect.Effect.Success<typeof Streaming>

describe("component method types", () => {
  it("a method without error fails only with RemoteCallError; without success it succeeds with void", () => {
    expectTypeOf<ReturnType<ClientOf["noError"]>>().toEqualTypeOf<Effect.Effect<number, RemoteCallError>>()
    expectTypeOf<ReturnType<ClientOf["noSuccess"]>>().toEqualTypeOf<Effect.Effect<void, RemoteCallError>>()
    expectTypeOf<ReturnType<ClientOf["withError"]>>().toEqualTypeOf<Effect.Effect<void, string | RemoteCallError>>()
    expectTypeOf<ClientOf["nothing"]>().toEqualTypeOf<() => Effect.Effect<void, RemoteCallError>>()
  })

  it("an implementation may not fail with an error its method does not declare", () => {
    Component.implement(
      Typed,
      // @ts-expect-error: noError declares no error, so a handler that fails with a string does not compile
      Effect.succeed({
        noError: (_: string) => Effect.fail("boom"),
        noSuccess: () => Effect.void,
        withError: (s: string) => Effect.fail(s),
        nothing: () => Effect.void
      })
    )
    // A handler may pass on the RemoteCallError of a call it made.
    Component.implement(
      Typed,
      Effect.succeed({
        noError: (_: string) =>
          Effect.fail(new RemoteCallError({ component: "x/Y", method: "m", reason: "Unreachable", detail: "" })),
        noSuccess: () => Effect.void,
        withError: (s: string) => Effect.fail(s),
        nothing: () => Effect.void
      })
    )
  })

  it("a streaming method's client returns a Stream of its elements; without error it fails only with RemoteCallError", () => {
    expectTypeOf<StreamingClient["noError"]>().toEqualTypeOf<
      (payload: number) => Stream.Stream<string, RemoteCallError>
    >()
    expectTypeOf<StreamingClient["withError"]>().toEqualTypeOf<
      () => Stream.Stream<number, string | RemoteCallError>
    >()
    expectTypeOf<StreamingClient["notStreaming"]>().toEqualTypeOf<() => Effect.Effect<number, RemoteCallError>>()
    expectTypeOf(Streaming.methods.noError.stream).toEqualTypeOf<true>()
    expectTypeOf(Typed.methods.noError.stream).toEqualTypeOf<false>()
  })

  it("a streaming handler returns a Stream of its elements and declared errors only", () => {
    Component.implement(
      Streaming,
      Effect.succeed({
        noError: (n: number) => Stream.make(String(n)),
        withError: () => Stream.fail("typed"),
        notStreaming: () => Effect.succeed(1)
      })
    )
    Component.implement(
      Streaming,
      // @ts-expect-error: noError declares no error, so a stream that fails with a string does not compile
      Effect.succeed({
        noError: (_: number) => Stream.fail("boom"),
        withError: () => Stream.make(1),
        notStreaming: () => Effect.succeed(1)
      })
    )
    Component.implement(
      Streaming,
      // @ts-expect-error: a streaming method's handler must return a Stream of its element type
      Effect.succeed({
        noError: (n: number) => Stream.make(n),
        withError: () => Stream.make(1),
        notStreaming: () => Effect.succeed(1)
      })
    )
  })

  it("an app that calls a component nobody implements cannot be run or embedded", () => {
    class Missing extends Component.Tag("types/Missing")<Missing>()({ ping: Component.method({}) }) {}
    const CallerImpl = Component.implement(
      Typed,
      Effect.map(Missing, (missing) => ({
        noError: (_: string) => Effect.as(missing.ping(), 1),
        noSuccess: () => Effect.void,
        withError: () => Effect.void,
        nothing: () => Effect.void
      }))
    )
    const incomplete = Weaver.app({ components: [CallerImpl] })
    expectTypeOf(incomplete).toEqualTypeOf<Weaver.App<Missing, never>>()
    // Both are compile errors: Missing is required and no implementation provides it. (Not called: types only.)
    const check = () => {
      // @ts-expect-error: Weaver.run needs every component the app calls implemented
      Weaver.run(incomplete)
      // @ts-expect-error: so does Weaver.embed
      void Weaver.embed(incomplete)
    }
    void check
  })
})
