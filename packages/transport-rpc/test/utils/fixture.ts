import { Component, Transport, Weaver, WeaverConfig } from "@effect-weaver/core"
import { App, Weavelet } from "@effect-weaver/runtime"
import { Server, TransportRpc } from "@effect-weaver/transport-rpc"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as ChildProcess from "node:child_process"
import * as Net from "node:net"

const isArray = (u: unknown): u is ReadonlyArray<string> => Array.isArray(u)

export class Nope extends Schema.TaggedError<Nope>()("Nope", { why: Schema.String }) {}

export const Stamp = Schema.Struct({ at: Schema.Date, n: Schema.NumberFromString })

export class Echo extends Component.Tag("test/Echo")<Echo>()({
  echo: Component.method({ payload: Schema.String, success: Schema.String }),
  stamp: Component.method({ payload: Stamp, success: Stamp }),
  ping: Component.method({}),
  fail: Component.method({ payload: Schema.String, error: Nope }),
  die: Component.method({ payload: Schema.String }),
  hang: Component.method({}),
  hangBriefly: Component.method({ timeout: "50 millis" }),
  whoami: Component.method({ success: Schema.String }),
  count: Component.method({ success: Schema.Number }),
  countOnce: Component.method({ success: Schema.Number, retry: false }),
  hasDeadline: Component.method({ success: Schema.Boolean }),
  routed: Component.method({ payload: Schema.String, success: Schema.String, routeBy: (key) => key }),
  traceId: Component.method({ success: Schema.String }),
  items: Component.method({
    payload: Schema.Struct({ count: Schema.Number, size: Schema.Number }),
    success: Schema.String,
    stream: true
  }),
  ticks: Component.method({ success: Schema.Number, stream: true }),
  produced: Component.method({ success: Schema.Number }),
  failAfter: Component.method({ payload: Schema.Number, success: Schema.Number, error: Nope, stream: true }),
  memory: Component.method({
    payload: Schema.Boolean,
    success: Schema.Struct({ heap: Schema.Number, rss: Schema.Number })
  })
}) {}

/** The same component name with a different payload schema, to send payloads the server cannot decode. */
export class EchoSkewed extends Component.Tag("test/Echo")<EchoSkewed>()({
  echo: Component.method({ payload: Schema.Number, success: Schema.String })
}) {}

export interface Hooks {
  readonly replica: string
  calls: number
  /** Runs on every `count`/`countOnce` call with the call number (from 1). */
  onCount: (n: number) => Effect.Effect<void>
  readonly started: Deferred.Deferred<void>
  readonly interrupted: Deferred.Deferred<void>
  /** Elements the streaming methods produced (pulled from their source). */
  produced: number
  /** Completed when the `ticks` producer's finalizer runs. */
  readonly ticksStopped: Deferred.Deferred<void>
  /** Memory at the last `memory(true)`, and the peaks sampled by `items` since. */
  readonly memory: { baseHeap: number; baseRss: number; peakHeap: number; peakRss: number }
}

export const makeHooks = (replica = "r1") =>
  Effect.gen(function*() {
    const hooks: Hooks = {
      replica,
      calls: 0,
      onCount: () => Effect.void,
      started: yield* Deferred.make<void>(),
      interrupted: yield* Deferred.make<void>(),
      produced: 0,
      ticksStopped: yield* Deferred.make<void>(),
      memory: { baseHeap: 0, baseRss: 0, peakHeap: 0, peakRss: 0 }
    }
    return hooks
  })

const counted = (hooks: Hooks) =>
  Effect.suspend(() => {
    const n = ++hooks.calls
    return Effect.as(hooks.onCount(n), n)
  })

const hang = (hooks: Hooks) =>
  Deferred.succeed(hooks.started, undefined).pipe(
    Effect.zipRight(Effect.never),
    Effect.onInterrupt(() => Deferred.succeed(hooks.interrupted, undefined))
  )

/** Samples the memory a process holds: live objects only, where the process may collect garbage on demand. */
const sampleMemory = (hooks: Hooks) => {
  ;(globalThis as { gc?: () => void }).gc?.()
  const { heapUsed, rss } = process.memoryUsage()
  hooks.memory.peakHeap = Math.max(hooks.memory.peakHeap, heapUsed)
  hooks.memory.peakRss = Math.max(hooks.memory.peakRss, rss)
}

