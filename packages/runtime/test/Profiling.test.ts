import { Profiling, StatusServer } from "@effect-weaver/runtime"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber, Option } from "effect"
import * as Zlib from "node:zlib"
import * as Format from "pprof-format"

/** Spins for `millis` without yielding; the name is what the profile must show. */
function profilingTestBusyLoop(millis: number): number {
  const end = Date.now() + millis
  let x = 0
  while (Date.now() < end) x += Math.sqrt(x + 1)
  return x
}

const name = (p: Format.Profile, i: Format.Profile["period"]) => p.stringTable.strings[Number(i)] ?? ""

const sampleTypes = (p: Format.Profile) => p.sampleType.map((t) => `${name(p, t.type)}/${name(p, t.unit)}`)

/** The sum of the `index`th value over the samples whose stack includes a function called one of `fns`. */
const valueIn = (p: Format.Profile, fns: ReadonlyArray<string>, index: number) => {
  const functions = new Map(p.function.map((f) => [Number(f.id), name(p, f.name)]))
  const locations = new Map(
    p.location.map((l) => [Number(l.id), l.line.map((line) => functions.get(Number(line.functionId)))])
  )
  let sum = 0
  for (const s of p.sample) {
    if (s.locationId.some((id) => locations.get(Number(id))?.some((f) => f !== undefined && fns.includes(f)))) {
      sum += Number(s.value[index])
    }
  }
  return sum
}

const total = (p: Format.Profile, index: number) => p.sample.reduce((sum, s) => sum + Number(s.value[index]), 0)

/**
 * A CPU profile of this process while `profilingTestBusyLoop` spins. V8 may inline the loop into this generator
 * (it did in about 1 run in 6 on a loaded machine), and the profile then names the generator: the functions that
 * burn the CPU are {@link busyFunctions}.
 */
const profileBusyLoop = Effect.gen(function* profilingTestSpinner() {
  const fiber = yield* Effect.fork(Profiling.collect({ type: "cpu", duration: "600 millis" }))
  // Spins in slices until the profile is done, so the loop fills the profile's window however late the profiler
  // starts on a loaded machine (a single 300 ms spin could end before it did).
  while (Option.isNone(yield* Fiber.poll(fiber))) {
    profilingTestBusyLoop(20)
    yield* Effect.sleep("1 millis")
  }
  return yield* Fiber.join(fiber)
})

const busyFunctions = ["profilingTestBusyLoop", "profilingTestSpinner"]

/** A small synthetic profile: one stack `leaf <- root` with the given values. */
const synthetic = (leaf: string, values: ReadonlyArray<number>) => {
  const strings = new Format.StringTable()
  const fn = (id: number, n: string) =>
    new Format.Function({ id, name: strings.dedup(n), filename: strings.dedup("f.js") })
  return new Format.Profile({
    sampleType: [
      { type: strings.dedup("sample"), unit: strings.dedup("count") },
      { type: strings.dedup("wall"), unit: strings.dedup("nanoseconds") }
    ],
    periodType: { type: strings.dedup("wall"), unit: strings.dedup("nanoseconds") },
    period: 1000,
    function: [fn(1, leaf), fn(2, "root")],
    location: [
      new Format.Location({ id: 1, line: [{ functionId: 1, line: 3 }] }),
      new Format.Location({ id: 2, line: [{ functionId: 2, line: 9 }] })
    ],
    sample: [new Format.Sample({ locationId: [1, 2], value: [...values] })],
    stringTable: strings,
    timeNanos: 5_000,
    durationNanos: 100
  })
}

