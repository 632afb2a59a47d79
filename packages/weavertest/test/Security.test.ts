/**
 * Mutual TLS and call-graph authorization: calls between processes go over
 * TLS with a certificate per colocation group; a callee serves a group only
 * the components that group's code resolved (`yield*`). Under multi this is
 * `[multi] mtls = true`; by default the processes talk plain TCP.
 */
import { Certificates, Weavelet } from "@effect-weaver/runtime"
import * as Server from "@effect-weaver/transport-rpc/Server"
import * as Wire from "@effect-weaver/transport-rpc/Wire"
import { weavertest } from "@effect-weaver/weavertest"
import { assert, describe, expect, it } from "@effect/vitest"
import { Context, Effect, Metric } from "effect"
import * as Net from "node:net"
import * as Tls from "node:tls"
import { app, Teller, Vault } from "./fixtures/security.js"
import { deployHere } from "./utils/multi.js"

/** A call to Vault by the test body (main) through a client it never resolved: main does not require Vault. */
const unrequiredCall = Effect.gen(function*() {
  const weavelet = yield* Weavelet.Weavelet
  const vault = Context.unsafeGet(weavelet.clients("main") as Context.Context<Vault>, Vault)
  return yield* Effect.flip(vault.read())
})

const mtls = "[multi]\nmtls = true\n"

describe("mutual TLS", () => {
  for (const runner of [weavertest.rpc, weavertest.multi.with({ config: mtls })]) {
    runner.test(
      "a call along the call graph works: main → Teller → Vault",
      app,
      Effect.gen(function*() {
        const teller = yield* Teller
        expect(yield* teller.balance()).toBe(42)
      })
    )

    runner.test(
      "a group calling a component none of its members requires is refused, with a clear error",
      app,
      Effect.gen(function*() {
        const error = yield* unrequiredCall
        expect(error).toMatchObject({ component: "security/Vault", method: "read", reason: "Unauthorized" })
        expect((error as { detail: string }).detail).toContain("may not call security/Vault")
      })
    )
  }

  it.live("the refusal is counted in the callee's metrics (RPC runner, one process)", () =>
    Effect.gen(function*() {
      const refused = Server.refusedCalls.pipe(
        Metric.tagged("component", "security/Vault"),
        Metric.tagged("caller_group", "weavertest")
      )
      const before = (yield* Metric.value(refused)).count
      yield* (weavertest.rpc.run(app, unrequiredCall) as Effect.Effect<unknown>)
      // At least once: the RPC runner runs every retriable call twice.
      assert.isAbove((yield* Metric.value(refused)).count - before, 0)
    }))

  it.live(
    "a stranger with the deployment id but no certificate, or another authority's, is refused",
    () =>
      Effect.gen(function*() {
        const { deployment, weavelet } = yield* deployHere(app, mtls)
        const teller = yield* Effect.provide(Teller, weavelet.clients("main") as Context.Context<Teller>)
        assert.strictEqual(yield* teller.balance(), 42)
        const port = yield* vaultPort(deployment.deployer)
        const hello = Wire.encodeHello({ version: Wire.version, deploymentId: deployment.deployer.deploymentId })

        // Plain TCP and the right deployment id: the server reads no frame, answers none, and closes.
        const plain = yield* exchange(Net.connect({ host: "127.0.0.1", port }), hello, "connect")
        assert.isTrue(plain.closed)
        assert.isFalse(plain.received.includes(hello.subarray(4, 9)), "no hello back")

        // TLS with a certificate of another authority, naming the main group.
        const stranger = yield* Certificates.makeAuthority("stranger")
        const forged = yield* stranger.issue({ group: "main", components: ["main"] })
        const options = Certificates.clientOptions(forged, "security/Vault")
        const tls = yield* exchange(
          Tls.connect({ ...options, host: "127.0.0.1", port, checkServerIdentity: () => undefined }),
          hello,
          "secureConnect"
        )
        assert.isTrue(tls.closed)
        assert.isFalse(tls.connected && tls.received.length > 0, "nothing served to a forged certificate")
      }).pipe(Effect.scoped),
    120_000
  )

  it.live(
    "without [multi] mtls (the default): plain TCP, no call-graph check, and a stranger with the deployment id is served",
    () =>
      Effect.gen(function*() {
        const { deployment, weavelet } = yield* deployHere(app)
        assert.isUndefined(yield* deployment.deployer.credentials("main"))
        // main never resolved Vault, yet Vault serves it: nothing authorizes by the call graph.
        const vault = Context.unsafeGet(weavelet.clients("main") as Context.Context<Vault>, Vault)
        assert.strictEqual(yield* vault.read(), 42)
        const port = yield* vaultPort(deployment.deployer)

        // Any local process that knows the deployment id gets the hello back, i.e. may call.
        const hello = Wire.encodeHello({ version: Wire.version, deploymentId: deployment.deployer.deploymentId })
        const plain = yield* exchange(Net.connect({ host: "127.0.0.1", port }), hello, "connect", "data")
        assert.isFalse(plain.closed)
        const frames: Array<number> = []
        new Wire.FrameReader(1 << 20, (type) => frames.push(type)).push(plain.received)
        assert.deepStrictEqual(frames, [Wire.FrameType.Hello])
      }).pipe(Effect.scoped),
    120_000
  )
})

/** The port of a ready replica of Vault. */
const vaultPort = (deployer: { readonly groups: Effect.Effect<ReadonlyArray<DeployedGroup>> }) =>
  Effect.map(deployer.groups, (groups) => {
    const address = groups.filter((g) => g.components.includes("security/Vault"))
      .flatMap((g) => g.replicas).find((r) => r.address !== undefined)?.address
    assert.isDefined(address, "a ready Vault replica")
    return Number(address!.slice(address!.lastIndexOf(":") + 1))
  })

interface DeployedGroup {
  readonly components: ReadonlyArray<string>
  readonly replicas: ReadonlyArray<{ readonly address?: string | undefined }>
}

/**
 * Sends `hello` once `event` fires; resolves with what came back when the server closes (or, with
 * `until = "data"`, when its first bytes arrive), or after 5 s.
 */
const exchange = (
  socket: Net.Socket,
  hello: Buffer,
  event: "connect" | "secureConnect",
  until: "close" | "data" = "close"
) =>
  Effect.async<{ readonly closed: boolean; readonly connected: boolean; readonly received: Buffer }>((resume) => {
    const chunks: Array<Buffer> = []
    let connected = false
    let finished = false
    const done = (closed: boolean) => {
      if (finished) return
      finished = true
      clearTimeout(timer)
      socket.destroy()
      resume(Effect.succeed({ closed, connected, received: Buffer.concat(chunks) }))
    }
    const timer = setTimeout(() => done(false), 5_000)
    socket.once(event, () => {
      connected = true
      socket.write(hello)
    })
    socket.on("data", (chunk: Buffer) => {
      chunks.push(chunk)
      if (until === "data") done(false)
    })
    socket.on("error", () => undefined)
    socket.on("close", () => done(true))
  })
