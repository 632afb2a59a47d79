/**
 * The status server of `weaver multi deploy`: metrics of every replica
 * merged, profiles of one replica per group scaled and merged, health; its
 * address in the registry. Deploys test/fixtures/greeter (main + a Greeter
 * group counting greetings by language).
 */
import { Profiling, Prometheus, StatusServer } from "@effect-weaver/runtime"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Path from "node:path"
import * as Status from "../src/Status.js"
import { deploy, entry, firstAnswer, get, proxyAddress, replicaPids, root, waitUntil } from "./utils/deployment.js"
import type { Deployment } from "./utils/deployment.js"

const greeterToml = `
[serviceweaver]
name = "greeter"
binary = "${Path.join(root, "packages/deployer-multi/test/fixtures/greeter/main.ts")}"

[multi]
listeners.greeter = { address = "127.0.0.1:0" }
replicas = 2
`

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

const getBytes = (url: string) =>
  Effect.promise(async () => {
    const response = await fetch(url, { signal: AbortSignal.timeout(60_000) })
    return { status: response.status, bytes: new Uint8Array(await response.arrayBuffer()) }
  })

describe.sequential("the status server of weaver multi deploy", () => {
  const scope = Effect.runSync(Scope.make())
  let deployment: Deployment
  let proxy: string
  let status: string

  beforeAll(async () => {
    deployment = await Effect.runPromise(deploy(greeterToml).pipe(Scope.extend(scope)))
    proxy = await Effect.runPromise(proxyAddress(deployment, "greeter"))
    status = await Effect.runPromise(
      waitUntil("the status address", deployment, () => entry(deployment)?.statusAddress)
    )
  }, 120_000)
  afterAll(() => Effect.runPromise(Scope.close(scope, Exit.void)), 60_000)

  it.live(
    "after 100 requests, the merged metrics count exactly 100 calls, 100 HTTP requests and the greetings by language",
    () =>
      Effect.gen(function*() {
        assert.match(status, /^127\.0\.0\.1:\d+$/)
        const health = yield* get(`http://${status}${StatusServer.healthzPath}`)
        assert.deepStrictEqual(health, { status: 200, body: "OK" })

        const first = yield* firstAnswer(deployment, `http://${proxy}/greet?name=a&lang=en`)
        assert.deepStrictEqual(first, { status: 200, body: "Hello, a!" }, deployment.output())
        const answers = yield* Effect.forEach(
          Array.from({ length: 99 }, (_, i) => i),
          (i) => get(`http://${proxy}/greet?name=n${i}&lang=${i < 59 ? "en" : "fr"}`),
          { concurrency: 4 }
        )
        assert.deepStrictEqual(answers.filter((a) => a.status !== 200), [])

        const page = yield* get(`http://${status}${Prometheus.path}`)
        assert.strictEqual(page.status, 200)
        assert.include(page.body, `- targets: ['${status}']`)
        const calls = series(page.body, "serviceweaver_method_count")
        assert.strictEqual(sum(calls, { component: "greeter/Greeter", method: "greet", caller: "main" }), 100)
        assert.strictEqual(sum(series(page.body, "serviceweaver_http_request_count"), { label: "greeter" }), 100)
        const greetings = series(page.body, "greeter_greetings")
        assert.strictEqual(sum(greetings, { language: "en" }), 60)
        assert.strictEqual(sum(greetings, { language: "fr" }), 40)
        const deploymentId = entry(deployment)!.deploymentId
        for (const s of [...calls, ...greetings]) {
          assert.strictEqual(s.labels.serviceweaver_app, "greeter")
          assert.strictEqual(s.labels.serviceweaver_version, deploymentId)
        }
        // Greetings are counted in the Greeter replicas, calls in main's: labelled by different replicas.
        const nodesOf = (list: ReadonlyArray<Series>) => new Set(list.map((s) => s.labels.serviceweaver_node))
        for (const node of nodesOf(greetings)) assert.isFalse(nodesOf(calls).has(node))

        const json = yield* get(`http://${status}${StatusServer.metricsPath}`)
        const snapshots = Schema.decodeUnknownSync(Schema.parseJson(StatusServer.MetricsResponse))(json.body)
        const total = snapshots
          .filter((s) => s.name === "serviceweaver_method_count" && s.labels.component === "greeter/Greeter")
          .reduce((n, s) => n + (s.type === "histogram" ? s.count : s.value), 0)
        assert.strictEqual(total, 100)
      }),
    120_000
  )

  it.live(
    "a CPU profile under load merges one replica of each group, scaled by its 2 replicas and labelled by group",
    () =>
      Effect.gen(function*() {
        // The profile is scaled by the replicas that are ready: wait until the status server reaches both of each
        // group (main's and Greeter's). The registry lists a replica's pid before it is ready.
        yield* waitUntil("2 replicas of each group", deployment, () => replicaPids(deployment).length >= 4 || undefined)
        // A replica shows in the metrics once it has recorded one; a replica that joined after the last calls has not,
        // so calls keep going while we wait (routing spreads them over every ready replica).
        yield* Effect.gen(function*() {
          yield* Effect.forEach(
            Array.from({ length: 8 }, (_, i) => i),
            (i) => get(`http://${proxy}/greet?name=w${i}&lang=fr`),
            { concurrency: 2, discard: true }
          )
          const json = yield* get(`http://${status}${StatusServer.metricsPath}`)
          const snapshots = Schema.decodeUnknownSync(Schema.parseJson(StatusServer.MetricsResponse))(json.body)
          const ready = new Set(snapshots.map((s) => s.labels.serviceweaver_node)).size
          if (ready < 4) return yield* Effect.fail(new Error(`${ready} of 4 replicas ready`))
        }).pipe(Effect.retry({ schedule: Schedule.spaced("100 millis"), times: 300 }))
        let done = false
        const load = yield* Effect.fork(
          Effect.forEach(
            Array.from({ length: 2_000 }, (_, i) => i),
            (i) => done ? Effect.void : get(`http://${proxy}/greet?name=p${i}&lang=fr`),
            { concurrency: 4, discard: true }
          )
        )
        const answer = yield* getBytes(`http://${status}${Profiling.path}?type=cpu&duration=1s`)
        done = true
        yield* Fiber.join(load)
        assert.strictEqual(answer.status, 200, new TextDecoder().decode(answer.bytes))
        const profile = yield* Profiling.decode(answer.bytes)
        const strings = profile.stringTable.strings
        assert.deepStrictEqual(profile.sampleType.map((t) => strings[Number(t.type)]), ["sample", "wall", "cpu"])
        assert.isAbove(profile.sample.length, 0)
        const groups = new Set<string>()
        for (const sample of profile.sample) {
          for (const label of sample.label) {
            if (strings[Number(label.key)] === Status.groupLabel) groups.add(strings[Number(label.str)]!)
          }
          // Every value was multiplied by the group's replica count.
          for (const value of sample.value) assert.strictEqual(Number(value) % 2, 0)
        }
        assert.deepStrictEqual([...groups].sort(), ["greeter/Greeter", "main"])

        const bad = yield* get(`http://${status}${Profiling.path}?type=mutex`)
        assert.deepStrictEqual(bad, { status: 400, body: `invalid profile type "mutex": expected one of cpu, heap` })
      }),
    120_000
  )
})
