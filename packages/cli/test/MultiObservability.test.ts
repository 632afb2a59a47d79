/**
 * `weaver multi metrics` and `weaver multi profile` against a hello deployed
 * with `weaver multi deploy` (2 replicas of main and of hello/Reverser).
 */
import { Profiling } from "@effect-weaver/runtime"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import { run } from "./utils/cli.js"
import { deployMultiHello, sendHellos } from "./utils/hello.js"

interface Series {
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

/** The samples of metric `name` in a Prometheus text page. */
const series = (text: string, name: string): Array<Series> =>
  text.split("\n").flatMap((line) => {
    const match = /^(\w+)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (match === null || match[1] !== name) return []
    const labels: Record<string, string> = {}
    for (const [, key, value] of (match[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[key!] = value!
    return [{ labels, value: Number(match[3]) }]
  })

const sum = (list: ReadonlyArray<Series>, labels: Readonly<Record<string, string>>) =>
  list.filter((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((n, s) => n + s.value, 0)

describe("weaver multi metrics and profile", () => {
  it.live(
    "after 100 requests the merged metrics count 100 Reverser calls and 100 HTTP requests; a CPU profile covers both groups",
    () =>
      Effect.gen(function*() {
        const hello = yield* deployMultiHello
        yield* sendHellos(hello.address, 100)

        const metrics = yield* run(["multi", "metrics", "^serviceweaver_(method_count|http_request_count)$"], hello.env)
        assert.strictEqual(metrics.code, 0, metrics.stderr)
        const calls = series(metrics.stdout, "serviceweaver_method_count")
        assert.strictEqual(sum(calls, { component: "hello/Reverser", method: "reverse", caller: "main" }), 100)
        assert.strictEqual(sum(series(metrics.stdout, "serviceweaver_http_request_count"), { label: "hello" }), 100)
        assert.isTrue(calls.every((s) => s.labels.serviceweaver_version === hello.deploymentId))
        assert.notInclude(metrics.stdout, "serviceweaver_method_latency_micros")

        // Profile while requests keep coming.
        let done = false
        const load = yield* Effect.fork(
          Effect.forEach(
            Array.from({ length: 2_000 }, (_, i) => i),
            () => done ? Effect.void : sendHellos(hello.address, 1),
            { concurrency: 4, discard: true }
          )
        )
        const profiled = yield* run(["multi", "profile", "--duration=1s", hello.deploymentId.slice(0, 8)], hello.env)
        done = true
        yield* Fiber.join(load)
        assert.strictEqual(profiled.code, 0, profiled.stderr)
        const file = profiled.stdout.trim()
        yield* Effect.addFinalizer(() => Effect.promise(() => Fs.rm(file, { force: true })))
        assert.strictEqual(Path.dirname(file), Os.tmpdir())
        const profile = yield* Profiling.decode(new Uint8Array(yield* Effect.promise(() => Fs.readFile(file))))
        const strings = profile.stringTable.strings
        assert.deepStrictEqual(profile.sampleType.map((t) => strings[Number(t.type)]), ["sample", "wall", "cpu"])
        const groups = new Set(
          profile.sample.flatMap((sample) =>
            sample.label.filter((l) => strings[Number(l.key)] === "serviceweaver_group").map((l) =>
              strings[Number(l.str)]
            )
          )
        )
        assert.deepStrictEqual([...groups].sort(), ["hello/Reverser", "main"])
      }).pipe(Effect.scoped),
    { timeout: 240_000 }
  )
})
