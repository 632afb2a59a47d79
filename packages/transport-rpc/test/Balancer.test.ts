import { Balancer } from "@effect-weaver/transport-rpc"
import { assert, describe, it } from "@effect/vitest"

const owners = (replicas: ReadonlyArray<string>) => {
  const table = Balancer.assign(replicas)
  return Array.from(table, (i) => replicas[i]!)
}

describe("Balancer", () => {
  it("assigns slices evenly enough", () => {
    const replicas = ["10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1", "10.0.0.4:1"]
    const counts = new Map<string, number>()
    for (const owner of owners(replicas)) counts.set(owner, (counts.get(owner) ?? 0) + 1)
    const fair = Balancer.sliceCount / replicas.length
    for (const replica of replicas) {
      const count = counts.get(replica) ?? 0
      assert.isAbove(count, fair * 0.7, replica)
      assert.isBelow(count, fair * 1.3, replica)
    }
  })

  it("does not depend on the order replicas are listed in", () => {
    assert.deepStrictEqual(owners(["a:1", "b:1", "c:1"]), owners(["c:1", "a:1", "b:1"]))
  })

  it("a new replica takes only its share of slices, all from the others", () => {
    const before = owners(["a:1", "b:1", "c:1"])
    const after = owners(["a:1", "b:1", "c:1", "d:1"])
    let moved = 0
    for (let i = 0; i < before.length; i++) {
      if (before[i] !== after[i]) {
        moved++
        assert.strictEqual(after[i], "d:1")
      }
    }
    assert.isBelow(moved / Balancer.sliceCount, 0.33)
    assert.isAbove(moved / Balancer.sliceCount, 0.17)
  })

  it("a replica that goes away moves only its own slices", () => {
    const before = owners(["a:1", "b:1", "c:1", "d:1"])
    const after = owners(["a:1", "b:1", "d:1"])
    for (let i = 0; i < before.length; i++) {
      if (before[i] !== "c:1") assert.strictEqual(after[i], before[i])
    }
  })

  it("routes a key to its owner when usable, otherwise round-robin", () => {
    const balancer = new Balancer.Balancer<string>((s) => s)
    balancer.update(["a:1", "b:1", "c:1"])
    const owner = balancer.owner("key-7")!
    for (let i = 0; i < 5; i++) assert.strictEqual(balancer.pick("key-7", () => true), owner)
    const other = balancer.pick("key-7", (r) => r !== owner)
    assert.notStrictEqual(other, owner)
    assert.isDefined(other)
    const picks = new Set(Array.from({ length: 3 }, () => balancer.pick(undefined, () => true)))
    assert.strictEqual(picks.size, 3)
    assert.isUndefined(balancer.pick(undefined, () => false))
  })

  it("strings and numbers are different keys", () => {
    assert.notStrictEqual(Balancer.hashKey("1"), Balancer.hashKey(1))
  })
})
