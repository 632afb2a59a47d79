import { Component } from "@effect-weaver/core"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"

describe("Component", () => {
  it("Tag keeps the name and methods", () => {
    const ping = Component.method({})
    class Pinger extends Component.Tag("app/sub/Pinger")<Pinger>()({ ping }) {}
    assert.strictEqual(Pinger.componentName, "app/sub/Pinger")
    assert.strictEqual(Pinger.key, "app/sub/Pinger")
    assert.strictEqual(Pinger.methods.ping, ping)
    assert.isTrue(Component.isComponent(Pinger))
    assert.isFalse(Component.isComponent({ componentName: "x" }))
  })

  it("Tag rejects an invalid name", () => {
    for (const name of ["", "has space/X", "app//X", "/app/X", "app/X/", "1app/X", "main"]) {
      assert.throws(
        () => Component.Tag(name)<unknown>()({}),
        `invalid component name ${JSON.stringify(name)}`
      )
    }
  })

  it("Tag rejects an invalid method name", () => {
    assert.throws(
      () => Component.Tag("app/X")<unknown>()({ "not-a-name": Component.method({}) }),
      `component app/X: invalid method name "not-a-name"`
    )
  })

  it("method has Service Weaver's defaults", () => {
    const m = Component.method({ payload: Schema.String })
    assert.strictEqual(m.payload, Schema.String)
    assert.strictEqual(m.success, Schema.Void)
    assert.strictEqual(m.error, Schema.Never)
    assert.isTrue(m.retry)
    assert.isUndefined(m.routeBy)
    const n = Component.method({ payload: Schema.String, retry: false, routeBy: (s) => s.length })
    assert.isFalse(n.retry)
    assert.strictEqual(n.routeBy?.("abc"), 3)
  })

  it("implement records where it was written", () => {
    class Echo extends Component.Tag("app/Echo")<Echo>()({ ping: Component.method({}) }) {}
    const impl = Component.implement(Echo, Effect.succeed({ ping: () => Effect.void }))
    assert.match(impl.source, /^Component\.test\.ts:\d+$/)
    assert.deepStrictEqual(impl.listeners, [])
    assert.isUndefined(impl.config)
  })

  it("implement takes singleton: true with or without a config schema, and refuses an Effect where config needs a function", () => {
    class Leader extends Component.Tag("app/Leader")<Leader>()({ lead: Component.method({}) }) {}
    const handlers = { lead: () => Effect.void }
    const plain = Component.implement(Leader, Effect.succeed(handlers))
    assert.isFalse(plain.singleton)
    const bare = Component.implement(Leader, { singleton: true }, Effect.succeed(handlers))
    assert.isTrue(bare.singleton)
    assert.isUndefined(bare.config)
    assert.strictEqual(Effect.runSync(bare.make(undefined) as Effect.Effect<unknown>), handlers)
    assert.match(bare.source, /^Component\.test\.ts:\d+$/)
    const Config = Schema.Struct({ term: Schema.Number })
    const configured = Component.implement(
      Leader,
      { config: Config, singleton: true },
      (config) => Effect.succeed({ lead: () => Effect.asVoid(Effect.succeed(config.term)) })
    )
    assert.isTrue(configured.singleton)
    assert.strictEqual(configured.config, Config)
    assert.throws(
      // @ts-expect-error: with a config schema, make must be a function of the config
      () => Component.implement(Leader, { config: Config }, Effect.succeed(handlers)),
      "Component.implement(app/Leader): with a config schema, make is a function of the config: (config) => Effect"
    )
  })
})
