import { Dashboard } from "@effect-weaver/cli"
import * as Html from "@effect-weaver/cli/dashboard/Html"
import { assert, describe, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Chromium from "./utils/chromium.js"
import { root, start, waitFor } from "./utils/cli.js"
import { deployHello, deployMultiHello, type Hello, sendHellos } from "./utils/hello.js"

/** The dashboard of `tool` shows a deployed hello: components with their replicas, method calls, traffic graph. */
const showsHello = (
  tool: "single" | "multi",
  deploy: Effect.Effect<Hello, Error, Scope.Scope>,
  replicas: number
): Effect.Effect<void, Error, Chromium.Chromium> =>
  Effect.gen(function*() {
    const n = 7
    const hello = yield* deploy
    yield* sendHellos(hello.address, n)

    const dashboard = yield* start([tool, "dashboard", "--port", "0"], hello.env)
    const [, url] = yield* waitFor(dashboard, /Dashboard available at: (http:\/\/127\.0\.0\.1:\d+)\n/)
    const browser = yield* (yield* Chromium.Chromium).launch
    const page = yield* Effect.promise(() => browser.newPage({ viewport: { width: 1200, height: 1600 } }))
    const errors: Array<string> = []
    page.on("pageerror", (error) => errors.push(error.message))

    yield* Effect.promise(() => page.goto(url!))
    const link = page.locator(`a[href="/deployment?id=${hello.deploymentId}"]`)
    assert.strictEqual(yield* Effect.promise(() => link.textContent()), hello.deploymentId)
    yield* Effect.promise(() => Promise.all([page.waitForURL(/\/deployment\?id=/), link.click()]))

    const listeners = yield* Effect.promise(() => page.locator("#summary tr", { hasText: "Listeners" }).textContent())
    assert.match(listeners ?? "", /^Listenershello \(http\): [\d.]+:\d+$/)
    const components = yield* Effect.promise(() =>
      page.locator("#components tr[data-component] td:first-child").allTextContents()
    )
    assert.deepStrictEqual([...components].sort(), ["hello/Reverser", "main"])
    const replicaCounts = yield* Effect.promise(() =>
      page.locator("#components tr[data-component] td:nth-child(2)").allTextContents()
    )
    assert.deepStrictEqual(replicaCounts, [String(replicas), String(replicas)])
    const calls = yield* Effect.promise(() =>
      page.locator(`#methods tr[data-method="hello/Reverser.reverse"] td.calls`).textContent()
    )
    assert.strictEqual(calls, String(n))

    yield* Effect.promise(() =>
      page.waitForFunction(
        () => {
          const cy = (globalThis as unknown as { cy?: { edges: () => { length: number } } }).cy
          return cy !== undefined && cy.edges().length > 0
        },
        undefined,
        { timeout: 10_000 }
      )
    )
    const graph = yield* Effect.promise(() =>
      page.evaluate(() => {
        type Element = {
          id: () => string
          data: (key: string) => unknown
          source: () => Element
          target: () => Element
        }
        const cy = (globalThis as unknown as {
          cy: { edges: () => Array<Element>; nodes: () => Array<Element>; $: (s: string) => { length: number } }
        }).cy
        return {
          nodes: cy.nodes().map((node) => node.id()).sort(),
          edges: cy.edges().map((edge) => [edge.source().id(), edge.target().id(), edge.data("calls")])
        }
      })
    )
    assert.deepStrictEqual(graph, { nodes: ["hello/Reverser", "main"], edges: [["main", "hello/Reverser", n]] })
    // The graph was laid out and drawn: dagre puts main left of hello/Reverser.
    const drawn = yield* Effect.promise(() =>
      page.evaluate(() => {
        const cy = (globalThis as unknown as {
          cy: { getElementById: (id: string) => { position: () => { x: number; y: number } } }
        }).cy
        return [cy.getElementById("main").position().x, cy.getElementById("hello/Reverser").position().x]
      })
    )
    assert.isBelow(drawn[0]!, drawn[1]!)

    const screenshot = Path.join(root, `test-results/dashboard-${tool}.png`)
    Fs.mkdirSync(Path.dirname(screenshot), { recursive: true })
    yield* Effect.promise(() => page.screenshot({ path: screenshot, fullPage: true }))

    // More calls show up without reloading the page.
    yield* sendHellos(hello.address, 2)
    yield* Effect.promise(() =>
      page.waitForFunction(
        (expected) =>
          (globalThis as unknown as {
            document: { querySelector: (s: string) => { textContent: string | null } | null }
          }).document.querySelector(`#methods tr[data-method="hello/Reverser.reverse"] td.calls`)?.textContent ===
            expected,
        String(n + 2),
        { timeout: 15_000 }
      )
    )

    yield* Effect.promise(() => page.click(`a[href^="/metrics?id="]`))
    const metrics = yield* Effect.promise(() => page.locator("#metrics pre").textContent())
    assert.match(metrics ?? "", /serviceweaver_method_count\{caller="main",component="hello\/Reverser"/)

    yield* Effect.promise(() => page.goBack())
    yield* Effect.promise(() => page.click(`a[href^="/traces?id="]`))
    assert.strictEqual(yield* Effect.promise(() => page.locator("#traces table").count()), 1)
    assert.deepStrictEqual(
      yield* Effect.promise(() => page.locator("nav.buckets a").allTextContents()),
      ["all", "0–1ms", "1–10ms", "10–100ms", "100ms–1s", "1–10s", "errors"]
    )
    assert.deepStrictEqual(errors, [])
  }).pipe(Effect.scoped)

// One Chromium for the file: the packaged one is unpacked once, not per test.
layer(Chromium.layer, { excludeTestServices: true, timeout: "2 minutes" })((it) => {
  describe("weaver single dashboard", () => {
    it.effect(
      "shows a deployed hello's components, method calls and traffic graph in Chromium",
      () => showsHello("single", deployHello, 1),
      { timeout: 180_000 }
    )

    it.effect("answers an unknown deployment with a 404 page and serves only the listed assets", () =>
      Effect.gen(function*() {
        const dashboard = yield* Dashboard.make("single")
        const get = (path: string) =>
          Effect.promise(async () => {
            const response = await fetch(`${dashboard.url}${path}`)
            return { status: response.status, type: response.headers.get("content-type"), text: await response.text() }
          })
        const missing = yield* get("/deployment?id=%3Cscript%3E")
        assert.strictEqual(missing.status, 404)
        assert.include(missing.text, "&quot;&lt;script&gt;&quot;")
        assert.notInclude(missing.text, `"<script>"`)
        for (const name of Object.keys(Dashboard.assets)) {
          const asset = yield* get(`/assets/${name}`)
          assert.strictEqual(asset.status, 200, name)
          assert.isAbove(asset.text.length, 1000, name)
        }
        assert.strictEqual((yield* get("/assets/..%2Fpackage.json")).status, 404)
      }).pipe(Effect.scoped))
  })

  describe("weaver multi dashboard", () => {
    it.effect(
      "shows hello deployed with weaver multi deploy: 2 replicas of each component, merged method calls, main → hello/Reverser",
      () => showsHello("multi", deployMultiHello, 2),
      { timeout: 240_000 }
    )
  })

  describe("Dashboard html", () => {
    it("escapes interpolated values and keeps nested html", () => {
      const name = `<img src=x onerror="alert('x')">&`
      const inner = Html.html`<b>${name}</b>`
      assert.strictEqual(
        Html.html`<td>${inner}${[1, "<", null]}</td>`.value,
        "<td><b>&lt;img src=x onerror=&quot;alert(&#39;x&#39;)&quot;&gt;&amp;</b>1&lt;</td>"
      )
      assert.strictEqual(Html.json({ s: "</script><!--" }).value, `{"s":"\\u003c/script\\u003e\\u003c!--"}`)
    })
  })
})
