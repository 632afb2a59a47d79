import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Crypto from "node:crypto"
import * as Http from "node:http"
import * as Net from "node:net"
import * as Proxy from "../src/Proxy.js"

/** An HTTP server on 127.0.0.1 answering `<name> <path>`, closed with the scope. */
const backend = (name: string) =>
  Effect.acquireRelease(
    Effect.async<{ readonly server: Http.Server; readonly address: string }>((resume) => {
      const server = Http.createServer((req, res) => res.end(`${name} ${req.url}`))
      server.listen(0, "127.0.0.1", () =>
        resume(Effect.succeed({ server, address: `127.0.0.1:${(server.address() as Net.AddressInfo).port}` })))
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.close(() =>
          resume(Effect.void)
        )
      })
  )

/** A loopback address nothing listens on: a server bound and closed again. */
const refusingAddress = Effect.scoped(Effect.map(backend("gone"), ({ address }) => address))

const get = (proxy: Proxy.Proxy["Type"], path: string) =>
  Effect.promise(async () => {
    const response = await fetch(`http://${proxy.address}${path}`)
    return { status: response.status, body: await response.text() }
  })

/** A TCP server on 127.0.0.1 handling each connection with `handle`, closed (with its connections) with the scope. */
const tcpBackend = (handle: (socket: Net.Socket) => void) =>
  Effect.acquireRelease(
    Effect.async<{ readonly server: Net.Server; readonly address: string }>((resume) => {
      const sockets = new Set<Net.Socket>()
      const server = Net.createServer({ allowHalfOpen: true }, (socket) => {
        sockets.add(socket)
        socket.on("close", () => sockets.delete(socket))
        socket.on("error", () => undefined)
        handle(socket)
      })
      server.on("close", () => sockets.forEach((socket) => socket.destroy()))
      server.listen(0, "127.0.0.1", () =>
        resume(Effect.succeed({ server, address: `127.0.0.1:${(server.address() as Net.AddressInfo).port}` })))
    }),
    ({ server }) =>
      Effect.async<void>((resume) =>
        void server.close(() => resume(Effect.void)).emit("close")
      )
  )

/** A replica that greets each connection with `<name>\n`, then ends it. */
const greeter = (name: string) => tcpBackend((socket) => socket.end(`${name}\n`))

interface Session {
  /** Everything received, as text. */
  readonly received: string
  /** How the connection ended: the peer's end (a clean close), or an error (e.g. `ECONNRESET`). */
  readonly ended: "end" | string
}

/** Connects to the proxy, sends `payload` and half-closes (unless `end` is false), and reads until the connection closes. */
const session = (proxy: Proxy.Proxy["Type"], payload: string | Buffer = "", end = true) =>
  Effect.promise(() =>
    new Promise<Session>((resolve) => {
      const socket = Net.connect({ host: "127.0.0.1", port: Number(proxy.address.split(":")[1]) })
      let received = ""
      let ended = "closed"
      socket.on("connect", () => {
        socket.write(payload)
        if (end) socket.end()
      })
      socket.setEncoding("utf8")
      socket.on("data", (chunk: string) => (received += chunk))
      socket.on("end", () => (ended = "end"))
      socket.on("error", (error: NodeJS.ErrnoException) => (ended = error.code ?? error.message))
      socket.on("close", () => resolve({ received, ended }))
    })
  ).pipe(Effect.timeout("10 seconds"))

