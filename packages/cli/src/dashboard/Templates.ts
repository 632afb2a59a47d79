/**
 * The dashboard's pages, as functions from data to HTML. Every page
 * refreshes itself: a small script fetches the page again every few seconds
 * and swaps the elements marked `data-refresh`, so the traffic graph and
 * scroll position survive.
 *
 * @since 0.1.0
 */
import type * as Registry from "@effect-weaver/runtime/Registry"
import type * as Tracing from "@effect-weaver/runtime/Tracing"
import * as Status from "../Status.js"
import { type Html, html, json, raw } from "./Html.js"
import type * as Stats from "./Stats.js"

/**
 * How often pages refresh, in milliseconds.
 *
 * @since 0.1.0
 * @category constants
 */
export const refreshMillis = 3000

const style = raw(`
body { font-family: system-ui, sans-serif; margin: 0; color: #222; background: #fafafa; }
header { background: #1a4d8f; color: white; padding: 0.6em 1.2em; }
header a { color: white; text-decoration: none; font-weight: 600; }
main { padding: 0.5em 1.2em 2em; max-width: 1200px; }
h2 { font-size: 1.1em; margin-top: 1.6em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
table { border-collapse: collapse; background: white; }
th, td { text-align: left; padding: 0.3em 0.8em; border: 1px solid #e2e2e2; }
th { background: #f0f3f7; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: white; border: 1px solid #e2e2e2; padding: 0.6em; overflow-x: auto; }
.note { color: #8a5a00; }
.error { color: #b00020; }
#graph { width: 100%; height: 320px; background: white; border: 1px solid #e2e2e2; }
#chart { background: white; border: 1px solid #e2e2e2; }
nav.buckets a { margin-right: 0.8em; }
nav.buckets a.current { font-weight: 700; text-decoration: none; color: #222; }
`)

const refreshScript = raw(`
(function () {
  setInterval(async function () {
    try {
      const response = await fetch(location.href, { cache: "no-store" })
      if (!response.ok) return
      const next = new DOMParser().parseFromString(await response.text(), "text/html")
      for (const element of document.querySelectorAll("[data-refresh]")) {
        const fresh = next.getElementById(element.id)
        if (fresh !== null && fresh.innerHTML !== element.innerHTML) element.innerHTML = fresh.innerHTML
      }
      document.dispatchEvent(new Event("weaver:refreshed"))
    } catch (e) {}
  }, ${refreshMillis})
})()
`)

/**
 * The frame of every page.
 *
 * @since 0.1.0
 * @category constructors
 */
export const layout = (options: {
  readonly tool: Registry.Tool
  readonly title: string
  readonly body: Html
  readonly head?: Html
}): Html =>
  html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${options.title}</title>
<style>${style}</style>
${options.head}
</head>
<body>
<header><a href="/">Service Weaver · weaver ${options.tool} dashboard</a></header>
<main>
${options.body}
</main>
<script>${refreshScript}</script>
</body>
</html>
`

/**
 * `/`: the live deployments of the tool.
 *
 * @since 0.1.0
 * @category constructors
 */
export const index = (
  tool: Registry.Tool,
  deployments: ReadonlyArray<Registry.Deployment>,
  now: number
): Html =>
  layout({
    tool,
    title: `weaver ${tool} dashboard`,
    body: html`<h2>Deployments</h2>
<div id="deployments" data-refresh>
${
      deployments.length === 0
        ? html`<p class="note">No live deployments. Start one with <code>weaver ${tool} deploy weaver.toml</code>.</p>`
        : html`<table>
<thead><tr><th>App</th><th>Deployment</th><th>Age</th></tr></thead>
<tbody>
${
          deployments.map((d) =>
            html`<tr><td>${d.app}</td><td><a href="/deployment?id=${
              encodeURIComponent(d.deploymentId)
            }">${d.deploymentId}</a></td><td>${Status.age(d.startedAt, now)}</td></tr>
`
          )
        }</tbody>
</table>`
    }
