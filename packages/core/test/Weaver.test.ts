import { Component, Weaver, WeaverConfig } from "@effect-weaver/core"
import { App, ConfigCheck } from "@effect-weaver/runtime"
import * as TransportLocal from "@effect-weaver/transport-local"
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Fiber, Schema, Stream } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

class NotFound extends Schema.TaggedError<NotFound>()("NotFound", { key: Schema.String }) {}

class Reverser extends Component.Tag("weavertest/Reverser")<Reverser>()({
  reverse: Component.method({ payload: Schema.String, success: Schema.String }),
  lookup: Component.method({ payload: Schema.String, success: Schema.String, error: NotFound }),
  letters: Component.method({ payload: Schema.String, success: Schema.String, stream: true })
}) {}

let finalized = 0
let lettersStopped = 0
const ReverserImpl = Component.implement(
  Reverser,
  Effect.gen(function*() {
    yield* Effect.addFinalizer(() => Effect.sync(() => finalized++))
    return {
      reverse: (s: string) => Effect.succeed([...s].reverse().join("")),
      lookup: (key: string) => key === "known" ? Effect.succeed("value") : Effect.fail(new NotFound({ key })),
      letters: (s: string) =>
        Stream.forever(Stream.fromIterable([...s])).pipe(Stream.ensuring(Effect.sync(() => lettersStopped++)))
    }
  })
)

const Main = Weaver.main(
  Effect.gen(function*() {
    const reverser = yield* Reverser
    yield* Weaver.serve(
      "hello",
      HttpRouter.empty.pipe(
        HttpRouter.get(
          "/hello",
          Effect.gen(function*() {
            const { name } = yield* HttpServerRequest.schemaSearchParams(Schema.Struct({ name: Schema.String }))
            return HttpServerResponse.text(`Hello, ${yield* reverser.reverse(name)}!`)
          })
        )
      )
    )
  }),
  { listeners: ["hello"] }
)

const app = Weaver.app({ main: Main, components: [ReverserImpl] })

/** Runs `main` of `app` in a fiber and waits for its first listener to report its address. */
const start = (app: Weaver.App<any, any>, config = WeaverConfig.empty()) =>
  Effect.gen(function*() {
    const listening = yield* Deferred.make<
      { readonly name: string; readonly address: string; readonly kind: "http" | "tcp" }
    >()
    const weavelet = yield* App.makeWeavelet(app, {
      config,
      listeners: {
        declared: app.listeners,
        address: (name) => config.single.listeners[name]?.address ?? "127.0.0.1:0",
        onListening: (name, address, kind) => Deferred.succeed(listening, { name, address, kind })
      }
    })
    const fiber = yield* Effect.forkScoped(App.runMain(app, weavelet))
    const first = yield* Effect.raceFirst(
      Deferred.await(listening),
      Effect.zipRight(Fiber.await(fiber), Effect.dieMessage("main ended before listening"))
    )
    return { ...first, fiber }
  })

const get = (url: string) =>
  Effect.promise(async () => {
    const response = await fetch(url)
    return { status: response.status, body: await response.text() }
  })

