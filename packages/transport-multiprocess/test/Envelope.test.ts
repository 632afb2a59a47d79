/**
 * The internal address a deployer gives its weavelets: checked by the
 * envelope, bound by the weavelet (examples/hello's Reverser group, from
 * source) and reported back in `Ready`.
 */
import { Control, Envelope } from "@effect-weaver/runtime"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Either, Stream } from "effect"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("../../../", import.meta.url))

const socketDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "weaver-envelope-test-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

/** A TCP server on a free loopback port, open for the scope. */
const occupiedPort = Effect.acquireRelease(
  Effect.async<Net.Server>((resume) => {
    const server = Net.createServer().listen({ host: "127.0.0.1", port: 0 }, () => resume(Effect.succeed(server)))
  }),
  (server) => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
).pipe(Effect.map((server) => (server.address() as Net.AddressInfo).port))

const freePort = Effect.scoped(occupiedPort)

/** Starts a weavelet of hello's Reverser group on `internalAddress`; `ready` gets the address it reports. */
const start = (internalAddress: string) =>
  Effect.gen(function*() {
    const ready = yield* Deferred.make<string>()
    const lines: Array<string> = []
    const envelope = yield* Envelope.make({
      bootstrap: {
        app: "hello",
        deploymentId: crypto.randomUUID(),
        replicaId: crypto.randomUUID(),
        group: "hello/Reverser",
        components: ["hello/Reverser"],
        runMain: false,
        internalAddress,
        config: { file: "<test>", dir: root, text: "" },
        external: []
      },
      socketDir: yield* socketDir,
      command: process.execPath,
      args: ["--conditions=@effect-weaver/source", "--import", "tsx", Path.join(root, "examples/hello/src/main.ts")],
      env: { ...process.env },
      cwd: root,
      handler: {
        ready: (address) => Deferred.succeed(ready, address),
        activate: () => Effect.void,
        routing: () => Stream.never,
        exportListener: (listener) => Effect.fail(new Control.ControlError({ message: `no listener ${listener} here` }))
      },
      output: (stream, line) =>
        lines.push(Envelope.logEntry({ app: "hello", deploymentId: "", node: "", component: "" }, stream, line).msg)
    })
    return { envelope, ready: Deferred.await(ready), output: () => lines.join("\n") }
  })

describe("Envelope: the internal address of a weavelet", () => {
  it("a bootstrap without one (an older deployer's) binds 127.0.0.1:0; a malformed one is refused, naming it", () => {
    const bootstrap = {
      app: "hello",
      deploymentId: "d",
      replicaId: "r",
      group: "main",
      components: ["main"],
      runMain: true,
      controlSocket: "/tmp/c.sock",
      config: { file: "weaver.toml", dir: "/tmp" }
    }
    const decode = (value: object) => Control.decodeBootstrap(Buffer.from(JSON.stringify(value)).toString("base64"))
    const decoded = decode(bootstrap)
    assert.isTrue(Either.isRight(decoded))
    assert.strictEqual(Either.getOrThrow(decoded).internalAddress, "127.0.0.1:0")
    const refused = decode({ ...bootstrap, internalAddress: "10.0.0.1" })
    assert.isTrue(Either.isLeft(refused))
    assert.include(Either.merge(refused), "internalAddress")
    assert.include(Either.merge(refused), `expected "host:port" with a port from 0 to 65535, got "10.0.0.1"`)
  })

  it.scopedLive("a malformed address is refused before any process starts, with an error naming it", () =>
    Effect.gen(function*() {
      for (const address of ["localhost", "127.0.0.1:99999", "127.0.0.1:http", "tcp://127.0.0.1:0"]) {
        const error = yield* Effect.flip(start(address))
        assert.strictEqual(error._tag, "EnvelopeError")
        assert.include(error.message, `bad internal address ${JSON.stringify(address)}`)
        assert.include(error.message, "hello/Reverser")
      }
    }))

  it.scopedLive("the weavelet binds the address it is given and reports it in Ready", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      const { output, ready } = yield* start(`127.0.0.1:${port}`)
      const address = yield* ready.pipe(
        Effect.timeoutFail({ duration: "60 seconds", onTimeout: () => new Error(`not ready\n${output()}`) })
      )
      assert.strictEqual(address, `127.0.0.1:${port}`)
      // Port 0: a free port, reported as bound.
      const { ready: any } = yield* start("127.0.0.1:0")
      const bound = yield* any.pipe(Effect.timeout("60 seconds"))
      assert.match(bound, /^127\.0\.0\.1:[1-9]\d*$/)
    }), 120_000)

  it.scopedLive(
    "an address the weavelet cannot bind ends it with an error naming the address",
    () =>
      Effect.gen(function*() {
        const port = yield* occupiedPort
        const { envelope, output } = yield* start(`127.0.0.1:${port}`)
        const status = yield* envelope.exited.pipe(Effect.timeout("60 seconds"))
        assert.notStrictEqual(status.code, 0, output())
        assert.include(
          output(),
          `cannot serve components on the internal address 127.0.0.1:${port} given by the deployer: listen EADDRINUSE`
        )
      }),
    120_000
  )
})