</div>`
  })

/**
 * Everything the deployment page shows.
 *
 * @since 0.1.0
 * @category models
 */
export interface DeploymentView {
  readonly tool: Registry.Tool
  readonly deployment: Registry.Deployment
  readonly now: number
  /** The config file's text, or why it could not be read. */
  readonly config: { readonly text: string } | { readonly error: string }
  readonly methods: ReadonlyArray<Stats.MethodRow>
  readonly edges: ReadonlyArray<Stats.Edge>
  /** Why the metrics could not be read, if they could not. */
  readonly metricsError?: string | undefined
}

const formatNumber = (n: number, digits = 0) =>
  n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })

const graphScript = raw(`
(function () {
  if (typeof cytoscapeDagre !== "undefined") cytoscape.use(cytoscapeDagre)
  let drawn = ""
  function draw() {
    const source = document.querySelector("#graph-data script")
    if (source === null || source.textContent === drawn) return
    drawn = source.textContent
    const data = JSON.parse(drawn)
    const max = Math.max(1, ...data.edges.map(function (e) { return e.calls }))
    if (window.cy) window.cy.destroy()
    window.cy = cytoscape({
      container: document.getElementById("graph"),
      elements: data.nodes.map(function (n) { return { data: { id: n, label: n } } }).concat(
        data.edges.map(function (e) {
          return { data: { id: e.caller + " -> " + e.callee, source: e.caller, target: e.callee, calls: e.calls,
            width: 1 + 5 * Math.log(1 + e.calls) / Math.log(1 + max) } }
        })),
      layout: { name: typeof cytoscapeDagre !== "undefined" ? "dagre" : "breadthfirst", rankDir: "LR", nodeSep: 40, rankSep: 120 },
      userZoomingEnabled: false,
      maxZoom: 1.2,
      style: [
        { selector: "node", style: { "label": "data(label)", "background-color": "#1a4d8f", "color": "#222",
          "text-valign": "bottom", "text-margin-y": 6, "font-size": 12, "width": 22, "height": 22 } },
        { selector: "edge", style: { "width": "data(width)", "line-color": "#7a9cc6", "target-arrow-color": "#7a9cc6",
          "target-arrow-shape": "triangle", "curve-style": "bezier", "label": "data(calls)", "font-size": 11,
          "text-background-color": "#fff", "text-background-opacity": 1 } }
      ]
    })
  }
  const points = [[], []]
  let chart = null
  function sample() {
    const source = document.querySelector("#calls-data script")
    if (source === null || typeof uPlot === "undefined") return
    const data = JSON.parse(source.textContent)
    if (points[0].length > 0 && points[0][points[0].length - 1] >= data.time) return
    points[0].push(data.time)
    points[1].push(data.calls)
    if (points[0].length < 2) return
    if (chart === null) {
      chart = new uPlot({ width: 600, height: 180, title: "Method calls (since this page opened)",
        series: [{}, { label: "calls", stroke: "#1a4d8f", width: 2 }] }, points, document.getElementById("chart"))
    } else {
      chart.setData(points)
    }
  }
  draw()
  sample()
  document.addEventListener("weaver:refreshed", function () { draw(); sample() })
})()
`)

const assets = raw(`<link rel="stylesheet" href="/assets/uPlot.min.css">
<script src="/assets/cytoscape.min.js"></script>
<script src="/assets/cytoscape-dagre.min.js"></script>
<script src="/assets/uPlot.iife.min.js"></script>`)

const commands = (tool: Registry.Tool, id: string): ReadonlyArray<readonly [string, string]> => [
  ["Status", `weaver ${tool} status`],
  ["Metrics", `weaver ${tool} metrics`],
  ...(tool === "multi"
    ? [
      ["Logs", `weaver multi logs 'full_version == ${JSON.stringify(id)}'`] as const,
      ["Follow logs", `weaver multi logs --follow 'full_version == ${JSON.stringify(id)}'`] as const
    ]
    : []),
  ["CPU profile", `weaver ${tool} profile --duration=30s ${id}`],
  ["Heap profile", `weaver ${tool} profile --type=heap ${id}`]
]

/**
 * `/deployment?id=`: one deployment's summary, config, commands, components,
 * methods and traffic graph.
 *
 * @since 0.1.0
 * @category constructors
 */
export const deployment = (view: DeploymentView): Html => {
  const d = view.deployment
  const id = encodeURIComponent(d.deploymentId)
  const nodes = [
    ...new Set(["main", ...d.components.map((c) => c.name), ...view.edges.flatMap((e) => [e.caller, e.callee])])
  ]
  const calls = view.methods.reduce((sum, m) => sum + m.calls, 0)
  return layout({
    tool: view.tool,
    title: `${d.app} ${d.deploymentId.slice(0, 8)}`,
    head: assets,
    body: html`<h2>Summary</h2>
