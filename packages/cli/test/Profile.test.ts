import { Profiling } from "@effect-weaver/runtime"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import { closed, run } from "./utils/cli.js"
import { deployHello, sendHellos } from "./utils/hello.js"

describe("weaver single profile", () => {
  it.live(
    "writes a CPU and a heap profile of a deployed hello under the temporary directory and prints their paths",
    () =>
      Effect.gen(function*() {
        const hello = yield* deployHello
        yield* sendHellos(hello.address, 3)
        const prefix = hello.deploymentId.slice(0, 8)

        const cpu = yield* run(["single", "profile", "--duration=500ms", prefix], hello.env)
        assert.strictEqual(cpu.code, 0, cpu.stderr)
        const file = cpu.stdout.trim()
        yield* Effect.addFinalizer(() => Effect.promise(() => Fs.rm(file, { force: true })))
        assert.strictEqual(Path.dirname(file), Os.tmpdir())
        assert.match(Path.basename(file), new RegExp(`^hello-${prefix}-cpu-[0-9a-f]{8}\\.pb\\.gz$`))
        const profile = yield* Profiling.decode(new Uint8Array(yield* Effect.promise(() => Fs.readFile(file))))
        assert.deepStrictEqual(
          profile.sampleType.map((t) => profile.stringTable.strings[Number(t.type)]),
          ["sample", "wall", "cpu"]
        )
        assert.isAbove(profile.sample.length, 0)

        const heap = yield* run(["single", "profile", "--type=heap", "--duration=100ms", hello.deploymentId], hello.env)
        assert.strictEqual(heap.code, 0, heap.stderr)
        const heapFile = heap.stdout.trim()
        yield* Effect.addFinalizer(() => Effect.promise(() => Fs.rm(heapFile, { force: true })))
        const heapProfile = yield* Profiling.decode(new Uint8Array(yield* Effect.promise(() => Fs.readFile(heapFile))))
        assert.deepStrictEqual(
          heapProfile.sampleType.map((t) => heapProfile.stringTable.strings[Number(t.type)]),
          ["inuse_objects", "inuse_space"]
        )

        const [badType, badDuration, unknown] = yield* Effect.all([
          run(["single", "profile", "--type=mutex", prefix], hello.env),
          run(["single", "profile", "--duration=5", prefix], hello.env),
          run(["single", "profile", "ffffffff"], hello.env)
        ], { concurrency: 3 })
        assert.strictEqual(badType.code, 1)
        assert.strictEqual(badType.stderr.trim(), `weaver: invalid profile type "mutex": expected one of cpu, heap`)
        assert.strictEqual(badDuration.code, 1)
        assert.strictEqual(
          badDuration.stderr.trim(),
          `weaver: invalid duration "5": expected a positive duration such as "30s", "1m" or "500ms"`
        )
        assert.strictEqual(unknown.code, 1)
        assert.strictEqual(
          unknown.stderr.trim(),
          `weaver: no live weaver single deployment "ffffffff"; live deployments: ${hello.deploymentId} (hello)`
        )
        assert.strictEqual(unknown.stdout, "")

        hello.deploy.process.kill("SIGTERM")
        assert.strictEqual(yield* closed(hello.deploy, "15 seconds"), 0)
      }).pipe(Effect.scoped),
    { timeout: 180_000 }
  )
})