describe("Weaver", () => {
  it.live("serve answers HTTP and the health check on a listener at localhost:0", () =>
    Effect.gen(function*() {
      const config = Effect.runSync(WeaverConfig.parse(`[single]\nlisteners.hello = { address = "localhost:0" }\n`))
      const { address, kind, name } = yield* start(app, config)
      assert.strictEqual(name, "hello")
      assert.strictEqual(kind, "http")
      assert.match(address, /:\d+$/)
      assert.notMatch(address, /:0$/)
      assert.deepStrictEqual(yield* get(`http://${address}/hello?name=Weaver`), { status: 200, body: "Hello, revaeW!" })
      assert.deepStrictEqual(yield* get(`http://${address}/debug/weaver/healthz`), { status: 200, body: "OK" })
      assert.strictEqual((yield* get(`http://${address}/nope`)).status, 404)
    }).pipe(Effect.scoped, Effect.provide(TransportLocal.layer)))

  it.live("listener binds a TCP listener for any protocol, reported as tcp (or http, by option)", () =>
    Effect.gen(function*() {
      const Echo = Weaver.main(
        Effect.gen(function*() {
          const { server } = yield* Weaver.listener("echo")
          server.on("connection", (socket) => socket.pipe(socket))
          return yield* Effect.never
        }),
        { listeners: ["echo"] }
      )
      const { address, kind, name } = yield* start(Weaver.app({ main: Echo, components: [] }))
      assert.deepStrictEqual([name, kind], ["echo", "tcp"])
      const echoed = yield* Effect.promise(() =>
        new Promise<string>((resolve, reject) => {
          const socket = Net.connect({ host: "127.0.0.1", port: Number(address.slice(address.lastIndexOf(":") + 1)) })
          let received = ""
          socket.setEncoding("utf8")
          socket.on("connect", () => socket.end("ping"))
          socket.on("data", (chunk: string) => (received += chunk))
          socket.on("end", () => resolve(received))
          socket.on("error", reject)
        })
      )
      assert.strictEqual(echoed, "ping")
      const Own = Weaver.main(Effect.zipRight(Weaver.listener("own", { kind: "http" }), Effect.never), {
        listeners: ["own"]
      })
      assert.strictEqual((yield* start(Weaver.app({ main: Own, components: [] }))).kind, "http")
    }).pipe(Effect.scoped, Effect.provide(TransportLocal.layer)))

  it.live("the listener closes when main is interrupted", () =>
    Effect.gen(function*() {
      const { address, fiber } = yield* start(app)
      assert.strictEqual((yield* get(`http://${address}/debug/weaver/healthz`)).body, "OK")
      yield* Fiber.interrupt(fiber)
      const after = yield* Effect.either(Effect.tryPromise(() => fetch(`http://${address}/debug/weaver/healthz`)))
      assert.isTrue(after._tag === "Left", "the listener still answers after main was interrupted")
    }).pipe(Effect.scoped, Effect.provide(TransportLocal.layer)))

  it.live("serving an undeclared listener is a clear defect", () => {
    const Sneaky = Weaver.main(Weaver.serve("sneaky", HttpRouter.empty), { listeners: ["hello"] })
    const sneaky = Weaver.app({ main: Sneaky, components: [] })
    return Effect.gen(function*() {
      const weavelet = yield* App.makeWeavelet(sneaky, { config: WeaverConfig.empty() })
      const exit = yield* Effect.exit(App.runMain(sneaky, weavelet))
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isSuccess(exit)) return
      const [defect] = Cause.defects(exit.cause)
      assert.strictEqual(
        (defect as Error).message,
        `listener "sneaky" is not declared: list it in Weaver.main(..., { listeners: ["sneaky"] }) ` +
          `or in the options of the component that serves it (declared: hello)`
      )
    }).pipe(Effect.scoped, Effect.provide(TransportLocal.layer))
  })

  it.live("runMain of an app without main is a defect", () =>
    Effect.gen(function*() {
      const noMain = Weaver.app({ components: [ReverserImpl] })
      const weavelet = yield* App.makeWeavelet(noMain, { config: WeaverConfig.empty() })
      const exit = yield* Effect.exit(App.runMain(noMain, weavelet))
      assert.isTrue(Exit.isFailure(exit) && Cause.isDie(exit.cause))
    }).pipe(Effect.scoped, Effect.provide(TransportLocal.layer)))

  it("app rejects a component implemented twice", () => {
    assert.throws(
      () => Weaver.app({ components: [ReverserImpl, ReverserImpl] }),
      "Weaver.app: component weavertest/Reverser is implemented twice"
    )
  })

  describe("embed", () => {
    it("gives Promise clients; typed failures reject with the error value; close releases components", async () => {
      const before = finalized
      const weaver = await Weaver.embed(app, {
        config: { toml: `[serviceweaver]\nname = "embedded"\n` }
      })
      const reverser = weaver.client(Reverser)
      assert.strictEqual(await reverser.reverse("abc"), "cba")
      assert.strictEqual(await reverser.lookup("known"), "value")
      const error = await reverser.lookup("missing").then(
        () => assert.fail("expected a rejection"),
        (e: unknown) => e
      )
      assert.instanceOf(error, NotFound)
      assert.strictEqual((error as NotFound).key, "missing")
      // A streaming method is an AsyncIterable; leaving the loop early stops the producer.
      const seen: Array<string> = []
      for await (const letter of reverser.letters("ab")) {
        seen.push(letter)
        if (seen.length === 5) break
      }
      assert.deepStrictEqual(seen, ["a", "b", "a", "b", "a"])
      assert.strictEqual(lettersStopped, 1)
      assert.strictEqual(finalized, before)
      await weaver.close()
      assert.strictEqual(finalized, before + 1, "the component's scope was not closed")
    })

    it("rejects a bad config with its clear error", async () => {
      const error = await Weaver.embed(app, { config: { toml: `[serviceweaver]\nnmae = "x"\n` } }).then(
        () => assert.fail("expected a rejection"),
        (e: unknown) => e
      )
      assert.instanceOf(error, WeaverConfig.WeaverConfigError)
      assert.strictEqual((error as Error).message, `<inline config>: [serviceweaver] key "nmae": unknown key`)
    })
  })
})

describe("Weaver.run asked to check a config (ConfigCheck.env set)", () => {
  const fixture = fileURLToPath(new URL("fixtures/checked.ts", import.meta.url))

  /** Runs the fixture app in check mode on `toml`: its exit code, its answer line, and what of it ran. */
  const check = (toml: string) =>
    Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "weaver-check-"))),
        (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
      )
      const config = Path.join(dir, "weaver.toml")
      Fs.writeFileSync(config, toml)
      const result = ChildProcess.spawnSync(
        process.execPath,
        ["--conditions=@effect-weaver/source", "--import", "tsx", fixture],
        { env: { ...process.env, [ConfigCheck.env]: config, RAN: Path.join(dir, "ran") }, encoding: "utf8" }
      )
      const line = result.stdout.split("\n").find((l) => l.startsWith(ConfigCheck.marker))
      return {
        code: result.status,
        answer: line === undefined ? undefined : JSON.parse(line.slice(ConfigCheck.marker.length)),
        ran: Fs.existsSync(Path.join(dir, "ran")) ? Fs.readFileSync(Path.join(dir, "ran"), "utf8") : "",
        config
      }
    })

  it.scoped("answers with what the app declares, and runs nothing", () =>
    Effect.gen(function*() {
      const accepted = yield* check(
        `["check/Cache"]\nsize = 10\n[multi]\nlisteners.web = { address = "127.0.0.1:0" }\n`
      )
      assert.deepStrictEqual(accepted.answer, {
        _tag: "ConfigAccepted",
        components: ["check/Cache"],
        listeners: ["web"],
        serves: { main: ["web"] },
        singletons: ["check/Cache"]
      })
      assert.strictEqual(accepted.code, 0)
      assert.strictEqual(accepted.ran, "")
      const refused = yield* check(`["check/Cache"]\nsize = "ten"\n`)
      assert.deepStrictEqual(refused.answer, {
        _tag: "WeaverConfigError",
        file: refused.config,
        section: "check/Cache",
        key: "size",
        reason: `Expected number, actual "ten"`
      })
      assert.strictEqual(refused.code, 1)
      assert.strictEqual(refused.ran, "")
    }), 60_000)
})
