/**
 * The README's "Conformance kit for transport authors" example, typechecked
 * and run: a transport of one's own (here the RPC transport over a loopback
 * socket, without the RPC runner's duplicated calls) made into a runner and
 * put through the kit.
 */
import { Transport } from "@effect-weaver/core"
import * as TransportLocal from "@effect-weaver/transport-local/TransportLocal"
import * as TransportRpc from "@effect-weaver/transport-rpc/TransportRpc"
import { Conformance, weavertest } from "@effect-weaver/weavertest"
import { assert, describe, it } from "@effect/vitest"
import { Layer } from "effect"

const MyTransport = {
  layer: Layer.scoped(Transport.Transport, TransportRpc.makeTest({ duplicateRetriable: false }))
}

// The README's example from here on.
const mine = weavertest.makeRunner({ name: "Mine", transport: MyTransport.layer })
weavertest.conformance([mine])

// Every case but one skipped: registered as skipped tests ("Skipping/<case>"), one run.
weavertest.conformance([weavertest.makeRunner({ name: "Skipping", transport: TransportLocal.layer })], {
  skip: Conformance.cases.filter((name) => name !== "a method with a payload returns its result")
})

describe("weavertest.conformance options", () => {
  it("skip names cases, and a name that is not a case is refused", () => {
    assert.include(Conformance.cases, "calls with the same routeBy key reach the same replica")
    assert.throws(() => weavertest.conformance([], { skip: ["no such case"] }), /no case named "no such case"/)
  })
})
