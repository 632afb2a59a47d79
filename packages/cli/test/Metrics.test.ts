import { Metrics } from "@effect-weaver/core"
import type { Registry } from "@effect-weaver/runtime"
import { Prometheus, StatusServer } from "@effect-weaver/runtime"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import { closed, run, tempDir } from "./utils/cli.js"
import { deployHello, sendHellos } from "./utils/hello.js"

const deployment = (overrides: Partial<Registry.Deployment>): Registry.Deployment => ({
  app: "metrics-app",
  deploymentId: "6f1e2d3c-0000-4000-8000-000000000001",
  tool: "single",
  pid: process.pid,
  startedAt: 1_000,
  components: [{ name: "main", pids: [process.pid] }],
  listeners: [],
  ...overrides
})

const writeEntry = (dir: string, entry: Registry.Deployment) =>
  Effect.promise(async () => {
    const registry = Path.join(dir, "serviceweaver/single/registry")
    await Fs.mkdir(registry, { recursive: true })
    await Fs.writeFile(Path.join(registry, `${entry.deploymentId}.registration.json`), JSON.stringify(entry))
  })

const requests = Metrics.counter("cli_test_requests", { description: "Requests seen by the CLI test" })
const other = Metrics.gauge("cli_test_other")

describe("weaver single metrics", () => {
  it.scoped("prints the metrics of every live deployment, filtered by the regex, and names unreachable ones", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      yield* requests.add(7)
      yield* other.set(1)
      const server = yield* StatusServer.make({
        app: "metrics-app",
        deploymentId: "6f1e2d3c-0000-4000-8000-000000000001",
        replicaId: "replica-1"
      })
      yield* writeEntry(dir, deployment({ statusAddress: server.address }))
      // A live entry whose status server is gone: port 1 on loopback refuses connections.
      yield* writeEntry(
        dir,
        deployment({ deploymentId: "00000000-dead-4000-8000-000000000002", statusAddress: "127.0.0.1:1" })
      )

      const result = yield* run(["single", "metrics", "^cli_test_req"], { XDG_DATA_HOME: dir })
      assert.strictEqual(result.code, 0, result.stderr)
      assert.strictEqual(
        result.stdout,
        `${Prometheus.header({ targets: [server.address] })}# HELP cli_test_requests Requests seen by the CLI test
# TYPE cli_test_requests counter
cli_test_requests{serviceweaver_app="metrics-app",serviceweaver_node="replica-1",serviceweaver_version="6f1e2d3c-0000-4000-8000-000000000001"} 7
`
      )
      assert.include(
        result.stderr,
        "weaver: deployment 00000000-dead-4000-8000-000000000002 (metrics-app): status server at 127.0.0.1:1 did not answer"
      )

      const all = yield* run(["single", "metrics"], { XDG_DATA_HOME: dir })
      assert.include(all.stdout, "cli_test_requests{")
      assert.include(all.stdout, "cli_test_other{")
    }))

  it.scoped("rejects a regex that does not compile", () =>
    Effect.gen(function*() {
      const result = yield* run(["single", "metrics", "(unclosed"], { XDG_DATA_HOME: yield* tempDir })
      assert.strictEqual(result.code, 1)
      assert.include(result.stderr, `weaver: invalid metrics regex "(unclosed": `)
      assert.strictEqual(result.stdout, "")
    }))

  it.scoped(
    "shows the HTTP and method metrics of a deployed hello",
    () =>
      Effect.gen(function*() {
        const { address, deploy, env } = yield* deployHello
        yield* sendHellos(address, 3)

        const result = yield* run(["single", "metrics", "serviceweaver_(http_request|method)_count"], env)
        assert.strictEqual(result.code, 0, result.stderr)
        assert.match(
          result.stdout,
          new RegExp(
            `serviceweaver_http_request_count\\{host="${
              address.replace(/\./g, "\\.")
            }",label="hello",serviceweaver_app="hello",serviceweaver_node="[^"]+",serviceweaver_version="[^"]+"\\} 3\n`
          )
        )
        assert.match(
          result.stdout,
          /serviceweaver_method_count\{caller="main",component="hello\/Reverser",method="reverse",remote="false",serviceweaver_app="hello",serviceweaver_generated="true",serviceweaver_node="[^"]+",serviceweaver_version="[^"]+"\} 3\n/
        )
        assert.notInclude(result.stdout, "serviceweaver_http_request_latency_micros")

        deploy.process.kill("SIGTERM")
        assert.strictEqual(yield* closed(deploy, "15 seconds"), 0)
      }),
    { timeout: 60_000 }
  )
})
