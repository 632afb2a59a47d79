/**
 * Spans across processes: the test process plays main (client span), a
 * replica process runs the Reverser (server span and a user span) and sends
 * its finished spans to the deployer's trace store over the control socket.
 */
import { Weaver } from "@effect-weaver/core"
import { Tracing } from "@effect-weaver/runtime"
import { assert, describe, it } from "@effect/vitest"
import type { Context } from "effect"
import { Effect } from "effect"
import { app, TracedReverser } from "./fixtures/tracing.js"
import { deployHere } from "./utils/multi.js"

describe("Tracing under multiprocess", () => {
  it.live("a replica's server span reaches the deployer's store, parented on the caller's client span", () => {
    const local = Tracing.makeStore()
    return Effect.gen(function*() {
      const { deployment, weavelet } = yield* deployHere(app)
      const reverser = yield* Effect.provide(
        TracedReverser,
        weavelet.clients(Weaver.mainName) as Context.Context<TracedReverser>
      )
      assert.strictEqual(yield* reverser.reverse("abc").pipe(Effect.withSpan("test")), "cba")
      const spans = local.traces().flatMap((t) => local.trace(t.traceId))
      assert.deepStrictEqual(spans.map((s) => s.name).sort(), ["test", "tracing/Reverser.reverse"], "no control spans")
      const client = spans.find((s) => s.kind === "client")
      assert.isDefined(client)
      assert.strictEqual(client!.name, "tracing/Reverser.reverse")
      const remote = yield* waitFor(() => {
        const spans = deployment.deployer.traces.trace(client!.traceId)
        return spans.length >= 2 ? spans : undefined
      })
      const server = remote.find((s) => s.kind === "server")
      const inner = remote.find((s) => s.name === "reverse.inner")
      assert.isDefined(server)
      assert.strictEqual(server!.parentSpanId, client!.spanId)
      assert.strictEqual(inner?.parentSpanId, server!.spanId)
      assert.notStrictEqual(server!.pid, process.pid, "recorded in the replica's process")
      assert.notStrictEqual(server!.replicaId, client!.replicaId)
    }).pipe(
      Effect.scoped,
      Effect.provide(Tracing.layer({ app: "tracing", deploymentId: "test", replicaId: "main", store: local }))
    )
  }, 120_000)
})

/** Spans arrive about once a second; waits up to 10 s. */
const waitFor = <A>(poll: () => A | undefined) =>
  Effect.gen(function*() {
    for (let i = 0; i < 100; i++) {
      const value = poll()
      if (value !== undefined) return value
      yield* Effect.sleep("100 millis")
    }
    return assert.fail("the replica's spans did not reach the deployer within 10 s")
  })
