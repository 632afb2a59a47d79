/**
 * The multi deployer's groups: `[multi] replicas` slots each, but one for a
 * group holding a singleton (main included, and whatever is co-located with
 * it).
 */
import { WeaverConfig } from "@effect-weaver/runtime"
import { assert, describe, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as Groups from "../src/internal/groups.js"

const config = Either.getOrThrow(WeaverConfig.parse(
  `[serviceweaver]\ncolocate = [["app/Leader", "app/Audit"]]\n[multi]\nreplicas = 3\n`
))

describe("Groups", () => {
  it("a group holding a singleton has one slot, whatever [multi] replicas says; the others have replicas", () => {
    const groups = Groups.make(config, [], ["app/Leader"])
    const slots = (component: string) => groups.of(component).slots.length
    assert.strictEqual(slots("app/Leader"), 1)
    assert.strictEqual(slots("app/Audit"), 1, "co-located with the singleton")
    assert.deepStrictEqual(groups.of("app/Audit").singletons, ["app/Leader"])
    assert.strictEqual(slots("app/Cart"), 3)
    assert.strictEqual(slots(Groups.mainGroup), 3)
    assert.deepStrictEqual(groups.of("app/Cart").singletons, [])
  })

  it("a singleton main runs one replica, and so does main co-located with a singleton", () => {
    const groups = Groups.make(config, [], [Groups.mainGroup])
    assert.strictEqual(groups.of(Groups.mainGroup).slots.length, 1)
    assert.strictEqual(groups.of("app/Leader").slots.length, 3)
    const withMain = Either.getOrThrow(WeaverConfig.parse(`[serviceweaver]\ncolocate = [["main", "app/Leader"]]\n`))
    const colocated = Groups.make(withMain, [], ["app/Leader"])
    assert.strictEqual(colocated.of("app/Leader"), colocated.of(Groups.mainGroup))
    assert.strictEqual(colocated.of(Groups.mainGroup).slots.length, 1)
  })
})
