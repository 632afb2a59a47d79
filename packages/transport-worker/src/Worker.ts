/**
 * The worker thread's side of `TransportWorker`: in a worker started by the
 * hub, {@link main} imports the app, builds a weavelet hosting the worker's
 * group, serves calls that arrive from the hub, and sends the group's calls
 * to other components to the hub. Outside such a worker it does nothing, so
 * an app module may call it unconditionally.
 *
 * @since 0.1.0
 */
import * as App from "@effect-weaver/runtime/App"
import type * as Component from "@effect-weaver/runtime/Component"
import * as Transport from "@effect-weaver/runtime/Transport"
import * as Weavelet from "@effect-weaver/runtime/Weavelet"
import * as WeaverConfig from "@effect-weaver/runtime/WeaverConfig"
import * as Effect from "effect/Effect"
import * as WorkerThreads from "node:worker_threads"
import { Caller, Dispatcher, type Message } from "./internal/protocol.js"
import type { WorkerData } from "./TransportWorker.js"

/**
 * Whether this thread is a worker the hub started.
 *
 * @since 0.1.0
 * @category running
 */
export const isWorker = (): boolean =>
  !WorkerThreads.isMainThread && (WorkerThreads.workerData as WorkerData | undefined)?.weaverWorker === true

const serve = (
  app: App.App<any, any>,
  extra: ReadonlyArray<Component.Any>,
  data: WorkerData,
  port: WorkerThreads.MessagePort
) =>
  Effect.gen(function*() {
    const config = yield* WeaverConfig.parse(data.config.text, data.config.file, data.config.dir)
    const hosted = new Set(data.group)
    const caller = new Caller(() => Effect.succeed({ postMessage: (m: Message) => port.postMessage(m) }))
    const transport: Transport.Transport["Type"] = {
      name: "worker",
      connect: (component) =>
        hosted.has(component.componentName)
          ? Weavelet.localConnection(component)
          : Effect.succeed({
            remote: true,
            invoke: (call, payload) => caller.invoke(call, payload),
            stream: (call, payload) => caller.stream(call, payload)
          })
    }
    const components = new Map<string, Component.Any>([
      ...app.implementations.map((impl) => [impl.component.componentName, impl.component] as const),
      ...extra.map((c) => [c.componentName, c] as const)
    ])
    const weavelet = yield* App.makeWeavelet(app, {
      config,
      deploymentId: data.deploymentId,
      replicaId: `worker-${WorkerThreads.threadId}`,
      hosted,
      extraComponents: [...components.values()].filter((c) => !app.implementations.some((i) => i.component === c))
    }).pipe(Effect.provideService(Transport.Transport, transport))
    const dispatcher = new Dispatcher(
      { postMessage: (m) => port.postMessage(m) },
      (component, method) => hosted.has(component) ? components.get(component)?.methods[method] : undefined,
      (component) => weavelet.handlers(component)
    )
    port.on("message", (message: Message) => {
      switch (message.t) {
        case "call":
          return dispatcher.call(message)
        case "reply":
          return caller.complete(message.id, message.outcome)
        case "items":
          return caller.items(message.id, message.values)
        case "end":
          return caller.end(message.id)
        case "credit":
          return dispatcher.credit(message.id, message.n)
        case "interrupt":
          return dispatcher.interrupt(message.id)
      }
    })
    port.postMessage({ t: "ready" })
    return yield* Effect.never
  }).pipe(Effect.scoped)

/**
 * Runs the worker's side when this thread is a worker the hub started;
 * does nothing otherwise.
 *
 * @since 0.1.0
 * @category running
 */
export const main = (): void => {
  if (!isWorker() || WorkerThreads.parentPort === null) return
  const data = WorkerThreads.workerData as WorkerData
  report(Effect.flatMap(
    App.importFrom(data.appModule.url, data.appModule.components),
    ({ app, exported }) => serve(app, exported, data, WorkerThreads.parentPort!)
  ))
}

/**
 * The worker's side for an app already loaded: what `Weaver.run(app)` does
 * in a worker the hub started (the app's own binary, under
 * `[single] workers`). Runs until the hub terminates the thread.
 *
 * @since 0.1.0
 * @category running
 */
export const runApp = (app: App.App<any, any>): Effect.Effect<void> =>
  Effect.async<void>(() => {
    if (!isWorker() || WorkerThreads.parentPort === null) return
    report(serve(app, [], WorkerThreads.workerData as WorkerData, WorkerThreads.parentPort))
  })

const report = (effect: Effect.Effect<unknown, unknown>) =>
  Effect.runFork(effect).addObserver((exit) => {
    if (exit._tag === "Failure") {
      WorkerThreads.parentPort?.postMessage({ t: "failed", reason: String(exit.cause) })
      process.exitCode = 1
    }
  })
