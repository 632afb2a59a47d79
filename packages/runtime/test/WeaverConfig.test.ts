import { Component, Weaver, WeaverConfig } from "@effect-weaver/core"
import { App } from "@effect-weaver/runtime"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Schema } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"

class Greeter extends Component.Tag("cfg/Greeter")<Greeter>()({
  greet: Component.method({ payload: Schema.String, success: Schema.String })
}) {}
class Cache extends Component.Tag("cfg/Cache")<Cache>()({
  get: Component.method({ payload: Schema.String, success: Schema.String })
}) {}
class Plain extends Component.Tag("cfg/Plain")<Plain>()({
  ping: Component.method({})
}) {}

const GreeterImpl = Component.implement(
  Greeter,
  { config: Schema.Struct({ Greeting: Schema.String, Times: Schema.optional(Schema.Int) }), listeners: ["web"] },
  (config) => Effect.succeed({ greet: (name: string) => Effect.succeed(`${config.Greeting}, ${name}`) })
)
const CacheImpl = Component.implement(Cache, Effect.succeed({ get: (key: string) => Effect.succeed(key) }))
const PlainImpl = Component.implement(Plain, Effect.succeed({ ping: () => Effect.void }))

const app = Weaver.app({ components: [GreeterImpl, CacheImpl, PlainImpl] })
const shape = App.shape(app)

const FILE = "weaver.toml"
const parse = (toml: string) => WeaverConfig.parse(toml, FILE)

/** The message of the error that parsing and validating `toml` against the app gives. */
const errorOf = (toml: string): string => {
  const result = Either.flatMap(parse(toml), (config) => WeaverConfig.validate(config, shape))
  if (Either.isRight(result)) assert.fail(`expected an error for:\n${toml}`)
  assert.strictEqual(result.left._tag, "WeaverConfigError")
  return result.left.message
}

const validGreeter = `\n["cfg/Greeter"]\nGreeting = "Hi"\n`