<table id="summary">
<tr><th>App</th><td>${d.app}</td></tr>
<tr><th>Deployment</th><td>${d.deploymentId}</td></tr>
<tr><th>Age</th><td id="age" data-refresh>${Status.age(d.startedAt, view.now)}</td></tr>
<tr><th>Listeners</th><td>${
      d.listeners.length === 0 ?
        "none" :
        d.listeners.map((l, i) =>
          html`${i > 0 ? ", " : ""}${l.name}${l.kind === undefined ? "" : ` (${l.kind})`}: ${l.address}`
        )
    }</td></tr>
</table>
<p><a href="/metrics?id=${id}">Metrics</a> · <a href="/traces?id=${id}">Traces</a></p>

<h2>Components</h2>
<div id="components" data-refresh>
<table>
<thead><tr><th>Component</th><th class="num">Replicas</th><th>PIDs</th></tr></thead>
<tbody>
${
      d.components.map((c) =>
        html`<tr data-component="${c.name}"><td>${c.name}</td><td class="num">${c.pids.length}</td><td>${
          [...c.pids].sort((a, b) => a - b).join(", ")
        }</td></tr>
`
      )
    }</tbody>
</table>
</div>

<h2>Methods</h2>
<div id="methods" data-refresh>
${view.metricsError === undefined ? "" : html`<p class="error">Metrics unavailable: ${view.metricsError}</p>`}
<table>
<thead><tr><th>Component</th><th>Method</th><th class="num">Calls</th><th class="num">Errors</th><th class="num">Mean latency (ms)</th><th class="num">Request bytes</th><th class="num">Reply bytes</th></tr></thead>
<tbody>
${
      view.methods.map((m) =>
        html`<tr data-method="${m.component}.${m.method}"><td>${m.component}</td><td>${m.method}</td><td class="num calls">${m.calls}</td><td class="num errors">${m.errors}</td><td class="num">${
          formatNumber(m.meanLatencyMs, 3)
        }</td><td class="num">${formatNumber(m.requestBytes)}</td><td class="num">${
          formatNumber(m.replyBytes)
        }</td></tr>
`
      )
    }</tbody>
</table>
${view.methods.length === 0 ? html`<p class="note">No component methods have been called yet.</p>` : ""}
</div>

<h2>Traffic</h2>
<div id="graph"></div>
<div id="graph-data" data-refresh hidden><script type="application/json">${
      json({ nodes, edges: view.edges })
    }</script></div>
<div id="calls-data" data-refresh hidden><script type="application/json">${
      json({ time: Math.floor(view.now / 1000), calls })
    }</script></div>
<div id="chart"></div>

<h2>Commands</h2>
<table id="commands">
${
      commands(view.tool, d.deploymentId).map(([what, line]) =>
        html`<tr><th>${what}</th><td><code>${line}</code></td></tr>`
      )
    }
</table>

<h2>Config</h2>
${
      "text" in view.config
        ? html`<p><code>${d.configFile}</code></p><pre id="config">${view.config.text}</pre>`
        : html`<p class="note">${view.config.error}</p>`
    }
<script>${graphScript}</script>`
  })
}

/**
 * `/metrics?id=`: the deployment's metrics in the Prometheus text format.
 *
 * @since 0.1.0
 * @category constructors
 */
export const metrics = (
  tool: Registry.Tool,
  deployment: Registry.Deployment,
  text: string,
  error: string | undefined
): Html =>
  layout({
    tool,
    title: `metrics · ${deployment.app} ${deployment.deploymentId.slice(0, 8)}`,
    body: html`<h2>Metrics of <a href="/deployment?id=${
      encodeURIComponent(deployment.deploymentId)
    }">${deployment.app} ${deployment.deploymentId}</a></h2>