const produced = (hooks: Hooks) =>
  Effect.sync(() => {
    if (++hooks.produced % 8192 === 0) sampleMemory(hooks)
  })

export const echoImpl = (hooks: Hooks) =>
  Component.implement(
    Echo,
    Effect.succeed({
      echo: (s: string) => Effect.succeed(s),
      stamp: (s: typeof Stamp.Type) => Effect.succeed({ at: new Date(s.at.getTime() + 1000), n: s.n + 1 }),
      ping: () => Effect.void,
      fail: (why: string) => Effect.fail(new Nope({ why })),
      die: (why: string) => Effect.die(new Error(why)),
      hang: () => hang(hooks),
      hangBriefly: () => hang(hooks),
      whoami: () => Effect.succeed(hooks.replica),
      count: () => counted(hooks),
      countOnce: () => counted(hooks),
      hasDeadline: () => Effect.map(FiberRef.get(Component.currentDeadline), (d) => d !== undefined),
      routed: () => Effect.succeed(hooks.replica),
      traceId: () =>
        Effect.currentParentSpan.pipe(Effect.map((span) => span.traceId), Effect.orElseSucceed(() => "none")),
      items: ({ count, size }: { readonly count: number; readonly size: number }) =>
        Stream.range(0, count - 1).pipe(
          Stream.rechunk(1),
          Stream.tap(() => produced(hooks)),
          Stream.map((i) => String(i).padEnd(size, "x"))
        ),
      ticks: () =>
        Stream.iterate(0, (n) => n + 1).pipe(
          Stream.rechunk(1),
          // Suspends between elements, as a real producer does, so that timers and sockets get their turn.
          Stream.tap(() => Effect.zipRight(Effect.sleep(0), produced(hooks))),
          Stream.ensuring(Deferred.succeed(hooks.ticksStopped, undefined))
        ),
      produced: () => Effect.sync(() => hooks.produced),
      failAfter: (n: number) => Stream.concat(Stream.range(1, n), Stream.fail(new Nope({ why: `after ${n}` }))),
      memory: (reset: boolean) =>
        Effect.sync(() => {
          const m = hooks.memory
          if (reset) {
            ;(globalThis as { gc?: () => void }).gc?.()
            const { heapUsed, rss } = process.memoryUsage()
            m.baseHeap = m.peakHeap = heapUsed
            m.baseRss = m.peakRss = rss
          }
          if (!reset) sampleMemory(hooks)
          return { heap: m.peakHeap - m.baseHeap, rss: m.peakRss - m.baseRss }
        })
    })
  )

/** Serves `hooks`' Echo replica; the server stops when the scope closes. */
export const serveReplica = (
  hooks: Hooks,
  options: Server.Options & { readonly deploymentId: string }
): Effect.Effect<Server.Server, never, Scope.Scope> =>
  Effect.gen(function*() {
    const transport = yield* TransportRpc.make({ resolve: () => Stream.empty })
    const weavelet = yield* App.makeWeavelet(Weaver.app({ components: [echoImpl(hooks)] }), {
      config: WeaverConfig.empty(),
      deploymentId: options.deploymentId,
      replicaId: hooks.replica
    }).pipe(Effect.provideService(Transport.Transport, transport), Effect.orDie)
    const { deploymentId: _, ...serverOptions } = options
    return yield* Server.serve(serverOptions).pipe(
      Effect.provideService(Weavelet.Weavelet, weavelet),
      Effect.orDie
    )
  })

/** A client of `tag` in a weavelet that hosts nothing, reaching replicas through `resolve`. */
export const clientOf = <T extends Component.Any & Context.Tag<any, any>>(
  tag: T,
  options: Omit<TransportRpc.Options, "resolve"> & {
    readonly deploymentId: string
    readonly addresses: ReadonlyArray<string> | Stream.Stream<ReadonlyArray<string>>
    readonly retry?: Partial<Weavelet.RetryPolicy>
  }
): Effect.Effect<Context.Tag.Service<T>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const addresses = options.addresses
    const transport = yield* TransportRpc.make({
      ...options,
      resolve: () => isArray(addresses) ? Stream.make(addresses) : addresses
    })
    const weavelet = yield* App.makeWeavelet(Weaver.app({ components: [] }), {
      config: WeaverConfig.empty(),
      deploymentId: options.deploymentId,
      retry: options.retry,
      extraComponents: [tag]
    }).pipe(Effect.provideService(Transport.Transport, transport), Effect.orDie)
    return Context.unsafeGet(weavelet.clients("main"), tag)
  })

