/**
 * `weaver multi deploy` of a singleton (test/fixtures/singleton): main runs
 * `[multi] replicas = 2` processes while the Leader's group runs one, whose
 * constructor ran once, when the deployment started; killed with SIGKILL,
 * the Leader is restarted (its constructor runs again, in the new process)
 * and requests made meanwhile wait for it and succeed.
 */
import { Registry } from "@effect-weaver/runtime"
import { assert, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { deploy, entry, firstAnswer, get, proxyAddress, root, waitUntil } from "./utils/deployment.js"

const pidsOf = (deployment: Parameters<typeof entry>[0], component: string) =>
  entry(deployment)?.components.find((c) => c.name === component)?.pids ?? []

interface Answer {
  readonly main: number
  readonly leader: { readonly pid: number; readonly instance: string }
}

it.live(
  "a singleton runs one process, constructed once at deploy time, while main runs 2; killed, it is constructed again and requests meanwhile succeed",
  () =>
    Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "weaver-singleton-test-"))),
        (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
      )
      const log = Path.join(dir, "constructions")
      const constructions = () =>
        Fs.existsSync(log) ? Fs.readFileSync(log, "utf8").trim().split("\n").filter((l) => l !== "") : []
      const deployment = yield* deploy(`
[serviceweaver]
name = "leader"
binary = "${Path.join(root, "packages/deployer-multi/test/fixtures/singleton/main.ts")}"
env = ["LEADER_LOG=${log}"]

[multi]
listeners.leader = { address = "127.0.0.1:0" }
replicas = 2
`)
      // The run-once hook: the Leader is constructed as the deployment starts, before any request needs it.
      const [constructed] = yield* waitUntil("the Leader's construction", deployment, () => {
        const lines = constructions()
        return lines.length > 0 ? lines : undefined
      })
      const url = `http://${yield* proxyAddress(deployment, "leader")}/whoami`
      const first = yield* firstAnswer(deployment, url)
      assert.strictEqual(first.status, 200, `${first.body}\n--- deployer\n${deployment.output()}`)
      const answers: Array<Answer> = []
      // Until both replicas of main answered (bounded).
      for (let i = 0; i < 50 && new Set(answers.map((a) => a.main)).size < 2; i++) {
        const batch = yield* Effect.forEach(Array.from({ length: 8 }), () => get(url), { concurrency: 4 })
        for (const answer of batch) {
          assert.strictEqual(answer.status, 200, answer.body)
          answers.push(JSON.parse(answer.body) as Answer)
        }
      }
      const mains = yield* waitUntil("2 replicas of main", deployment, () => {
        const pids = pidsOf(deployment, "main")
        return pids.length === 2 ? pids : undefined
      })
      assert.deepStrictEqual([...new Set(answers.map((a) => a.main))].sort(), [...mains].sort(), "both mains asked")
      const leaders = new Set(answers.map((a) => `${a.leader.pid} ${a.leader.instance}`))
      assert.deepStrictEqual([...leaders], [constructed], "one Leader answered both mains")
      assert.deepStrictEqual(pidsOf(deployment, "leader/Leader"), [answers[0]!.leader.pid])
      assert.deepStrictEqual(constructions(), [constructed], "constructed once")
      assert.include(
        deployment.output(),
        "group leader/Leader runs exactly 1 replica: it holds the singleton leader/Leader"
      )

      // SIGKILL under load: requests keep coming through both mains, and wait for the new Leader.
      const victim = answers[0]!.leader.pid
      const results: Array<{ readonly status: number; readonly body: string }> = []
      const load = Effect.forEach(
        Array.from({ length: 160 }),
        () => Effect.map(get(url), (r) => results.push(r)),
        { concurrency: 4, discard: true }
      )
      const fiber = yield* Effect.fork(load)
      yield* waitUntil("20 answers", deployment, () => results.length >= 20 ? true : undefined)
      process.kill(victim, "SIGKILL")
      yield* Fiber.join(fiber)
      const failed = results.filter((r) => r.status !== 200)
      assert.deepStrictEqual(failed, [], `failed requests\n--- deployer\n${deployment.output()}`)
      const restarted = yield* waitUntil("the Leader's restart", deployment, () => {
        const pids = pidsOf(deployment, "leader/Leader")
        return pids.length === 1 && pids[0] !== victim ? pids : undefined
      })
      assert.isFalse(Registry.isAlive(victim))
      const lines = constructions()
      assert.strictEqual(lines.length, 2, "constructed again in the new process, and only there")
      assert.strictEqual(lines[0], constructed)
      assert.isTrue(lines[1]!.startsWith(`${restarted[0]} `))
      const identities = new Set(results.map((r) => JSON.parse(r.body).leader.pid as number))
      assert.deepStrictEqual([...identities].sort(), [victim, restarted[0]!].sort())
    }).pipe(Effect.scoped),
  180_000
)
