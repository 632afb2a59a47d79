/**
 * A replica that hangs rather than dies (SIGSTOP here; an infinite loop or a
 * blocked event loop look the same to the deployer): its envelope's health
 * probe (`GetHealth`) stops being answered, the deployer takes it out of
 * routing at once, kills it and restarts it, and the calls that were in
 * flight to it fail over to the other replica.
 */
import * as Deployer from "@effect-weaver/deployer-multi/Deployer"
import { Registry, WeaverConfig } from "@effect-weaver/runtime"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import { deploy, entry, firstAnswer, helloToml, proxyAddress, waitUntil } from "./utils/deployment.js"
import type { Deployment } from "./utils/deployment.js"

const reverserPids = (deployment: Deployment) =>
  entry(deployment)?.components.find((c) => c.name === "hello/Reverser")?.pids ?? []

/** The client's limit on one request, as in the measurement. */
const clientTimeout = 5_000

interface Answer {
  readonly status: number
  readonly body: string
  readonly millis: number
}

/** One GET with the client's limit; its status (0 when it failed or timed out), body and latency. */
const timedGet = (url: string): Effect.Effect<Answer> =>
  Effect.promise(() => {
    const start = performance.now()
    return fetch(url, { signal: AbortSignal.timeout(clientTimeout) }).then(
      async (response) => ({ status: response.status, body: await response.text() }),
      (error: Error) => ({ status: 0, body: `${error.message}: ${String(error.cause)}` })
    ).then((answer) => ({ ...answer, millis: performance.now() - start }))
  })

/** Sends `signal` to `pid` if it is still there. */
const signal = (pid: number, name: NodeJS.Signals) => {
  try {
    process.kill(pid, name)
  } catch {
    // already gone
  }
}

describe.sequential("a hung replica under weaver multi deploy of hello", () => {
  it.scoped("bad health options fail the deployment before it starts, naming the option", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Deployer.make({
        app: "hello",
        config: WeaverConfig.empty(),
        configSource: { file: "<test>", dir: ".", text: "" },
        launch: { command: "false", args: [], env: {} },
        register: false,
        logFiles: false,
        health: { interval: "1 second", unhealthyAfter: "500 millis" }
      }))
      assert.strictEqual(error._tag, "DeployError")
      assert.strictEqual(
        error.message,
        "bad deployer option: health.unhealthyAfter (500ms) must be longer than health.interval (1s)"
      )
    }))

  it.live(
    "a SIGSTOPped Reverser replica fails no request, is killed by pid and replaced by a new one",
    () =>
      Effect.gen(function*() {
        const deployment = yield* deploy(helloToml)
        const url = `http://${yield* proxyAddress(deployment, "hello")}/hello`
        const first = yield* firstAnswer(deployment, `${url}?name=x`)
        assert.strictEqual(first.status, 200, `${first.body}\n--- deployer\n${deployment.output()}`)
        // Both Reverser replicas ready and serving: each logs "reverser ready" when its first call builds it.
        const ready = () => deployment.output().split("reverser ready").length - 1
        for (let i = 0; i < 600 && ready() < 2; i++) yield* timedGet(`${url}?name=warm${i}`)
        assert.isAtLeast(ready(), 2, `the Reverser replicas did not both serve\n${deployment.output()}`)
        const [victim, survivor] = yield* waitUntil("2 Reverser replicas", deployment, () => {
          const pids = reverserPids(deployment)
          return pids.length === 2 ? pids : undefined
        })
        // Whatever happens below, the stopped process is not left behind.
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            signal(victim!, "SIGCONT")
            signal(victim!, "SIGKILL")
          })
        )

        const results: Array<Answer> = []
        const total = 90
        const load = Effect.forEach(
          Array.from({ length: total }, (_, i) => i),
          (i) => Effect.map(timedGet(`${url}?name=Weaver${i}`), (answer) => results.push(answer)),
          { concurrency: 4, discard: true }
        )
        const fiber = yield* Effect.fork(load)
        yield* waitUntil("10 answers", deployment, () => results.length >= 10 ? true : undefined)
        signal(victim!, "SIGSTOP")
        const stoppedAfter = results.length
        yield* Fiber.join(fiber)

        const after = results.slice(stoppedAfter)
        const failed = after.filter((r) => r.status !== 200 || !r.body.startsWith("Hello, "))
        const slowest = Math.max(...after.map((r) => r.millis))
        // The figures the issue reports, for the record.
        process.stdout.write(
          `hung replica: ${failed.length} of ${after.length} requests after SIGSTOP failed; ` +
            `slowest ${Math.round(slowest)} ms\n`
        )
        assert.deepStrictEqual(
          failed.map((r) => `${r.status} after ${Math.round(r.millis)} ms: ${r.body}`),
          [],
          `failed requests\n--- deployer\n${deployment.output()}`
        )

        const replaced = yield* waitUntil("the hung replica's replacement", deployment, () => {
          const pids = reverserPids(deployment)
          return pids.length === 2 && !pids.includes(victim!) ? pids : undefined
        })
        assert.include(replaced, survivor!)
        yield* waitUntil("the hung replica to be killed", deployment, () =>
          Registry.isAlive(victim!) ? undefined : true, "10 seconds")
        const told = deployment.output().split("\n").filter((line) =>
          line.includes(`pid ${victim}`)
        )
        process.stdout.write(`${told.join("\n")}\n`)
        assert.isTrue(
          told.some((line) =>
            line.includes("did not answer its health probe")
          ),
          `the deployer names the hung replica\n--- deployer\n${deployment.output()}`
        )
        // The replacement serves too.
        for (let i = 0; i < 10; i++) {
          const answer = yield* timedGet(`${url}?name=again${i}`)
          assert.strictEqual(answer.status, 200, answer.body)
        }
      }).pipe(Effect.scoped),
    180_000
  )
})
