/**
 * Listeners of any protocol under `weaver multi deploy`: a TCP echo and
 * HTTP/2 cleartext on listeners bound with `Weaver.listener` go through
 * layer-4 proxies (connections balanced over the replicas, bytes untouched),
 * an HTTP listener served with `Weaver.serve` through the HTTP proxy still.
 * Deploys test/fixtures/protocols with 2 replicas of main.
 */
import { Registry } from "@effect-weaver/runtime"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as Crypto from "node:crypto"
import * as Http2 from "node:http2"
import * as Net from "node:net"
import * as Path from "node:path"
import { deploy, entry, firstAnswer, proxyAddress, replicaPids, root, waitUntil } from "./utils/deployment.js"
import type { Deployment } from "./utils/deployment.js"

const protocolsToml = `
[serviceweaver]
name = "protocols"
binary = "${Path.join(root, "packages/deployer-multi/test/fixtures/protocols/main.ts")}"

[multi]
listeners.echo = { address = "127.0.0.1:0" }
listeners.h2 = { address = "127.0.0.1:0" }
listeners.web = { address = "127.0.0.1:0" }
replicas = 2
`

/**
 * One echo session: connects, sends `payload`, half-closes, and reads until
 * the replica ends the connection. The replica that answered (its greeting
 * line) and the bytes echoed after it.
 */
const echo = (address: string, payload: Buffer = Buffer.alloc(0)) =>
  Effect.tryPromise({
    try: () =>
      new Promise<{ readonly pid: number; readonly echoed: Buffer }>((resolve, reject) => {
        const { port } = splitPort(address)
        const socket = Net.connect({ host: "127.0.0.1", port })
        const chunks: Array<Buffer> = []
        socket.on("connect", () => {
          socket.write(payload)
          socket.end()
        })
        socket.on("data", (chunk: Buffer) => chunks.push(chunk))
        socket.on("error", reject)
        socket.on("end", () => {
          const all = Buffer.concat(chunks)
          const newline = all.indexOf(10)
          if (newline < 0) return reject(new Error(`no greeting line, got ${all.length} bytes`))
          resolve({ pid: Number(all.subarray(0, newline).toString()), echoed: all.subarray(newline + 1) })
        })
      }),
    catch: (error) => new Error(`echo through ${address}: ${String(error)}`)
  }).pipe(
    Effect.timeoutFail({ duration: "30 seconds", onTimeout: () => new Error(`echo through ${address}: timeout`) })
  )

const splitPort = (address: string) => ({ port: Number(address.slice(address.lastIndexOf(":") + 1)) })

/** GETs every path as a stream of one HTTP/2 cleartext connection (prior knowledge), all at once. */
const h2c = (address: string, paths: ReadonlyArray<string>) =>
  Effect.tryPromise({
    try: () =>
      new Promise<ReadonlyArray<{ readonly status: number; readonly body: string }>>((resolve, reject) => {
        const session = Http2.connect(`http://${address}`)
        session.on("error", reject)
        Promise.all(paths.map((path) =>
          new Promise<{ readonly status: number; readonly body: string }>((done, fail) => {
            const stream = session.request({ ":path": path })
            let status = 0
            let body = ""
            stream.on("response", (headers) => (status = Number(headers[":status"])))
            stream.setEncoding("utf8")
            stream.on("data", (chunk: string) => (body += chunk))
            stream.on("end", () => done({ status, body }))
            stream.on("error", fail)
            stream.end()
          })
        )).then(
          (answers) => session.close(() => resolve(answers)),
          (error) => {
            session.destroy()
            reject(error)
          }
        )
      }),
    catch: (error) => new Error(`h2c through ${address}: ${String(error)}`)
  }).pipe(Effect.timeoutFail({ duration: "30 seconds", onTimeout: () => new Error(`h2c through ${address}: timeout`) }))

/** Opens echo connections until both replicas (other than `except`) have answered one. */
const bothReplicas = (deployment: Deployment, address: string, except?: number) =>
  Effect.gen(function*() {
    const seen = new Set<number>()
    yield* echo(address).pipe(
      Effect.tap(({ pid }) => Effect.sync(() => pid !== except && seen.add(pid))),
      Effect.filterOrFail(() => seen.size >= 2, () => new Error(`replicas answered: ${[...seen].join(", ")}`)),
      Effect.retry(Schedule.spaced("100 millis").pipe(Schedule.upTo("60 seconds"))),
      Effect.mapError((error) => new Error(`${error.message}\n--- deployer\n${deployment.output()}`))
    )
    return seen
  })

