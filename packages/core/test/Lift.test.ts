/**
 * Component.lift: an existing service (its Tag and Layer) becomes a component. Behaviour under the local transport
 * here (every runner in examples/shop); the types a user sees are checked by `npm run check`.
 */
import { Component, Weaver, WeaverConfig } from "@effect-weaver/core"
import { App } from "@effect-weaver/runtime"
import * as TransportLocal from "@effect-weaver/transport-local"
import { assert, describe, expectTypeOf, it } from "@effect/vitest"
import { Cause, Config, Context, Effect, Exit, Layer, Option, Schema, Stream } from "effect"

class Unknown extends Schema.TaggedError<Unknown>()("Unknown", { key: Schema.String }) {}

class Store extends Context.Tag("lift/Store")<Store, {
  readonly get: (key: string) => Effect.Effect<string, Unknown>
  readonly put: (key: string, value: string) => Effect.Effect<void>
  readonly size: () => Effect.Effect<number>
  readonly slow: () => Effect.Effect<void>
}>() {}

/** A plain service the Store's Layer needs, provided once with Layer.provide. */
class Prefix extends Context.Tag("lift/Prefix")<Prefix, string>() {}

let built = 0
const StoreLive = Layer.effect(
  Store,
  Effect.gen(function*() {
    built++
    const prefix = yield* Prefix
    const initial = yield* Config.string("initial").pipe(Config.withDefault("none"))
    const map = new Map<string, string>([["initial", initial]])
    return {
      get: (key) => {
        const value = map.get(key)
        return value === undefined ? Effect.fail(new Unknown({ key })) : Effect.succeed(`${prefix}${value}`)
      },
      put: (key, value) => Effect.sync(() => void map.set(key, value)),
      size: () => Effect.sync(() => map.size),
      slow: () => Effect.sleep("1 second")
    }
  })
).pipe(Layer.provide(Layer.succeed(Prefix, "> ")))

const StoreComponent = Component.lift(Store, StoreLive, {
  get: { args: [Schema.String], success: Schema.String, error: Unknown },
  put: { args: [Schema.String, Schema.String] },
  size: { success: Schema.Number },
  slow: { timeout: "20 millis" }
})

/** A lifted service whose Layer needs another lifted one. */
class Cache extends Context.Tag("lift/Cache")<Cache, { readonly read: (key: string) => Effect.Effect<string> }>() {}
const CacheLive = Layer.effect(
  Cache,
  Effect.map(Store, (store) => ({ read: (key: string) => Effect.orElseSucceed(store.get(key), () => "miss") }))
)
const CacheComponent = Component.lift(Cache, CacheLive, { read: { args: [Schema.String], success: Schema.String } })

const app = Weaver.app({ components: [StoreComponent, CacheComponent] })

/** Runs `body` as main would, with the application's clients in context. */
const run = <A, E>(body: Effect.Effect<A, E, Store | Cache>, toml = "") =>
  Effect.gen(function*() {
    const config = yield* WeaverConfig.parse(toml, "weaver.toml")
    const weavelet = yield* App.makeWeavelet(app, { config })
    return yield* Effect.provide(body, weavelet.clients(Weaver.mainName) as Context.Context<Store | Cache>)
  }).pipe(Effect.provide(TransportLocal.layer), Effect.scoped)