describe("Profiling.collect", () => {
  it.live("returns a gzipped pprof CPU profile in which a busy loop carries CPU time", () =>
    Effect.gen(function*() {
      const bytes = yield* profileBusyLoop
      assert.deepStrictEqual([bytes[0], bytes[1]], [0x1f, 0x8b], "gzip magic")
      const profile = Format.Profile.decode(Zlib.gunzipSync(bytes))
      assert.deepStrictEqual(sampleTypes(profile), ["sample/count", "wall/nanoseconds", "cpu/nanoseconds"])
      const cpu = valueIn(profile, busyFunctions, 2)
      // Most of 600 ms spinning; allow for a loaded machine stealing CPU.
      assert.isAbove(cpu, 50_000_000, `cpu ns in the busy loop: ${cpu}`)
      assert.isAbove(valueIn(profile, busyFunctions, 0), 0)
    }))

  it.live("returns a heap profile of the objects allocated and kept during the window", () =>
    Effect.gen(function*() {
      const kept: Array<{ readonly i: number; readonly s: string }> = []
      const fiber = yield* Effect.fork(Profiling.collect({ type: "heap", duration: "300 millis" }))
      yield* Effect.sleep("50 millis")
      for (let i = 0; i < 200_000; i++) kept.push({ i, s: `value-${i}` })
      const profile = yield* Profiling.decode(yield* Fiber.join(fiber))
      assert.deepStrictEqual(sampleTypes(profile), ["inuse_objects/count", "inuse_space/bytes"])
      assert.isAbove(total(profile, 1), 1_000_000, `sampled live bytes; kept ${kept.length} objects`)
    }))

  it.live("refuses a second profile of the same type while one is running", () =>
    Effect.gen(function*() {
      const first = yield* Effect.fork(Profiling.collect({ type: "cpu", duration: "300 millis" }))
      yield* Effect.sleep("20 millis")
      const second = yield* Effect.exit(Profiling.collect({ type: "cpu", duration: "10 millis" }))
      assert.isTrue(Exit.isFailure(second))
      const error = yield* Effect.flip(Profiling.collect({ type: "cpu", duration: "10 millis" }))
      assert.strictEqual(error.reason, "busy")
      assert.strictEqual(error.message, "a cpu profile is already being collected in this process")
      yield* Fiber.join(first)
      // Once the first is done, profiling works again.
      const again = yield* Profiling.decode(yield* Profiling.collect({ type: "cpu", duration: "20 millis" }))
      assert.strictEqual(again.sampleType.length, 3)
    }))
})

describe("Profiling.merge", () => {
  it.effect("sums samples with the same stack, keeps distinct stacks, and scales values", () =>
    Effect.gen(function*() {
      const a = synthetic("leaf", [2, 2000])
      const b = synthetic("leaf", [3, 3000])
      const c = synthetic("other", [1, 1000])
      const merged = yield* Profiling.decode(
        yield* Profiling.merge([a, b, c].map((p) => Zlib.gzipSync(p.encode())), { scale: 2 })
      )
      assert.deepStrictEqual(sampleTypes(merged), ["sample/count", "wall/nanoseconds"])
      assert.strictEqual(merged.sample.length, 2)
      assert.strictEqual(valueIn(merged, ["leaf"], 1), 2 * (2000 + 3000))
      assert.strictEqual(valueIn(merged, ["other"], 1), 2 * 1000)
      assert.strictEqual(valueIn(merged, ["root"], 0), 2 * (2 + 3 + 1))
      // "root" is one function, "leaf" and "other" one each.
      assert.deepStrictEqual(merged.function.map((f) => name(merged, f.name)).sort(), ["leaf", "other", "root"])
      assert.strictEqual(Number(merged.timeNanos), 5_000)
      assert.strictEqual(Number(merged.durationNanos), 300)
    }))

  it.live("merging two collected CPU profiles sums their samples", () =>
    Effect.gen(function*() {
      const one = yield* profileBusyLoop
      const two = yield* profileBusyLoop
      const [p1, p2] = [yield* Profiling.decode(one), yield* Profiling.decode(two)]
      const merged = yield* Profiling.decode(yield* Profiling.merge([one, two]))
      for (const index of [0, 1, 2]) {
        assert.strictEqual(total(merged, index), total(p1, index) + total(p2, index), `value ${index}`)
      }
      assert.strictEqual(
        valueIn(merged, busyFunctions, 2),
        valueIn(p1, busyFunctions, 2) + valueIn(p2, busyFunctions, 2)
      )
    }))

  it.effect("refuses profiles of different types, no profiles, and bytes that are not pprof", () =>
    Effect.gen(function*() {
      const strings = new Format.StringTable()
      const heapLike = new Format.Profile({
        sampleType: [{ type: strings.dedup("inuse_space"), unit: strings.dedup("bytes") }],
        stringTable: strings
      })
      const mixed = yield* Effect.flip(
        Profiling.merge([synthetic("leaf", [1, 1]).encode(), heapLike.encode()])
      )
      assert.strictEqual(
        mixed.message,
        "profile 2 has sample types inuse_space/bytes, profile 1 has sample/count,wall/nanoseconds: they cannot be merged"
      )
      assert.strictEqual((yield* Effect.flip(Profiling.merge([]))).message, "no profiles to merge")
      const garbage = yield* Effect.flip(Profiling.merge([Zlib.gzipSync(Buffer.from("not a profile at all"))]))
      assert.strictEqual(garbage.reason, "input")
      assert.match(garbage.message, /^not a pprof profile: /)
    }))
})

