/**
 * A worker thread of a simulator's search (`Sim.search` with `workers`): it
 * imports the workload from the bundle it runs in, runs its share of the
 * search's candidates and reports what it found to the search's thread.
 *
 * @internal
 */
import * as WorkerThreads from "node:worker_threads"
import { run, type Workload } from "../Sim.js"
import { shapeOf, Share, type WorkerData, type WorkerMessage } from "./simThreads.js"

const isWorkload = (value: unknown): value is Workload =>
  typeof value === "object" && value !== null && "ops" in value && "app" in value &&
  typeof (value as { readonly app: unknown }).app === "object" &&
  (value as { readonly app: { readonly _tag?: unknown } }).app?._tag === "App"

/** The workload the search runs, among the module's exports, or why it is not there. */
const workloadIn = (module: Record<string, unknown>, data: WorkerData): Workload | string => {
  if (data.export !== undefined) {
    const value = module[data.export]
    if (!isWorkload(value)) return `the module exports no workload named ${data.export}`
    return shapeOf(value) === data.shape
      ? value
      : `its export ${data.export} is a workload of ${shapeOf(value)}, the search's is of ${data.shape}`
  }
  const found = Object.entries(module).filter(([, value]) => isWorkload(value) && shapeOf(value) === data.shape)
  if (found.length === 1) return found[0]![1] as Workload
  return found.length === 0
    ? `the module exports no workload of ${data.shape} (export it, or name it with workers.export)`
    : `the module exports ${found.length} workloads of ${data.shape} (${
      found.map(([name]) => name).join(", ")
    }): name one with workers.export`
}

/** Starts the thread's share if this thread is a search's, else does nothing. */
export const main = (): void => {
  const data = WorkerThreads.workerData as WorkerData | undefined
  const port = WorkerThreads.parentPort
  if (data?.weaverSim !== true || port === null) return
  const post = (message: WorkerMessage) => port.postMessage(message)
  ;(import(data.moduleUrl) as Promise<Record<string, unknown>>).then(
    (module) => {
      const workload = workloadIn(module, data)
      if (typeof workload === "string") return post({ t: "error", reason: workload })
      const share: Share = new Share(run, workload, data.order, data.deadline, {
        found: (index, options) => post({ t: "found", index, options }),
        idle: () => post({ t: "ran", executions: share.executions, ops: share.ops }),
        error: (reason) => post({ t: "error", reason })
      })
      port.on("message", (message: WorkerMessage) => {
        if (message.t === "limit") share.lower(message.index)
        else if (message.t === "chunk") share.chunk(message.from, message.to)
      })
      // Ready: the first chunk, please.
      post({ t: "ran", executions: 0, ops: 0 })
    },
    (error) => post({ t: "error", reason: `cannot import the workload: ${String(error)}` })
  )
}