describe("WeaverConfig", () => {
  describe("unknown keys", () => {
    it("in [serviceweaver]", () => {
      assert.strictEqual(
        errorOf(`[serviceweaver]\nname = "x"\nbinnary = "a.js"\n`),
        `weaver.toml: [serviceweaver] key "binnary": unknown key`
      )
    })
    it("in [single]", () => {
      assert.strictEqual(errorOf(`[single]\nreplicas = 2\n`), `weaver.toml: [single] key "replicas": unknown key`)
    })
    it("in [multi]", () => {
      assert.strictEqual(errorOf(`[multi]\nreplica = 2\n`), `weaver.toml: [multi] key "replica": unknown key`)
    })
    it("in a listener of [multi]", () => {
      assert.strictEqual(
        errorOf(`[multi]\nlisteners.web = { address = "localhost:1", port = 2 }\n`),
        `weaver.toml: [multi] key "listeners.web.port": unknown key`
      )
    })
    it("in a component section", () => {
      assert.strictEqual(
        errorOf(`["cfg/Greeter"]\nGreeting = "Hi"\nGreting = "typo"\n`),
        `weaver.toml: ["cfg/Greeter"] key "Greting": unknown key`
      )
    })
  })

  describe("wrong types", () => {
    it("name = 3", () => {
      assert.strictEqual(
        errorOf(`[serviceweaver]\nname = 3\n`),
        `weaver.toml: [serviceweaver] key "name": Expected string, actual 3`
      )
    })
    it(`replicas = "two"`, () => {
      assert.strictEqual(
        errorOf(`[multi]\nreplicas = "two"\n`),
        `weaver.toml: [multi] key "replicas": Expected number, actual "two"`
      )
    })
    it("replicas out of range", () => {
      assert.match(errorOf(`[multi]\nreplicas = 0\n`), /^weaver\.toml: \[multi\] key "replicas": .*between 1 and 64/)
    })
    it(`args = "x"`, () => {
      assert.strictEqual(
        errorOf(`[serviceweaver]\nargs = "x"\n`),
        `weaver.toml: [serviceweaver] key "args": Expected ReadonlyArray<string>, actual "x"`
      )
    })
    it("a section that is not a table", () => {
      assert.strictEqual(errorOf(`single = 3\n`), `weaver.toml: [single]: expected a table`)
    })
    it("a component section value of the wrong type", () => {
      assert.strictEqual(
        errorOf(`["cfg/Greeter"]\nGreeting = "Hi"\nTimes = 1.5\n`),
        `weaver.toml: ["cfg/Greeter"] key "Times": Expected an integer, actual 1.5`
      )
    })
    it("a component section missing a required key", () => {
      assert.strictEqual(
        errorOf(`["cfg/Greeter"]\nTimes = 1\n`),
        `weaver.toml: ["cfg/Greeter"] key "Greeting": missing required key`
      )
    })
    it("a bad rollout duration", () => {
      assert.strictEqual(
        errorOf(`[serviceweaver]\nrollout = "soon"\n`),
        `weaver.toml: [serviceweaver] key "rollout": expected a duration such as "1h" or "30m", got "soon"`
      )
    })
  })

  describe("listeners", () => {
    it("bad address", () => {
      assert.strictEqual(
        errorOf(`[single]\nlisteners.web = { address = "localhost" }\n`),
        `weaver.toml: [single] key "listeners.web.address": expected "host:port", got "localhost"`
      )
    })
    it("port out of range", () => {
      assert.strictEqual(
        errorOf(`[multi]\nlisteners.web = { address = ":70000" }\n`),
        `weaver.toml: [multi] key "listeners.web.address": expected "host:port", got ":70000"`
      )
    })
    it("unknown listener", () => {
      assert.strictEqual(
        errorOf(`[single]\nlisteners.api = { address = "localhost:0" }\n${validGreeter}`),
        `weaver.toml: [single] key "listeners.api": unknown listener "api" (the application declares: web)`
      )
    })
  })

  describe("colocate", () => {
    it("a component in two groups", () => {
      assert.strictEqual(
        errorOf(`[serviceweaver]\ncolocate = [["cfg/Greeter", "cfg/Cache"], ["cfg/Plain", "cfg/Cache"]]\n`),
        `weaver.toml: [serviceweaver] key "colocate": component cfg/Cache is in two colocation groups (groups 1 and 2)`
      )
    })
    it("an unknown component", () => {
      assert.strictEqual(
        errorOf(`[serviceweaver]\ncolocate = [["cfg/Greeter", "cfg/Nope"]]\n${validGreeter}`),
        `weaver.toml: [serviceweaver] key "colocate": unknown component cfg/Nope ` +
          `(the application's components: cfg/Cache, cfg/Greeter, cfg/Plain)`
      )
    })
    it("main may be colocated, as in Service Weaver", () => {
      const config = Either.getOrThrow(parse(`[serviceweaver]\ncolocate = [["main", "cfg/Greeter"]]\n${validGreeter}`))
      assert.isTrue(Either.isRight(WeaverConfig.validate(config, shape)))
    })
  })

  describe("sections", () => {
    it("unknown top-level section", () => {
      assert.strictEqual(
        errorOf(`[singel]\nlisteners.web = { address = "localhost:1" }\n`),
        `weaver.toml: [singel]: unknown section (expected [serviceweaver], [single], [multi] or a component section such as ["app/Component"])`
      )
    })
    it("a section for a component without a config schema", () => {
      assert.strictEqual(
        errorOf(`["cfg/Plain"]\nx = 1\n${validGreeter}`),
        `weaver.toml: ["cfg/Plain"]: component cfg/Plain takes no config (give its implementation a config schema)`
      )
    })
    it("a section for a component not in the app", () => {
      assert.strictEqual(
        errorOf(`["cfg/Nope"]\nx = 1\n${validGreeter}`),
        `weaver.toml: ["cfg/Nope"]: no component named cfg/Nope in the application ` +
          `(its components: cfg/Cache, cfg/Greeter, cfg/Plain)`
      )
    })
    it("a component's missing section when its schema requires keys", () => {
      assert.strictEqual(errorOf(``), `weaver.toml: ["cfg/Greeter"] key "Greeting": missing required key`)
    })
  })

  it("a bad call_timeout names the key; a good one is read in milliseconds", () => {
    assert.strictEqual(
      errorOf(`[serviceweaver]\ncall_timeout = 5\n`).split("\n")[0],
      `weaver.toml: [serviceweaver] key "call_timeout": Expected string, actual 5`
    )
    assert.strictEqual(WeaverConfig.goDurationMillis("1m30s"), 90_000)
    assert.strictEqual(WeaverConfig.goDurationMillis("250ms"), 250)
    assert.strictEqual(WeaverConfig.goDurationMillis("1.5s"), 1500)
    assert.strictEqual(WeaverConfig.goDurationMillis("500us"), 0.5)
  })

  it("malformed TOML names line and column", () => {
    const message = errorOf(`[serviceweaver]\nname = "hello"\nbinary = \n`)
    assert.match(message, /^weaver\.toml:3:\d+: malformed TOML: .+/)
  })

  it("env entries must be KEY=value", () => {
    assert.strictEqual(
      errorOf(`[serviceweaver]\nenv = ["A=1", "B"]\n`),
      `weaver.toml: [serviceweaver] key "env.1": expected "KEY=value", got "B"`
    )
  })

  it.effect("load of a missing file names the file", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(WeaverConfig.load("/nonexistent/dir/weaver.toml"))
      assert.strictEqual(error.message, "/nonexistent/dir/weaver.toml: cannot read config file: ENOENT")
    }))

  it.effect("loads hello's weaver.toml", () =>
    Effect.gen(function*() {
      const file = Path.resolve(import.meta.dirname, "../../../examples/hello/weaver.toml")
      const config = yield* WeaverConfig.load(file)
      assert.strictEqual(config.file, file)
      assert.strictEqual(config.dir, Path.dirname(file))
      assert.strictEqual(config.serviceweaver.name, "hello")
      assert.strictEqual(config.serviceweaver.binary, "./dist/hello.mjs")
      assert.deepStrictEqual(config.single.listeners, { hello: { address: "localhost:12345" } })
      assert.deepStrictEqual(config.multi.listeners, { hello: { address: "localhost:12345" } })
      assert.strictEqual(config.multi.replicas, 2)
      assert.isTrue(Fs.existsSync(file))
    }))

  it("accepts a file with every key", () => {
    const toml = `
[serviceweaver]
name = "all"
binary = "./dist/main.js"
args = ["--flag", "x"]
env = ["A=1", "B=two=2", "EMPTY="]
colocate = [["cfg/Greeter", "cfg/Cache"], ["cfg/Plain"]]
rollout = "1h30m"

[single]
listeners.web = { address = "localhost:0" }

[multi]
listeners.web = { address = "[::1]:8080" }
replicas = 3

["cfg/Greeter"]
Greeting = "Bonjour"
Times = 2
`
    const config = Either.getOrThrow(parse(toml))
    const decoded = Either.getOrThrow(WeaverConfig.validate(config, shape))
    assert.deepStrictEqual(config.serviceweaver, {
      name: "all",
      binary: "./dist/main.js",
      args: ["--flag", "x"],
      env: ["A=1", "B=two=2", "EMPTY="],
      colocate: [["cfg/Greeter", "cfg/Cache"], ["cfg/Plain"]],
      rollout: "1h30m"
    })
    assert.deepStrictEqual(WeaverConfig.environment(config), { A: "1", B: "two=2", EMPTY: "" })
    assert.deepStrictEqual(config.single, { listeners: { web: { address: "localhost:0" } }, workers: false })
    assert.deepStrictEqual(config.multi, { listeners: { web: { address: "[::1]:8080" } }, replicas: 3, mtls: false })
    assert.deepStrictEqual(decoded.get("cfg/Greeter"), { Greeting: "Bonjour", Times: 2 })
    assert.isFalse(decoded.has("cfg/Plain"))
  })

  it("an empty file gives every default", () => {
    const config = Either.getOrThrow(parse(""))
    assert.deepStrictEqual(config.serviceweaver, { args: [], env: [], colocate: [] })
    assert.strictEqual(config.multi.replicas, 2)
    assert.deepStrictEqual(config.multi, WeaverConfig.empty().multi)
  })

  it("[multi] mtls is off unless set to true", () => {
    assert.isFalse(Either.getOrThrow(parse("[multi]\nreplicas = 1\n")).multi.mtls)
    assert.isTrue(Either.getOrThrow(parse("[multi]\nmtls = true\n")).multi.mtls)
    assert.isFalse(Either.getOrThrow(parse("[multi]\nmtls = false\n")).multi.mtls)
    assert.match(errorOf(`[multi]\nmtls = "yes"\n`), /mtls/)
  })
})
