import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Http from "node:http"
import type * as Net from "node:net"
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
})
