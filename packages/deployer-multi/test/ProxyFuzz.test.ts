/**
 * The listener proxy against hostile HTTP clients: malformed and mutated
 * requests, oversized headers, large bodies, clients that stall mid-headers
 * or mid-body. The proxy must stay up, answer or close each bad connection,
 * keep its memory bounded, and keep serving a well-behaved client
 * throughout. Seeded (PROXY_FUZZ_SEED); the counts are printed.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Http from "node:http"
import * as Net from "node:net"
import * as Proxy from "../src/Proxy.js"

/** A replica: reads each request's body to the end and answers with its length. */
const backend = Effect.acquireRelease(
  Effect.async<{ readonly server: Http.Server; readonly address: string }>((resume) => {
    const server = Http.createServer((req, res) => {
      let bytes = 0
      req.on("data", (chunk: Buffer) => (bytes += chunk.length))
      req.on("end", () => res.end(String(bytes)))
      req.on("error", () => res.destroy())
    })
    server.listen(
      0,
      "127.0.0.1",
      () => resume(Effect.succeed({ server, address: `127.0.0.1:${(server.address() as Net.AddressInfo).port}` }))
    )
  }),
  ({ server }) =>
    Effect.async<void>((resume) => {
      server.closeAllConnections()
      server.close(() => resume(Effect.void))
    })
)

/** xorshift32: the same requests on every run with the same seed. */
const prng = (seed: number) => {
  let x = seed >>> 0 || 1
  return () => {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    return (x >>> 0) / 0x1_0000_0000
  }
}

const valid = (path: string) =>
  Buffer.from(`GET ${path} HTTP/1.1\r\nHost: fuzz\r\nUser-Agent: fuzz\r\nAccept: */*\r\nConnection: close\r\n\r\n`)

/** A bad request: random bytes, a valid one mutated, a broken request line, or headers over the limit. */
const badRequest = (random: () => number, i: number): Buffer => {
  const kind = Math.floor(random() * 5)
  if (kind === 0) return Buffer.from(Array.from({ length: 1 + Math.floor(random() * 512) }, () => random() * 256))
  if (kind === 1) {
    const bytes = Buffer.from(valid(`/m${i}`))
    for (let n = 1 + Math.floor(random() * 8); n > 0; n--) bytes[Math.floor(random() * bytes.length)] = random() * 256
    return bytes
  }
  if (kind === 2) return Buffer.from(`G\u0000T /${"x".repeat(Math.floor(random() * 64))} HTTP/9.9\r\n\r\n`)
  if (kind === 3) return Buffer.from(`GET /big HTTP/1.1\r\nHost: fuzz\r\nX-Big: ${"b".repeat(20_000)}\r\n\r\n`)
  return Buffer.from(`POST /cl HTTP/1.1\r\nHost: fuzz\r\nContent-Length: -${Math.floor(random() * 10)}\r\n\r\n`)
}

/**
 * Opens a connection, writes `bytes` and
 * resolves with the status line it got back (or "" for none) once the
 * proxy closes the connection, or "open" if it is still open after `limit` ms.
 * With `end`, the client half-closes after writing.
 */
const send = (port: number, bytes: Buffer, limit: number, end = true) =>
  new Promise<string>((resolve) => {
    const socket = Net.connect({ host: "127.0.0.1", port })
    let received = ""
    const timer = setTimeout(() => {
      socket.destroy()
      resolve("open")
    }, limit)
    socket.on("connect", () => {
      socket.write(bytes)
      if (end) socket.end()
    })
    socket.setEncoding("latin1")
    socket.on("data", (chunk: string) => {
      if (received.length < 64) received += chunk
    })
    socket.on("error", () => undefined)
    socket.on("close", () => {
      clearTimeout(timer)
      resolve(received.split("\r\n")[0] ?? "")
    })
  })

const upload = (port: number, bytes: number) =>
  new Promise<string>((resolve, reject) => {
    const req = Http.request({ host: "127.0.0.1", port, method: "POST", path: "/upload" }, (res) => {
      let body = ""
      res.setEncoding("utf8")
      res.on("data", (chunk: string) => (body += chunk))
      res.on("end", () => resolve(`${res.statusCode} ${body}`))
    })
    req.on("error", reject)
    const chunk = Buffer.alloc(64 * 1024, 120)
    let sent = 0
    const write = () => {
      while (sent < bytes) {
        sent += chunk.length
        if (!req.write(chunk)) return req.once("drain", write)
      }
      req.end()
    }
    write()
  })