/** A TCP proxy in front of `target` whose connections the test can sever. */
export const proxy = (target: string): Effect.Effect<
  { readonly address: string; readonly sever: () => void; readonly accepted: () => number },
  never,
  Scope.Scope
> =>
  Effect.acquireRelease(
    Effect.async<{ server: Net.Server; address: string; sever: () => void; accepted: () => number }>((resume) => {
      const sockets = new Set<Net.Socket>()
      let accepted = 0
      const [host, port] = target.split(":")
      const server = Net.createServer((down) => {
        accepted++
        const up = Net.connect({ host: host!, port: Number(port) })
        sockets.add(down).add(up)
        down.pipe(up)
        up.pipe(down)
        const close = () => {
          down.destroy()
          up.destroy()
          sockets.delete(down)
          sockets.delete(up)
        }
        down.on("error", close).on("close", close)
        up.on("error", close).on("close", close)
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as Net.AddressInfo
        resume(Effect.succeed({
          server,
          address: `127.0.0.1:${port}`,
          sever: () => {
            for (const socket of sockets) socket.destroy()
            sockets.clear()
          },
          accepted: () => accepted
        }))
      })
    }),
    ({ server, sever }) =>
      Effect.async<void>((resume) => {
        sever()
        server.close(() => resume(Effect.void))
      })
  )

/** Raw bytes to `address`; resolves once the server closes the socket or `waitMillis` pass. */
export const sendRaw = (address: string, bytes: Uint8Array, waitMillis = 50) =>
  Effect.async<{ readonly closedByServer: boolean; readonly received: Buffer }>((resume) => {
    const [host, port] = address.split(":")
    const socket = Net.connect({ host: host!, port: Number(port) })
    const chunks: Array<Buffer> = []
    let done = false
    const finish = (closedByServer: boolean) => {
      if (done) return
      done = true
      clearTimeout(timer)
      socket.destroy()
      resume(Effect.succeed({ closedByServer, received: Buffer.concat(chunks) }))
    }
    const timer = setTimeout(() => finish(false), waitMillis)
    socket.on("data", (chunk) => chunks.push(chunk))
    socket.on("end", () => finish(true))
    socket.on("close", () => finish(true))
    socket.on("error", () => finish(true))
    socket.write(bytes)
  })

/** Starts `test/fixtures/replica.ts` in a child process; SIGKILLed by pid when the scope closes. */
export const spawnReplica = (deploymentId: string) =>
  Effect.acquireRelease(
    Effect.async<{ readonly pid: number; readonly address: string; readonly child: ChildProcess.ChildProcess }, Error>(
      (resume) => {
        const script = new URL("../fixtures/replica.ts", import.meta.url).pathname
        const child = ChildProcess.spawn(
          process.execPath,
          ["--expose-gc", "--conditions=@effect-weaver/source", "--import", "tsx", script, deploymentId],
          { stdio: ["pipe", "pipe", "inherit"] }
        )
        let out = ""
        const timer = setTimeout(() => {
          child.kill("SIGKILL")
          resume(Effect.fail(new Error("replica did not start within 20 s")))
        }, 20_000)
        child.stdout!.on("data", (chunk: Buffer) => {
          out += chunk.toString()
          const match = /PORT (\d+)/.exec(out)
          if (match) {
            clearTimeout(timer)
            resume(Effect.succeed({ pid: child.pid!, address: `127.0.0.1:${match[1]}`, child }))
          }
        })
        child.on("error", (error) => {
          clearTimeout(timer)
          resume(Effect.fail(error))
        })
      }
    ),
    ({ child, pid }) =>
      Effect.sync(() => {
        if (child.exitCode === null && child.signalCode === null) process.kill(pid, "SIGKILL")
      })
  )