describe("Proxy", () => {
  it.scopedLive("holds requests that arrive before the first replica, then forwards them", () =>
    Effect.gen(function*() {
      const proxy = yield* Proxy.make({ listener: "web", kind: "http", address: "127.0.0.1:0" })
      const early = yield* Effect.fork(get(proxy, "/early"))
      yield* Effect.sleep("150 millis")
      assert.isNull(early.unsafePoll(), "answered before any replica served the listener")
      const { address } = yield* backend("a")
      proxy.setBackends([address])
      assert.deepStrictEqual(yield* early.await.pipe(Effect.flatten), { status: 200, body: "a /early" })
    }))

  it.scopedLive("answers 502 when no replica comes within the start-up wait", () =>
    Effect.gen(function*() {
      const proxy = yield* Proxy.make({
        listener: "web",
        kind: "http",
        address: "127.0.0.1:0",
        startupWait: "200 millis"
      })
      const { body, status } = yield* get(proxy, "/")
      assert.strictEqual(status, 502)
      assert.include(body, "listener web: no replica is serving it yet (waited 200ms)")
    }))

  it.scopedLive("answers 502 at once when every replica is gone after start-up", () =>
    Effect.gen(function*() {
      const proxy = yield* Proxy.make({ listener: "web", kind: "http", address: "127.0.0.1:0" })
      const { address } = yield* backend("a")
      proxy.setBackends([address])
      assert.strictEqual((yield* get(proxy, "/")).status, 200)
      proxy.setBackends([])
      const { body, status } = yield* get(proxy, "/").pipe(Effect.timeout("2 seconds"))
      assert.strictEqual(status, 502)
      assert.include(body, "listener web: no replica is serving it")
    }))

  it.scopedLive("skips a replica that refuses connections, and balances over the others", () =>
    Effect.gen(function*() {
      const proxy = yield* Proxy.make({ listener: "web", kind: "http", address: "127.0.0.1:0" })
      const a = yield* backend("a")
      const b = yield* backend("b")
      proxy.setBackends([yield* refusingAddress, a.address, b.address])
      const bodies = yield* Effect.forEach([1, 2, 3, 4, 5, 6], (i) => get(proxy, `/${i}`))
      assert.isTrue(bodies.every(({ status }) => status === 200))
      const served = new Set(bodies.map(({ body }) => body.split(" ")[0]))
      assert.deepStrictEqual([...served].sort(), ["a", "b"])
    }))

  it.scopedLive("answers 502 naming the replica when none can be reached", () =>
    Effect.gen(function*() {
      const proxy = yield* Proxy.make({ listener: "web", kind: "http", address: "127.0.0.1:0" })
      proxy.setBackends([yield* refusingAddress])
      const { body, status } = yield* get(proxy, "/")
      assert.strictEqual(status, 502)
      assert.include(body, "listener web: no replica could be reached")
    }))

  it.scopedLive("is a service: Proxy.layer binds its address, and a busy one fails the layer naming it", () =>
    Effect.gen(function*() {
      const { address } = yield* backend("a")
      const answer = yield* Effect.gen(function*() {
        const proxy = yield* Proxy.Proxy
        proxy.setBackends([address])
        return yield* get(proxy, "/x")
      }).pipe(Effect.provide(Proxy.layer({ listener: "web", kind: "http", address: "127.0.0.1:0" })))
      assert.deepStrictEqual(answer, { status: 200, body: "a /x" })
      const busy = yield* Layer.build(Proxy.layer({ listener: "web", kind: "http", address })).pipe(Effect.flip)
      assert.strictEqual(busy.message, `listener web: cannot proxy on ${address}: the address is already in use`)
    }))

  it.scopedLive("tcp: passes bytes through untouched both ways, and the client's half-close: the replica answers after it", () =>
    Effect.gen(function*() {
      // Reads to the client's end, then answers with the length and digest of what it got.
      const { address } = yield* tcpBackend((socket) => {
        const hash = Crypto.createHash("sha256")
        let bytes = 0
        socket.on("data", (chunk: Buffer) => {
          bytes += chunk.length
          hash.update(chunk)
        })
        socket.on("end", () => socket.end(`${bytes} ${hash.digest("hex")}`))
      })
      const proxy = yield* Proxy.make({ listener: "raw", kind: "tcp", address: "127.0.0.1:0" })
      proxy.setBackends([address])
      const payload = Crypto.randomBytes(4 * 1024 * 1024)
      const digest = Crypto.createHash("sha256").update(payload).digest("hex")
      assert.deepStrictEqual(yield* session(proxy, payload), { received: `${payload.length} ${digest}`, ended: "end" })
    }))

  it.scopedLive("tcp: balances connections round-robin, skipping a replica that refuses", () =>
    Effect.gen(function*() {
      const proxy = yield* Proxy.make({ listener: "raw", kind: "tcp", address: "127.0.0.1:0" })
      const a = yield* greeter("a")
      const b = yield* greeter("b")
      proxy.setBackends([yield* refusingAddress, a.address, b.address])
      const sessions = yield* Effect.forEach([1, 2, 3, 4, 5, 6], () => session(proxy))
      assert.isTrue(sessions.every(({ ended }) => ended === "end"))
      const served = sessions.map(({ received }) => received.trim())
      assert.deepStrictEqual([...new Set(served)].sort(), ["a", "b"])
      assert.strictEqual(served.filter((name) => name === "a").length, 3)
    }))

  it.scopedLive("tcp: resets a connection when no replica can be reached, or none serves the listener", () =>
    Effect.gen(function*() {
      const proxy = yield* Proxy.make({ listener: "raw", kind: "tcp", address: "127.0.0.1:0" })
      proxy.setBackends([yield* refusingAddress])
      assert.deepStrictEqual(yield* session(proxy, "hello"), { received: "", ended: "ECONNRESET" })
      proxy.setBackends([])
      assert.deepStrictEqual(yield* session(proxy, "hello"), { received: "", ended: "ECONNRESET" })
    }))

  it.scopedLive("tcp: a replica's reset resets the client's connection, not a clean end", () =>
    Effect.gen(function*() {
      const { address } = yield* tcpBackend((socket) => {
        socket.write("partial")
        socket.once("data", () => socket.resetAndDestroy())
      })
      const proxy = yield* Proxy.make({ listener: "raw", kind: "tcp", address: "127.0.0.1:0" })
      proxy.setBackends([address])
      const { ended, received } = yield* session(proxy, "go", false)
      assert.strictEqual(received, "partial")
      assert.strictEqual(ended, "ECONNRESET")
    }))

  it.scopedLive("a proxy that does not know its kind holds connections until the first replica tells it", () =>
    Effect.gen(function*() {
      const proxy = yield* Proxy.make({ listener: "raw", address: "127.0.0.1:0" })
      const early = yield* Effect.fork(session(proxy, "early"))
      const { address } = yield* greeter("a")
      proxy.setBackends([address])
      yield* Effect.sleep("150 millis")
      assert.isNull(early.unsafePoll(), "served before the listener's kind was known")
      yield* proxy.setKind("tcp")
      assert.deepStrictEqual(yield* early.await.pipe(Effect.flatten), { received: "a\n", ended: "end" })
      assert.strictEqual(proxy.kind(), "tcp")
    }))

  it.scopedLive("an HTTP request held while the kind is unknown is proxied once a replica serves it as http", () =>
    Effect.gen(function*() {
      const proxy = yield* Proxy.make({ listener: "web", address: "127.0.0.1:0" })
      const early = yield* Effect.fork(get(proxy, "/early"))
      yield* Effect.sleep("150 millis")
      const { address } = yield* backend("a")
      yield* proxy.setKind("http")
      proxy.setBackends([address])
      assert.deepStrictEqual(yield* early.await.pipe(Effect.flatten), { status: 200, body: "a /early" })
    }))

  it.scopedLive("resets connections held past the start-up wait, whether the kind is known or not", () =>
    Effect.gen(function*() {
      const unknown = yield* Proxy.make({ listener: "raw", address: "127.0.0.1:0", startupWait: "200 millis" })
      const tcp = yield* Proxy.make({ listener: "raw", kind: "tcp", address: "127.0.0.1:0", startupWait: "200 millis" })
      const started = Date.now()
      const sessions = yield* Effect.all([session(unknown, "x"), session(tcp, "x")], { concurrency: 2 })
      assert.deepStrictEqual(sessions, [{ received: "", ended: "ECONNRESET" }, { received: "", ended: "ECONNRESET" }])
      assert.isAtLeast(Date.now() - started, 190)
    }))

  it.scopedLive("refuses a second kind for its listener, naming both", () =>
    Effect.gen(function*() {
      const proxy = yield* Proxy.make({ listener: "raw", address: "127.0.0.1:0" })
      yield* proxy.setKind("tcp")
      yield* proxy.setKind("tcp")
      const error = yield* Effect.flip(proxy.setKind("http"))
      assert.strictEqual(
        error.message,
        `listener raw: cannot proxy on ${proxy.address}: its replicas serve it in two ways: ` +
          "as tcp (Weaver.listener) and as http (Weaver.serve)"
      )
    }))
})
