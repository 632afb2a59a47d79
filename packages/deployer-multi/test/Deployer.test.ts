/**
 * `weaver multi deploy` of examples/hello, end to end: a deployer process,
 * replicas in their own processes, the listener proxy, the registry,
 * supervision, and cleanup when the deployer dies.
 */
import { Registry } from "@effect-weaver/runtime"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import { deploy, entry, firstAnswer, get, helloToml, proxyAddress, replicaPids, waitUntil } from "./utils/deployment.js"
import type { Deployment } from "./utils/deployment.js"

const pidsOf = (deployment: Deployment, component: string) =>
  entry(deployment)?.components.find((c) => c.name === component)?.pids ?? []

describe.sequential("weaver multi deploy of hello", () => {
  const scope = Effect.runSync(Scope.make())
  let deployment: Deployment
  let url: string

  beforeAll(async () => {
    deployment = await Effect.runPromise(deploy(helloToml).pipe(Scope.extend(scope)))
    url = `http://${await Effect.runPromise(proxyAddress(deployment, "hello"))}/hello?name=Weaver`
  }, 120_000)
  afterAll(() => Effect.runPromise(Scope.close(scope, Exit.void)), 60_000)

  it.live(
    "answers through the listener proxy, and status lists 2 replica pids for main and hello/Reverser",
    () =>
      Effect.gen(function*() {
        // The first request also starts the Reverser group: its replicas start on first use.
        const first = yield* firstAnswer(deployment, url)
        assert.strictEqual(first.status, 200, `${first.body}\n--- deployer\n${deployment.output()}`)
        assert.strictEqual(first.body, "Hello, revaeW!\n")
        const components = yield* waitUntil("2 replicas of each group", deployment, () => {
          const main = pidsOf(deployment, "main")
          const reverser = pidsOf(deployment, "hello/Reverser")
          return main.length === 2 && reverser.length === 2 ? { main, reverser } : undefined
        })
        assert.strictEqual(new Set([...components.main, ...components.reverser]).size, 4, "4 distinct processes")
        assert.isFalse(components.main.includes(deployment.deployer.pid!), "main does not run in the deployer")
        assert.strictEqual(entry(deployment)?.tool, "multi")
      }),
    120_000
  )

  it.live(
    "a Reverser replica killed with SIGKILL under load fails no request and is restarted with a new pid",
    () =>
      Effect.gen(function*() {
        const [victim, survivor] = yield* waitUntil("2 Reverser replicas", deployment, () => {
          const pids = pidsOf(deployment, "hello/Reverser")
          return pids.length === 2 ? pids : undefined
        })
        const results: Array<{ readonly status: number; readonly body: string }> = []
        const load = Effect.forEach(
          Array.from({ length: 120 }, (_, i) => i),
          (i) => Effect.map(get(url.replace("Weaver", `Weaver${i}`)), (r) => results.push(r)),
          { concurrency: 4, discard: true }
        )
        const fiber = yield* Effect.fork(load)
        yield* waitUntil("20 answers", deployment, () => results.length >= 20 ? true : undefined)
        process.kill(victim!, "SIGKILL")
        yield* Fiber.join(fiber)
        assert.strictEqual(results.length, 120)
        const failed = results.filter((r) => r.status !== 200 || !r.body.startsWith("Hello, "))
        assert.deepStrictEqual(failed, [], `failed requests\n--- deployer\n${deployment.output()}`)
        const restarted = yield* waitUntil("the replica's restart", deployment, () => {
          const pids = pidsOf(deployment, "hello/Reverser")
          return pids.length === 2 && !pids.includes(victim!) ? pids : undefined
        })
        assert.include(restarted, survivor!)
        assert.isFalse(Registry.isAlive(victim!))
        // The restarted replica serves too: enough calls reach both.
        for (let i = 0; i < 10; i++) {
          const answer = yield* get(url)
          assert.strictEqual(answer.status, 200, answer.body)
        }
      }),
    120_000
  )
})

it.live("no replica survives its deployer killed with SIGKILL", () =>
  Effect.gen(function*() {
    const deployment = yield* deploy(helloToml)
    const url = `http://${yield* proxyAddress(deployment, "hello")}/hello?name=x`
    const answer = yield* firstAnswer(deployment, url)
    assert.strictEqual(answer.status, 200, `${answer.body}\n--- deployer\n${deployment.output()}`)
    const pids = yield* waitUntil("4 replicas", deployment, () => {
      const pids = replicaPids(deployment)
      return pids.length === 4 ? pids : undefined
    })
    deployment.deployer.kill("SIGKILL")
    yield* waitUntil(
      `replicas ${pids.join(", ")} to exit`,
      deployment,
      () => pids.every((pid) => !Registry.isAlive(pid)) ? true : undefined,
      "30 seconds"
    )
  }).pipe(Effect.scoped), 120_000)

it.live(
  "colocate = [[\"main\", \"hello/Reverser\"]] runs main and Reverser in the same processes",
  () =>
    Effect.gen(function*() {
      const deployment = yield* deploy(`${helloToml}\n`.replace(
        `name = "hello"\n`,
        `name = "hello"\ncolocate = [["main", "hello/Reverser"]]\n`
      ))
      const url = `http://${yield* proxyAddress(deployment, "hello")}/hello?name=Weaver`
      const first = yield* firstAnswer(deployment, url)
      assert.strictEqual(first.status, 200, `${first.body}\n--- deployer\n${deployment.output()}`)
      assert.strictEqual(first.body, "Hello, revaeW!\n")
      const pids = yield* waitUntil("2 replicas of the group", deployment, () => {
        const main = pidsOf(deployment, "main")
        return main.length === 2 ? main : undefined
      })
      // One group: Reverser is hosted by main's processes, and no process of its own was started.
      assert.deepStrictEqual([...pidsOf(deployment, "hello/Reverser")].sort(), [...pids].sort())
      assert.strictEqual(new Set(replicaPids(deployment)).size, 2)
    }).pipe(Effect.scoped),
  120_000
)