describe("Component.lift", () => {
  it.live("the original Tag reaches the component; several arguments, errors and other lifted services work", () =>
    run(Effect.gen(function*() {
      const store = yield* Store
      yield* store.put("a", "1")
      assert.strictEqual(yield* store.get("a"), "> 1")
      assert.strictEqual(yield* store.size(), 2)
      const error = yield* Effect.flip(store.get("b"))
      assert.instanceOf(error, Unknown)
      assert.strictEqual(yield* (yield* Cache).read("a"), "> 1")
      assert.strictEqual(yield* (yield* Cache).read("b"), "miss")
    })))

  it.live("the Layer is built once per process, when the component is first needed", () =>
    Effect.gen(function*() {
      const before = built
      yield* run(Effect.gen(function*() {
        yield* (yield* Cache).read("a")
        yield* (yield* Store).size()
      }))
      assert.strictEqual(built - before, 1)
    }))

  it.live("Config in the Layer reads the component's section of weaver.toml", () =>
    run(
      Effect.flatMap(Store, (store) => store.get("initial")),
      `["lift/Store"]\ninitial = "from toml"\n`
    ).pipe(Effect.map((value) => assert.strictEqual(value, "> from toml"))))

  it.live("a call the transport could not complete is a defect for the Tag's caller (its type has no room for it)", () =>
    run(Effect.exit(Effect.flatMap(Store, (store) => store.slow()))).pipe(
      Effect.map((exit) => {
        assert.isTrue(Exit.isFailure(exit))
        const defect = Exit.isFailure(exit) ? Cause.dieOption(exit.cause) : Option.none()
        assert.isTrue(Option.isSome(defect))
        assert.strictEqual((defect as Option.Some<any>).value._tag, "RemoteCallError")
        assert.strictEqual((defect as Option.Some<any>).value.reason, "Timeout")
      })
    ))

  it("Weaver.embed gives a Promise client of the original Tag", async () => {
    const weaver = await Weaver.embed(app)
    const store = weaver.client(Store)
    expectTypeOf(store.put).toEqualTypeOf<(key: string, value: string) => Promise<void>>()
    await store.put("k", "v")
    assert.strictEqual(await store.get("k"), "> v")
    assert.strictEqual(await weaver.client(Cache).read("nope"), "miss")
    await weaver.close()
  })

  it("a Tag whose key is not a component name needs a name", () => {
    class Odd extends Context.Tag("@odd/Service")<Odd, { readonly ping: () => Effect.Effect<void> }>() {}
    const layer = Layer.succeed(Odd, { ping: () => Effect.void })
    assert.throws(
      () => Component.lift(Odd, layer, { ping: {} }),
      /give one: Component.lift\(Tag, layer, methods, \{ name/
    )
    assert.strictEqual(
      Component.lift(Odd, layer, { ping: {} }, { name: "odd/Service" }).component.componentName,
      "odd/Service"
    )
  })

  it("types: schemas must match the service; an app missing a lifted service its Layers need does not run", () => {
    const typeChecks = () => {
      Component.lift(Store, StoreLive, {
        // @ts-expect-error: get takes a string, not a number
        get: { args: [Schema.Number], success: Schema.String, error: Unknown },
        put: { args: [Schema.String, Schema.String] },
        size: { success: Schema.Number },
        slow: {}
      })
      Component.lift(Store, StoreLive, {
        get: { args: [Schema.String], success: Schema.String, error: Unknown },
        put: { args: [Schema.String, Schema.String] },
        // @ts-expect-error: size succeeds with a number, so its success schema is required
        size: {},
        slow: {}
      })
      Component.lift(Store, StoreLive, {
        // @ts-expect-error: get may fail with Unknown, so its error schema is required
        get: { args: [Schema.String], success: Schema.String },
        put: { args: [Schema.String, Schema.String] },
        size: { success: Schema.Number },
        slow: {}
      })
      // @ts-expect-error: every method must be given (slow is missing)
      Component.lift(Store, StoreLive, {
        get: { args: [Schema.String], success: Schema.String, error: Unknown },
        put: { args: [Schema.String, Schema.String] },
        size: { success: Schema.Number }
      })
      class Mixed extends Context.Tag("lift/Mixed")<Mixed, {
        readonly ping: () => Effect.Effect<void>
        readonly version: string
      }>() {}
      // @ts-expect-error: version is not a method returning an Effect: it could not be read in another process
      Component.lift(Mixed, Layer.succeed(Mixed, { ping: () => Effect.void, version: "1" }), { ping: {} })
      class Feed extends Context.Tag("lift/Feed")<Feed, {
        readonly watch: (from: number) => Stream.Stream<string>
      }>() {}
      const FeedLive = Layer.succeed(Feed, { watch: (from: number) => Stream.make(`${from}`) })
      Component.lift(Feed, FeedLive, { watch: { args: [Schema.Number], success: Schema.String, stream: true } })
      // @ts-expect-error: a method returning a Stream is declared with stream: true
      Component.lift(Feed, FeedLive, { watch: { args: [Schema.Number], success: Schema.String } })
      // Cache's Layer needs Store: without StoreComponent the app cannot run.
      const partial = Weaver.app({ components: [CacheComponent] })
      expectTypeOf(partial).toEqualTypeOf<Weaver.App<Store, never>>()
      // @ts-expect-error: Store is used but not implemented
      Weaver.run(partial)
    }
    expectTypeOf(typeChecks).toBeFunction()
    expectTypeOf(app).toEqualTypeOf<Weaver.App<never, never>>()
  })
})
