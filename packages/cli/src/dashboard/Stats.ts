/**
 * What the dashboard's deployment page computes from a deployment's metric
 * snapshots: per-method statistics and the caller → callee traffic graph,
 * both from Service Weaver's generated `serviceweaver_method_*` metrics.
 *
 * @since 0.1.0
 */
import type * as Prometheus from "@effect-weaver/runtime/Prometheus"

/**
 * One row of the methods table, summed over callers and replicas.
 *
 * @since 0.1.0
 * @category models
 */
export interface MethodRow {
  readonly component: string
  readonly method: string
  readonly calls: number
  readonly errors: number
  /** Mean latency in milliseconds; 0 without calls. */
  readonly meanLatencyMs: number
  /** Bytes of requests and replies; remote calls only, as Service Weaver measures them. */
  readonly requestBytes: number
  readonly replyBytes: number
}

/**
 * One edge of the traffic graph: calls from `caller` to `callee`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Edge {
  readonly caller: string
  readonly callee: string
  readonly calls: number
}

const valueOf = (s: Prometheus.MetricSnapshot): { readonly value: number; readonly count: number } =>
  s.type === "histogram" ? { value: s.sum, count: s.count } : { value: s.value, count: 0 }

/**
 * The methods table, sorted by component and method.
 *
 * @since 0.1.0
 * @category combinators
 */
export const methods = (snapshots: ReadonlyArray<Prometheus.MetricSnapshot>): Array<MethodRow> => {
  const rows = new Map<string, {
    component: string
    method: string
    calls: number
    errors: number
    latencySum: number
    latencyCount: number
    requestBytes: number
    replyBytes: number
  }>()
  for (const s of snapshots) {
    if (!s.name.startsWith("serviceweaver_method_")) continue
    const component = s.labels.component
    const method = s.labels.method
    if (component === undefined || method === undefined) continue
    const key = `${component}\u0000${method}`
    let row = rows.get(key)
    if (row === undefined) {
      row = { component, method, calls: 0, errors: 0, latencySum: 0, latencyCount: 0, requestBytes: 0, replyBytes: 0 }
      rows.set(key, row)
    }
    const { count, value } = valueOf(s)
    switch (s.name) {
      case "serviceweaver_method_count":
        row.calls += value
        break
      case "serviceweaver_method_error_count":
        row.errors += value
        break
      case "serviceweaver_method_latency_micros":
        row.latencySum += value
        row.latencyCount += count
        break
      case "serviceweaver_method_bytes_request":
        row.requestBytes += value
        break
      case "serviceweaver_method_bytes_reply":
        row.replyBytes += value
        break
    }
  }
  return [...rows.values()]
    .map((r) => ({
      component: r.component,
      method: r.method,
      calls: r.calls,
      errors: r.errors,
      meanLatencyMs: r.latencyCount === 0 ? 0 : r.latencySum / r.latencyCount / 1000,
      requestBytes: r.requestBytes,
      replyBytes: r.replyBytes
    }))
    .sort((a, b) => a.component.localeCompare(b.component) || a.method.localeCompare(b.method))
}

/**
 * The traffic graph's edges, weighted by `serviceweaver_method_count`
 * summed over methods and replicas; edges without calls are left out.
 *
 * @since 0.1.0
 * @category combinators
 */
export const edges = (snapshots: ReadonlyArray<Prometheus.MetricSnapshot>): Array<Edge> => {
  const calls = new Map<string, Edge>()
  for (const s of snapshots) {
    if (s.name !== "serviceweaver_method_count" || s.type !== "counter") continue
    const caller = s.labels.caller
    const callee = s.labels.component
    if (caller === undefined || callee === undefined || s.value <= 0) continue
    const key = `${caller}\u0000${callee}`
    calls.set(key, { caller, callee, calls: (calls.get(key)?.calls ?? 0) + s.value })
  }
  return [...calls.values()].sort((a, b) => a.caller.localeCompare(b.caller) || a.callee.localeCompare(b.callee))
}
