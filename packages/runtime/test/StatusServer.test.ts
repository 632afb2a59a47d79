import { Metrics, Weaver } from "@effect-weaver/core"
import { Prometheus, Registry, StatusServer } from "@effect-weaver/runtime"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"

const get = (url: string) =>
  Effect.promise(async () => {
    const response = await fetch(url)
    return { status: response.status, type: response.headers.get("content-type"), text: await response.text() }
  })

const served = Metrics.counter("status_test_count", { description: "Counted by the status server test" })

describe("StatusServer", () => {
  it.scoped("serves this process's metrics as Prometheus text and JSON, and a health check", () =>
    Effect.gen(function*() {
      yield* served.add(2)
      const server = yield* StatusServer.make({ app: "app", deploymentId: "d1", replicaId: "r1" })
      assert.match(server.address, /^127\.0\.0\.1:\d+$/)

      const page = yield* get(`http://${server.address}${Prometheus.path}`)
      assert.strictEqual(page.status, 200)
      assert.strictEqual(page.type, "text/plain; version=0.0.4; charset=utf-8")
      assert.isTrue(page.text.startsWith(Prometheus.header({ targets: [server.address] })), page.text)
      assert.include(
        page.text,
        `# HELP status_test_count Counted by the status server test
# TYPE status_test_count counter
status_test_count{serviceweaver_app="app",serviceweaver_node="r1",serviceweaver_version="d1"} 2
`
      )

      const json = yield* get(`http://${server.address}${StatusServer.metricsPath}`)
      const metrics = Schema.decodeUnknownSync(Schema.parseJson(StatusServer.MetricsResponse))(json.text)
      assert.deepInclude(metrics, {
        type: "counter",
        name: "status_test_count",
        help: "Counted by the status server test",
        labels: { serviceweaver_app: "app", serviceweaver_version: "d1", serviceweaver_node: "r1" },
        value: 2
      })

      assert.deepStrictEqual(yield* get(`http://${server.address}${StatusServer.healthzPath}`), {
        status: 200,
        type: "text/plain",
        text: "OK"
      })
      assert.strictEqual((yield* get(`http://${server.address}/nope`)).status, 404)
    }))

  it.scoped("is a service: StatusServer.layer serves while its scope is open", () =>
    Effect.gen(function*() {
      const address = yield* StatusServer.StatusServer.pipe(
        Effect.map((server) => server.address),
        Effect.provide(StatusServer.layer({ app: "app", deploymentId: "d1", replicaId: "r1" }))
      )
      assert.match(address, /^127\.0\.0\.1:\d+$/)
      // Provided to one effect, the layer's scope closed with it: the server no longer answers.
      const after = yield* Effect.promise(() =>
        fetch(`http://${address}${StatusServer.healthzPath}`).then(() => "answered", () => "refused")
      )
      assert.strictEqual(after, "refused")
    }))

  it.live("Weaver.run starts one and records its address in the registry entry", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.promise(() => Fs.mkdtemp(Path.join(Os.tmpdir(), "weaver-status-test-"))),
        (dir) => Effect.promise(() => Fs.rm(dir, { recursive: true, force: true }))
      )
      const previous = process.env.XDG_DATA_HOME
      yield* Effect.acquireRelease(
        Effect.sync(() => (process.env.XDG_DATA_HOME = dir)),
        () =>
          Effect.sync(() => {
            if (previous === undefined) delete process.env.XDG_DATA_HOME
            else process.env.XDG_DATA_HOME = previous
          })
      )
      // The main component runs while the deployment is live: it reads the entry and the page then.
      let text = ""
      let statusAddress: string | undefined
      const main = Weaver.main(Effect.gen(function*() {
        const [entry] = yield* Registry.list("single")
        statusAddress = entry?.statusAddress
        if (statusAddress !== undefined) text = (yield* get(`http://${statusAddress}${Prometheus.path}`)).text
      }))
      yield* Weaver.run(Weaver.app({ main, components: [] }))
      assert.match(statusAddress ?? "", /^127\.0\.0\.1:\d+$/)
      assert.include(text, `- targets: ['${statusAddress}']`)
      assert.match(
        text,
        /status_test_count\{serviceweaver_app="[^"]+",serviceweaver_node="[^"]+",serviceweaver_version/
      )
    }).pipe(Effect.scoped))
})