describe.sequential("listeners of any protocol under weaver multi deploy", () => {
  const scope = Effect.runSync(Scope.make())
  let deployment: Deployment
  let proxies: { readonly echo: string; readonly h2: string; readonly web: string }

  beforeAll(async () => {
    deployment = await Effect.runPromise(deploy(protocolsToml).pipe(Scope.extend(scope)))
    proxies = await Effect.runPromise(
      Effect.all({
        echo: proxyAddress(deployment, "echo"),
        h2: proxyAddress(deployment, "h2"),
        web: proxyAddress(deployment, "web")
      })
    )
    await Effect.runPromise(bothReplicas(deployment, proxies.echo))
  }, 120_000)
  afterAll(() => Effect.runPromise(Scope.close(scope, Exit.void)), 60_000)

  it.live("the registry lists each listener's proxy with its kind", () =>
    Effect.gen(function*() {
      const kinds = yield* waitUntil("the kinds of the three listeners", deployment, () => {
        const listeners = entry(deployment)?.listeners ?? []
        return listeners.length === 3 && listeners.every((l) => l.kind !== undefined)
          ? Object.fromEntries(listeners.map((l) => [l.name, l.kind]))
          : undefined
      })
      assert.deepStrictEqual(kinds, { echo: "tcp", h2: "tcp", web: "http" })
    }), 60_000)

  it.live(
    "a TCP echo round-trips 1 MiB through the proxy, the client half-closing before reading it back",
    () =>
      Effect.gen(function*() {
        const payload = Crypto.randomBytes(1024 * 1024)
        const { echoed, pid } = yield* echo(proxies.echo, payload)
        assert.isTrue(replicaPids(deployment).includes(pid), `answered by ${pid}, not a replica`)
        assert.strictEqual(echoed.length, payload.length)
        assert.isTrue(echoed.equals(payload), "the echo differs from what was sent")
      }),
    60_000
  )

  it.live("connections are balanced over both replicas, one replica per connection", () =>
    Effect.gen(function*() {
      const answers = yield* Effect.forEach(Array.from({ length: 8 }), () => echo(proxies.echo, Buffer.from("hi")))
      assert.isTrue(answers.every(({ echoed }) => echoed.toString() === "hi"))
      const perReplica = new Map<number, number>()
      for (const { pid } of answers) perReplica.set(pid, (perReplica.get(pid) ?? 0) + 1)
      assert.deepStrictEqual([...perReplica.keys()].sort(), [...replicaPids(deployment)].sort())
      assert.deepStrictEqual([...perReplica.values()], [4, 4], "round-robin alternates replicas per connection")
    }), 60_000)

  it.live(
    "h2c: several streams on one connection are answered through the proxy, by one replica",
    () =>
      Effect.gen(function*() {
        const paths = Array.from({ length: 8 }, (_, i) => `/stream/${i}`)
        const answers = yield* h2c(proxies.h2, paths)
        assert.deepStrictEqual(answers.map(({ status }) => status), paths.map(() => 200))
        assert.deepStrictEqual(answers.map(({ body }) => body.split(" ")[1]), paths)
        const pids = new Set(answers.map(({ body }) => Number(body.split(" ")[0])))
        assert.strictEqual(pids.size, 1, `one connection, one replica: ${[...pids].join(", ")}`)
        assert.isTrue(replicaPids(deployment).includes([...pids][0]!))
        const next = yield* h2c(proxies.h2, ["/next"])
        assert.notStrictEqual(
          Number(next[0]!.body.split(" ")[0]),
          [...pids][0],
          "the next connection, the other replica"
        )
      }),
    60_000
  )

  it.live("an HTTP listener still goes through the HTTP proxy", () =>
    Effect.gen(function*() {
      const { body, status } = yield* firstAnswer(deployment, `http://${proxies.web}/whoami`)
      assert.strictEqual(status, 200)
      const [pid, forwardedHost] = body.split(" ")
      assert.isTrue(replicaPids(deployment).includes(Number(pid)))
      assert.strictEqual(forwardedHost, proxies.web, "the HTTP proxy sets x-forwarded-host")
    }), 60_000)

  it.live(
    "with one replica killed, new connections succeed on the other; the restarted one serves again",
    () =>
      Effect.gen(function*() {
        const [killed, survivor] = replicaPids(deployment)
        assert.isDefined(survivor)
        process.kill(killed!, "SIGKILL")
        // Gone, not dying: its listeners refuse connections from now on (until its restart, with another pid).
        yield* Effect.sync(() => Registry.isAlive(killed!)).pipe(
          Effect.repeat({ while: (alive) => alive, schedule: Schedule.spaced("20 millis") }),
          Effect.timeout("10 seconds")
        )
        const echoes = yield* Effect.forEach(Array.from({ length: 6 }), () => echo(proxies.echo, Buffer.from("x")))
        assert.isTrue(echoes.every(({ echoed, pid }) => pid !== killed && echoed.toString() === "x"))
        const streams = yield* Effect.forEach(Array.from({ length: 3 }), () => h2c(proxies.h2, ["/after"]))
        assert.isTrue(streams.every(([answer]) => answer!.status === 200 && !answer!.body.startsWith(`${killed} `)))
        const serving = yield* bothReplicas(deployment, proxies.echo, killed)
        assert.isFalse(serving.has(killed!))
      }),
    120_000
  )
})
