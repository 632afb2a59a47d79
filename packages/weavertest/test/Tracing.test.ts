/**
 * Tracing under the in-process runners: a traced call chain
 * (test → Caller.shout → Upper.upper) is one trace, with client/server spans
 * over the socket under RPC and internal spans under Local.
 */
import { Tracing } from "@effect-weaver/runtime"
import { Runner } from "@effect-weaver/weavertest"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { app, Caller } from "../src/internal/conformanceApp.js"

const kinds = { Local: ["internal"], RPC: ["client", "server"] } as const

describe("Tracing under weavertest runners", () => {
  for (const runner of [Runner.local, Runner.rpc]) {
    it.live(`${runner.name}/a traced call chain is one trace`, () => {
      const store = Tracing.makeStore()
      const layer = Tracing.layer({ app: "conformance", deploymentId: "d", replicaId: "r", otlpEndpoint: false, store })
      return Effect.gen(function*() {
        yield* runner.run(
          app,
          Effect.gen(function*() {
            const caller = yield* Caller
            assert.strictEqual(yield* caller.shout("hi"), "HI!")
          }).pipe(Effect.withSpan("test"))
        )
        const [trace, ...others] = store.traces()
        assert.isDefined(trace)
        assert.deepStrictEqual(others, [], "one trace")
        const spans = store.trace(trace!.traceId)
        const byId = new Map(spans.map((s) => [s.spanId, s]))
        const root = spans.filter((s) => s.parentSpanId === undefined || !byId.has(s.parentSpanId))
        assert.deepStrictEqual(root.map((s) => s.name), ["test"])
        const expected = kinds[runner.name as keyof typeof kinds]
        for (const name of ["conformance/Caller.shout", "conformance/Upper.upper"]) {
          const named = spans.filter((s) => s.name === name)
          assert.deepStrictEqual([...new Set(named.map((s) => s.kind))].sort(), [...expected], name)
        }
        // Upper.upper is called from inside Caller.shout: its spans descend from shout's.
        const ancestors = (span: Tracing.Span): Array<string> => {
          const parent = span.parentSpanId === undefined ? undefined : byId.get(span.parentSpanId)
          return parent === undefined ? [] : [parent.name, ...ancestors(parent)]
        }
        for (const span of spans.filter((s) => s.name === "conformance/Upper.upper")) {
          assert.include(ancestors(span), "conformance/Caller.shout")
          assert.strictEqual(span.attributes.caller, "conformance/Caller")
        }
      }).pipe(Effect.provide(layer))
    })
  }
})
