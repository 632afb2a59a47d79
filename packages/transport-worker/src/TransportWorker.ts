/**
 * A transport over `node:worker_threads`: each colocation group runs in a
 * worker thread of this process, with its own event loop and so its own
 * core, and calls reach it over a MessagePort, encoded with the methods'
 * schemas. Components of no group are hosted by this thread, as are fakes.
 * Written only against the runtime's public Transport SPI, to show that a
 * transport plugs in: it passes the conformance kit like the others.
 *
 * The thread that makes the transport is the hub: a call between two
 * workers goes through it, relayed as it is (no decoding); calls from a
 * worker to a component of this thread are served here.
 *
 * Each worker imports the app from a module (`appModule.url`) that also
 * starts the worker's side (`Worker.main` from `@effect-weaver/transport-worker/Worker`)
 * when evaluated in a worker: a bundle made for it, as `weavertest`'s Worker
 * runner makes, or an entry file of the app's own.
 *
 * @since 0.1.0
 */
import type * as Component from "@effect-weaver/runtime/Component"
import { RemoteCallError } from "@effect-weaver/runtime/ComponentError"
import * as Transport from "@effect-weaver/runtime/Transport"
import * as Weavelet from "@effect-weaver/runtime/Weavelet"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as WorkerThreads from "node:worker_threads"
import { Caller, type CallMessage, Dispatcher, type Message } from "./internal/protocol.js"

/**
 * What a worker is told when it starts (its `workerData`).
 *
 * @since 0.1.0
 * @category models
 */
export interface WorkerData {
  readonly weaverWorker: true
  readonly deploymentId: string
  readonly appModule: { readonly url: string; readonly components: ReadonlyArray<string> }
  /** The components this worker hosts. */
  readonly group: ReadonlyArray<string>
  /** The config, as text; `file` names it in errors. */
  readonly config: { readonly file: string; readonly dir: string; readonly text: string }
}

/**
 * Options of {@link make}.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly deploymentId: string
  /** The module workers import: it exports the app, and starts the worker's side in a worker. */
  readonly appModule: { readonly url: string; readonly components: ReadonlyArray<string> }
  /** The colocation groups that run in worker threads, one thread each. */
  readonly groups: ReadonlyArray<ReadonlyArray<string>>
  readonly config: { readonly file: string; readonly dir: string; readonly text: string }
  /**
   * The application's singletons: the thread of a group holding one starts
   * with the hub, so that the singleton is constructed as the application
   * starts (each group has one thread, so it runs once anyway).
   *
   * @since 0.2.0
   */
  readonly singletons?: ReadonlyArray<string> | undefined
}

/**
 * The hub: the transport of this thread, and how it serves its own
 * components to the workers.
 *
 * @since 0.1.0
 * @category models
 */
export interface Hub {
  readonly transport: Transport.Transport["Type"]
  /** Serves calls from workers to the components this thread hosts, with these handlers. */
  readonly serve: (
    handlersOf: (
      component: string
    ) => Effect.Effect<Record<string, (payload: unknown) => Effect.Effect<unknown, unknown>>>,
    specOf: (component: string, method: string) => Component.AnyMethod | undefined
  ) => void
  /** How many worker threads have been started, restarts included. */
  readonly started: () => number
  /**
   * Starts the threads of the groups holding one of {@link Options.singletons}
   * (once): {@link Hub.serve} does, so that their construction can call this
   * thread's components, and so does {@link layer}.
   *
   * @since 0.2.0
   */
  readonly startSingletons: () => void
}

interface Thread {
  worker: WorkerThreads.Worker | undefined
  ready: Promise<WorkerThreads.Worker> | undefined
  readonly caller: Caller
  /** Calls this worker relays on for another worker: relay id → where the reply goes. */
  readonly relayed: Map<number, { readonly to: Thread; readonly id: number }>
  dispatcher: Dispatcher | undefined
}

/**
 * The colocation groups of an app's components: one per `colocate` entry of
 * weaver.toml, one per other component; `exclude`d ones (fakes, or what
 * the hub's thread hosts) in none.
 *
 * @since 0.1.0
 * @category constructors
 */
