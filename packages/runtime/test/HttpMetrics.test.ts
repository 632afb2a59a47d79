import { Weaver } from "@effect-weaver/core"
import { HttpMetrics, Prometheus, Weavelet } from "@effect-weaver/runtime"
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect } from "effect"
import { runLocal } from "./utils/local.js"

const router = HttpRouter.empty.pipe(
  HttpRouter.get("/hello", HttpServerResponse.text("Hello!\n")),
  HttpRouter.get("/boom", Effect.die("boom")),
  HttpRouter.post("/echo", Effect.succeed(HttpServerResponse.text("ok")))
)

/** Serves `router` on listener `name` at 127.0.0.1:0 and runs `body` with its address. */
const serving = <A, E>(name: string, body: (address: string) => Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const bound = yield* Deferred.make<string>()
    return yield* runLocal(Weaver.app({ components: [] }), (weavelet) =>
      Effect.gen(function*() {
        yield* Effect.forkScoped(Weaver.serve(name, router).pipe(Effect.provideService(Weavelet.Weavelet, weavelet)))
        return yield* body(yield* Deferred.await(bound))
      }), {
      listeners: {
        declared: new Set([name]),
        address: () => "127.0.0.1:0",
        onListening: (_, address) => Deferred.succeed(bound, address)
      }
    })
  })

const request = (url: string, init?: RequestInit) =>
  Effect.promise(async () => {
    const response = await fetch(url, init)
    return { status: response.status, text: await response.text() }
  })

/** The exposition lines of `name`'s series for one listener. */
const lines = (name: string, label: string) =>
  Prometheus.encode(Prometheus.snapshot(), { filter: new RegExp(`^${name}$`) })
    .split("\n")
    .filter((line) => line.includes(`label="${label}"`))

describe("Weaver.serve HTTP metrics", () => {
  it.live("counts every request, errors by code, latency and sizes, labelled with the listener and host", () =>
    serving("metrics_listener", (address) =>
      Effect.gen(function*() {
        const base = `http://${address}`
        for (let i = 0; i < 5; i++) assert.strictEqual((yield* request(`${base}/hello`)).status, 200)
        for (let i = 0; i < 2; i++) assert.strictEqual((yield* request(`${base}/missing`)).status, 404)
        assert.strictEqual((yield* request(`${base}/boom`)).status, 500)
        assert.strictEqual((yield* request(`${base}/echo`, { method: "POST", body: "x".repeat(1000) })).status, 200)
        // Health checks are not the application's traffic.
        assert.strictEqual((yield* request(`${base}${Weaver.healthzPath}`)).text, "OK")

        const host = `host="${address}"`
        assert.deepStrictEqual(lines("serviceweaver_http_request_count", "metrics_listener"), [
          `serviceweaver_http_request_count{${host},label="metrics_listener"} 9`
        ])
        assert.deepStrictEqual(lines("serviceweaver_http_error_count", "metrics_listener"), [
          `serviceweaver_http_error_count{code="404",${host},label="metrics_listener"} 2`,
          `serviceweaver_http_error_count{code="500",${host},label="metrics_listener"} 1`
        ])
        for (
          const histogram of [
            "serviceweaver_http_request_latency_micros",
            "serviceweaver_http_request_bytes_received",
            "serviceweaver_http_request_bytes_returned"
          ]
        ) {
          const series = lines(histogram, "metrics_listener")
          assert.include(series, `${histogram}_count{${host},label="metrics_listener"} 9`, series.join("\n"))
          assert.include(series, `${histogram}_bucket{${host},label="metrics_listener",le="+Inf"} 9`)
        }
        // The 1000-byte body lands the POST in the (1000, 2000] bucket of bytes received; every GET is smaller.
        const received = lines("serviceweaver_http_request_bytes_received", "metrics_listener")
        assert.include(
          received,
          `serviceweaver_http_request_bytes_received_bucket{${host},label="metrics_listener",le="1000"} 8`
        )
        assert.include(
          received,
          `serviceweaver_http_request_bytes_received_bucket{${host},label="metrics_listener",le="2000"} 9`
        )
      })))
})

describe("HttpMetrics.instrument", () => {
  it.effect(`labels the requests of hosts beyond the first ${HttpMetrics.maxHosts} host="other"`, () =>
    Effect.gen(function*() {
      const app = HttpMetrics.instrument("many_hosts", Effect.succeed(HttpServerResponse.text("ok")))
      for (let i = 0; i < HttpMetrics.maxHosts + 10; i++) {
        const request = HttpServerRequest.fromWeb(new Request("http://x/", { headers: { host: `h${i}.test` } }))
        yield* app.pipe(Effect.provideService(HttpServerRequest.HttpServerRequest, request))
      }
      const series = lines("serviceweaver_http_request_count", "many_hosts")
      assert.strictEqual(series.length, HttpMetrics.maxHosts + 1)
      assert.include(series, `serviceweaver_http_request_count{host="h0.test",label="many_hosts"} 1`)
      assert.include(series, `serviceweaver_http_request_count{host="other",label="many_hosts"} 10`)
    }))
})
