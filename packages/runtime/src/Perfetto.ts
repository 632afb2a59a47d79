/**
 * Encodes traces as Chrome trace-event JSON, the format the Perfetto UI
 * (ui.perfetto.dev) and `chrome://tracing` open: a bare array of complete
 * events (`ph: "X"`) plus metadata events (`ph: "M"`) naming processes and
 * threads. Each process of the deployment (app, replica, pid) is one
 * Perfetto process; each span gets its own thread, so overlapping spans
 * never have to nest.
 *
 * @since 0.1.0
 */
import type * as Tracing from "./Tracing.js"

/**
 * One trace event.
 *
 * @since 0.1.0
 * @category models
 */
export type Event =
  | {
    readonly ph: "X"
    readonly name: string
    /** The span kind (`server`, `client`, `internal`, …). */
    readonly cat: string
    readonly pid: number
    readonly tid: number
    /** Start, microseconds since the epoch. */
    readonly ts: number
    /** Duration in microseconds. */
    readonly dur: number
    readonly args: Readonly<Record<string, string | number | boolean>>
  }
  | {
    readonly ph: "M"
    readonly name: "process_name" | "thread_name" | "thread_sort_index"
    readonly pid: number
    readonly tid: number
    readonly args: Readonly<Record<string, string | number>>
  }

/**
 * Encodes spans (of one or more traces). Threads are numbered in order of
 * span start, so Perfetto lists them top-down as the calls happened.
 *
 * @since 0.1.0
 * @category encoding
 */
export const encode = (spans: ReadonlyArray<Tracing.Span>): Array<Event> => {
  const sorted = [...spans].sort((a, b) => a.startMicros - b.startMicros)
  const events: Array<Event> = []
  const processes = new Map<string, number>()
  let nextTid = 1
  for (const span of sorted) {
    const processKey = `${span.replicaId}\0${span.pid}`
    let pid = processes.get(processKey)
    if (pid === undefined) {
      pid = span.pid
      // Two replicas reporting the same OS pid (one process hosting several weavelets) stay apart.
      while ([...processes.values()].includes(pid)) pid++
      processes.set(processKey, pid)
      events.push({
        ph: "M",
        name: "process_name",
        pid,
        tid: 0,
        args: { name: `${span.app} replica ${span.replicaId.slice(0, 8)} (pid ${span.pid})` }
      })
    }
    const tid = nextTid++
    events.push({ ph: "M", name: "thread_name", pid, tid, args: { name: span.name } })
    events.push({ ph: "M", name: "thread_sort_index", pid, tid, args: { sort_index: tid } })
    events.push({
      ph: "X",
      name: span.name,
      cat: span.kind,
      pid,
      tid,
      ts: span.startMicros,
      dur: Math.max(0, span.endMicros - span.startMicros),
      args: {
        ...span.attributes,
        traceId: span.traceId,
        spanId: span.spanId,
        ...(span.parentSpanId !== undefined ? { parentSpanId: span.parentSpanId } : {}),
        status: span.status,
        ...(span.statusMessage !== undefined ? { statusMessage: span.statusMessage } : {})
      }
    })
  }
  return events
}