export const groupsOf = (
  components: ReadonlyArray<string>,
  colocate: ReadonlyArray<ReadonlyArray<string>>,
  exclude: (component: string) => boolean = () => false
): ReadonlyArray<ReadonlyArray<string>> => {
  const names = components.filter((name) => !exclude(name))
  const placed = new Set<string>()
  const groups: Array<ReadonlyArray<string>> = []
  for (const name of names) {
    if (placed.has(name)) continue
    const group = (colocate.find((entry) => entry.includes(name)) ?? [name])
      .filter((member) => names.includes(member) && !placed.has(member))
    group.forEach((member) => placed.add(member))
    groups.push(group)
  }
  return groups
}

/**
 * Makes the hub: worker threads start on the first call to their group (or,
 * for a group holding one of {@link Options.singletons}, with
 * {@link Hub.startSingletons}) and stop with the scope. A worker that dies fails the calls in flight to it
 * (`Unreachable`, which the call pipeline retries for retriable methods) and
 * is started again on the next call.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Hub, never, Scope.Scope> =>
  Effect.gen(function*() {
    const groupOf = new Map<string, number>()
    options.groups.forEach((group, i) => group.forEach((component) => groupOf.set(component, i)))
    let serving:
      | { handlersOf: Parameters<Hub["serve"]>[0]; specOf: Parameters<Hub["serve"]>[1] }
      | undefined
    let starts = 0
    let relayIds = -1
    let closed = false

    const threads: Array<Thread> = options.groups.map((_, i) => {
      const thread: Thread = {
        worker: undefined,
        ready: undefined,
        relayed: new Map(),
        dispatcher: undefined,
        caller: new Caller(() =>
          Effect.tryPromise({
            try: () => spawn(thread, i),
            catch: (error) =>
              new RemoteCallError({
                component: options.groups[i]![0]!,
                method: "-",
                reason: "Unreachable",
                detail: `worker thread of ${options.groups[i]!.join(", ")}: ${
                  error instanceof Error ? error.message : String(error)
                }`
              })
          })
        )
      }
      return thread
    })

    const post = (thread: Thread, message: Message) => thread.worker?.postMessage(message)

    /** A call from a worker: to another worker (relayed as it is) or to this thread (served here). */
    const route = (from: Thread, message: CallMessage) => {
      const target = groupOf.get(message.component)
      if (target !== undefined) {
        const to = threads[target]!
        const id = relayIds--
        to.relayed.set(id, { to: from, id: message.id })
        void spawn(to, target).then(
          (worker) => worker.postMessage({ ...message, id }),
          (error) => {
            to.relayed.delete(id)
            post(from, {
              t: "reply",
              id: message.id,
              outcome: { _tag: "System", reason: "Unreachable", detail: String(error) }
            })
          }
        )
        return
      }
      if (serving === undefined) {
        return post(from, {
          t: "reply",
          id: message.id,
          outcome: {
            _tag: "System",
            reason: "Unreachable",
            detail: `component ${message.component} is not served here`
          }
        })
      }
      from.dispatcher ??= new Dispatcher({ postMessage: (m) => post(from, m) }, serving.specOf, serving.handlersOf)
      from.dispatcher.call(message)
    }

    const spawn = (thread: Thread, index: number): Promise<WorkerThreads.Worker> => {
      if (thread.ready !== undefined) return thread.ready
      if (closed) return Promise.reject(new Error("the transport is closed"))
      starts++
      const data: WorkerData = {
        weaverWorker: true,
        deploymentId: options.deploymentId,
        appModule: options.appModule,
        group: options.groups[index]!,
        config: options.config
      }
      const worker = new WorkerThreads.Worker(new URL(options.appModule.url), { workerData: data })
      thread.worker = worker
      thread.ready = new Promise((resolve, reject) => {
        worker.on(
          "message",
          (message: Message | { readonly t: "ready" } | { readonly t: "failed"; readonly reason: string }) => {
            switch (message.t) {
              case "ready":
                return resolve(worker)
              case "failed":
                return reject(new Error(message.reason))
              case "reply": {
                if (message.id >= 0) return thread.caller.complete(message.id, message.outcome)
                // The reply to a relayed call: back to the worker that made it.
                const relay = thread.relayed.get(message.id)
                if (relay === undefined) return
                thread.relayed.delete(message.id)
                return post(relay.to, { t: "reply", id: relay.id, outcome: message.outcome })
              }
              case "items":
              case "end": {
                if (message.id >= 0) {
                  return message.t === "items"
                    ? thread.caller.items(message.id, message.values)
                    : thread.caller.end(message.id)
                }
                // A relayed stream: back to the worker that called.
                const relay = thread.relayed.get(message.id)
                if (relay === undefined) return
                if (message.t === "end") thread.relayed.delete(message.id)
                return post(relay.to, { ...message, id: relay.id })
              }
              case "credit": {
                // Credit for a stream served here, or relayed to another worker.
                thread.dispatcher?.credit(message.id, message.n)
                for (const other of threads) {
                  for (const [id, relay] of other.relayed) {
                    if (relay.to === thread && relay.id === message.id) post(other, { ...message, id })
                  }
                }
                return
              }
              case "call":
                return route(thread, message)
              case "interrupt": {
                // The worker's caller gave up: a call of its served here, or relayed to another worker.
                thread.dispatcher?.interrupt(message.id)
                for (const other of threads) {
                  for (const [id, relay] of other.relayed) {
                    if (relay.to === thread && relay.id === message.id) {
                      other.relayed.delete(id)
                      post(other, { t: "interrupt", id })
                    }
                  }
                }
              }
            }
          }
        )
        worker.once("error", (error) => reject(error))
        worker.once("exit", (code) => {
          reject(new Error(`exited with code ${code}`))
          thread.worker = undefined
          thread.ready = undefined
          thread.dispatcher?.stop()
          thread.dispatcher = undefined
          thread.caller.failAll(`the worker thread of ${options.groups[index]!.join(", ")} exited (code ${code})`)
          for (const [, relay] of thread.relayed) {
            post(relay.to, {
              t: "reply",
              id: relay.id,
              outcome: { _tag: "System", reason: "Unreachable", detail: `the worker thread exited (code ${code})` }
            })
          }
          thread.relayed.clear()
        })
      })
      // A worker that never got ready is not waited for by whoever spawned it later: it is started again.
      thread.ready.catch(() => undefined)
      return thread.ready
    }

    yield* Effect.addFinalizer(() =>
      Effect.promise(async () => {
        closed = true
        await Promise.all(threads.map((thread) => thread.worker?.terminate()))
      })
    )
    let singletonsStarted = false
    const startSingletons = () => {
      if (singletonsStarted) return
      singletonsStarted = true
      // A worker that cannot start is reported to the calls that need it, as for a worker started by a call.
      options.groups.forEach((group, i) => {
        if (group.some((component) => options.singletons?.includes(component))) spawn(threads[i]!, i).catch(() => {})
      })
    }

    const transport: Transport.Transport["Type"] = {
      name: "worker",
      connect: (component) => {
        const group = groupOf.get(component.componentName)
        if (group === undefined) return Weavelet.localConnection(component)
        const caller = threads[group]!.caller
        return Effect.succeed({
          remote: true,
          invoke: (call, payload) => caller.invoke(call, payload),
          stream: (call, payload) => caller.stream(call, payload)
        })
      }
    }
    return {
      transport,
      serve: (handlersOf, specOf) => {
        serving = { handlersOf, specOf }
        startSingletons()
      },
      startSingletons,
      started: () => starts
    } satisfies Hub
  })

/**
 * The hub's transport as a Layer, for a thread that serves no component
 * to the workers.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<Transport.Transport> =>
  Layer.scoped(
    Transport.Transport,
    Effect.map(make(options), (hub) => {
      hub.startSingletons()
      return hub.transport
    })
  )