describe("Proxy against hostile clients", () => {
  it.scopedLive(
    "malformed requests, huge headers, stalled headers and bodies, big uploads: served client unaffected",
    () =>
      Effect.gen(function*() {
        const seed = Number(process.env.PROXY_FUZZ_SEED ?? 7)
        const random = prng(seed)
        const { address } = yield* backend
        const proxy = yield* Proxy.make({
          listener: "web",
          kind: "http",
          address: "127.0.0.1:0",
          headersTimeout: "500 millis",
          requestTimeout: "2 seconds"
        })
        proxy.setBackends([address])
        const port = Number(proxy.address.slice(proxy.address.lastIndexOf(":") + 1))
        const start = performance.now()
        const rssBefore = process.memoryUsage().rss

        // A well-behaved client, all along.
        let stop = false
        let good = 0
        const goodFailures: Array<string> = []
        const polite = (async () => {
          while (!stop) {
            // Not half-closed: the server answers, then closes (Connection: close).
            const status = await send(port, valid(`/good${good}`), 5_000, false)
            if (status === "HTTP/1.1 200 OK") good++
            else goodFailures.push(status)
          }
        })()

        // Bad requests, 32 connections at a time.
        const BAD = 3_000
        const statuses = new Map<string, number>()
        let next = 0
        yield* Effect.promise(() =>
          Promise.all(Array.from({ length: 32 }, async () => {
            while (next < BAD) {
              const i = next++
              const status = await send(port, badRequest(random, i), 5_000)
              const key = status.slice(0, 12) || "(closed)"
              statuses.set(key, (statuses.get(key) ?? 0) + 1)
            }
          }))
        )

        // Clients that stall: mid-headers (slowloris) and mid-body (a Content-Length never met).
        const stalled = yield* Effect.promise(() =>
          Promise.all([
            ...Array.from(
              { length: 50 },
              (_, i) => send(port, Buffer.from(`GET /slow${i} HTTP/1.1\r\nHost: f`), 8_000, false)
            ),
            ...Array.from(
              { length: 20 },
              (_, i) =>
                send(
                  port,
                  Buffer.from(`POST /half${i} HTTP/1.1\r\nHost: f\r\nContent-Length: 1048576\r\n\r\nabc`),
                  8_000,
                  false
                )
            )
          ])
        )

        // Large bodies stream through.
        const uploads = yield* Effect.promise(() =>
          Promise.all(Array.from({ length: 4 }, () => upload(port, 8 * 1024 * 1024)))
        )
        const rssGrowth = (process.memoryUsage().rss - rssBefore) / 1024 / 1024

        stop = true
        yield* Effect.promise(() => polite)
        const seconds = (performance.now() - start) / 1000
        process.stdout.write(
          `proxy fuzz (seed ${seed}): ${BAD} bad requests, ${stalled.length} stalled clients, 4 × 8 MiB uploads in ` +
            `${seconds.toFixed(1)} s; answers: ${
              [...statuses].map(([status, n]) => `${n} × ${status}`).join(", ")
            }; well-behaved requests served: ${good}; RSS growth ${rssGrowth.toFixed(1)} MiB\n`
        )
        assert.deepStrictEqual(goodFailures, [], "a well-behaved request failed")
        assert.isAbove(good, 0)
        // Every bad connection was answered or closed by the proxy: none left open.
        assert.strictEqual(statuses.get("open") ?? 0, 0)
        assert.isAbove(statuses.get("HTTP/1.1 431") ?? 0, 0, "oversized headers get 431")
        assert.isAbove(statuses.get("HTTP/1.1 400") ?? 0, 0, "malformed requests get 400")
        // Stalled clients are cut off (408 or closed) by the header and request timeouts, not left open.
        assert.deepStrictEqual(stalled.filter((s) => s === "open"), [])
        assert.deepStrictEqual(uploads, Array.from({ length: 4 }, () => `200 ${8 * 1024 * 1024}`))
        assert.isBelow(rssGrowth, 128, "uploads are streamed, not held")
      }),
    120_000
  )
})