<div id="metrics" data-refresh>
${error === undefined ? "" : html`<p class="error">${error}</p>`}
<pre>${text}</pre>
</div>`
  })

/**
 * The latency buckets of the traces page, as Service Weaver's dashboard
 * offers them.
 *
 * @since 0.1.0
 * @category constants
 */
export const traceBuckets: ReadonlyArray<{
  readonly label: string
  readonly low?: string
  readonly high?: string
  readonly errs?: boolean
}> = [
  { label: "all" },
  { label: "0–1ms", low: "0ms", high: "1ms" },
  { label: "1–10ms", low: "1ms", high: "10ms" },
  { label: "10–100ms", low: "10ms", high: "100ms" },
  { label: "100ms–1s", low: "100ms", high: "1s" },
  { label: "1–10s", low: "1s", high: "10s" },
  { label: "errors", errs: true }
]

/**
 * What the traces page shows.
 *
 * @since 0.1.0
 * @category models
 */
export interface TracesView {
  readonly tool: Registry.Tool
  readonly deployment: Registry.Deployment
  readonly query: { readonly low: string; readonly high: string; readonly errs: boolean }
  readonly traces: ReadonlyArray<Tracing.TraceSummary>
  /** Why traces could not be listed, if they could not. */
  readonly note?: string | undefined
}

/**
 * `/traces?id=&lat_low=&lat_hi=&errs=`: recent traces of the deployment,
 * each with a link to download it as Chrome trace-event JSON, which Perfetto
 * (ui.perfetto.dev) opens.
 *
 * @since 0.1.0
 * @category constructors
 */
export const traces = (view: TracesView): Html => {
  const d = view.deployment
  const id = encodeURIComponent(d.deploymentId)
  const linkOf = (b: (typeof traceBuckets)[number]) => {
    const params = new URLSearchParams({ id: d.deploymentId })
    if (b.low !== undefined) params.set("lat_low", b.low)
    if (b.high !== undefined) params.set("lat_hi", b.high)
    if (b.errs === true) params.set("errs", "true")
    return `/traces?${params}`
  }
  const isCurrent = (b: (typeof traceBuckets)[number]) =>
    (b.low ?? "") === view.query.low && (b.high ?? "") === view.query.high && (b.errs ?? false) === view.query.errs
  return layout({
    tool: view.tool,
    title: `traces · ${d.app} ${d.deploymentId.slice(0, 8)}`,
    body: html`<h2>Traces of <a href="/deployment?id=${id}">${d.app} ${d.deploymentId}</a></h2>
<nav class="buckets">${
      traceBuckets.map((b) => html`<a href="${linkOf(b)}"${isCurrent(b) ? raw(` class="current"`) : ""}>${b.label}</a>`)
    }</nav>
<div id="traces" data-refresh>
${view.note === undefined ? "" : html`<p class="note">${view.note}</p>`}
<table>
<thead><tr><th>Started</th><th>Name</th><th class="num">Duration (ms)</th><th class="num">Spans</th><th>Status</th><th>Trace</th></tr></thead>
<tbody>
${
      view.traces.map((t) =>
        html`<tr><td>${new Date(t.startMicros / 1000).toISOString()}</td><td>${t.name}</td><td class="num">${
          formatNumber(t.durationMicros / 1000, 3)
        }</td><td class="num">${t.spans}</td><td>${
          t.error ? html`<span class="error">error</span>` : "ok"
        }</td><td><a href="/tracefetch?id=${id}&amp;trace_id=${
          encodeURIComponent(t.traceId)
        }" download="trace-${t.traceId}.json">download for Perfetto</a></td></tr>
`
      )
    }</tbody>
</table>
</div>
<p>Open a downloaded trace at <code>ui.perfetto.dev</code> (Open trace file).</p>`
  })
}

/**
 * A page saying what was not found or went wrong.
 *
 * @since 0.1.0
 * @category constructors
 */
export const message = (tool: Registry.Tool, title: string, text: string): Html =>
  layout({
    tool,
    title,
    body: html`<h2>${title}</h2><p class="error">${text}</p><p><a href="/">All deployments</a></p>`
  })