describe("Profiling.parseDuration", () => {
  it.effect("reads Go durations and rejects others by name", () =>
    Effect.gen(function*() {
      assert.strictEqual(Duration.toMillis(yield* Profiling.parseDuration("30s")), 30_000)
      assert.strictEqual(Duration.toMillis(yield* Profiling.parseDuration("1m30s")), 90_000)
      assert.strictEqual(Duration.toMillis(yield* Profiling.parseDuration("250ms")), 250)
      assert.strictEqual(Duration.toMillis(yield* Profiling.parseDuration("1.5h")), 5_400_000)
      for (const bad of ["", "30", "5 seconds", "0s", "-1s", "1d"]) {
        const error = yield* Effect.flip(Profiling.parseDuration(bad))
        assert.strictEqual(
          error.message,
          `invalid duration ${JSON.stringify(bad)}: expected a positive duration such as "30s", "1m" or "500ms"`
        )
      }
    }))
})

describe("the status server's profile endpoint", () => {
  it.live("serves a profile of the process and names a bad type or duration", () =>
    Effect.gen(function*() {
      const server = yield* StatusServer.make({ app: "app", deploymentId: "d1", replicaId: "r1" })
      const url = `http://${server.address}${Profiling.path}`
      const response = yield* Effect.promise(() => fetch(`${url}?type=cpu&duration=200ms`))
      assert.strictEqual(response.status, 200)
      assert.strictEqual(response.headers.get("content-type"), "application/octet-stream")
      const bytes = new Uint8Array(yield* Effect.promise(() => response.arrayBuffer()))
      assert.strictEqual((yield* Profiling.decode(bytes)).sampleType.length, 3)

      const heap = yield* Effect.promise(() => fetch(`${url}?type=heap&duration=50ms`))
      assert.strictEqual(heap.status, 200)
      const heapProfile = yield* Profiling.decode(new Uint8Array(yield* Effect.promise(() => heap.arrayBuffer())))
      assert.deepStrictEqual(sampleTypes(heapProfile), ["inuse_objects/count", "inuse_space/bytes"])

      const badType = yield* Effect.promise(() => fetch(`${url}?type=mutex`))
      assert.strictEqual(badType.status, 400)
      assert.strictEqual(
        yield* Effect.promise(() => badType.text()),
        `invalid profile type "mutex": expected one of cpu, heap`
      )
      const badDuration = yield* Effect.promise(() => fetch(`${url}?duration=soon`))
      assert.strictEqual(badDuration.status, 400)
      assert.include(yield* Effect.promise(() => badDuration.text()), `invalid duration "soon"`)
    }).pipe(Effect.scoped))
})
