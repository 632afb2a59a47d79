/**
 * The envelope: the deployer's side of one weavelet process. It starts the
 * process with its bootstrap, serves the control calls the weavelet makes
 * on a private Unix socket, relays the process's stdout and stderr line by
 * line, probes its health, and kills the process (its whole process group)
 * when its scope closes.
 *
 * @since 0.1.0
 */
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import * as NodeSocketServer from "@effect/platform-node/NodeSocketServer"
import * as RpcClient from "@effect/rpc/RpcClient"
import type { RpcClientError } from "@effect/rpc/RpcClientError"
import * as RpcServer from "@effect/rpc/RpcServer"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import type * as Certificates from "./Certificates.js"
import * as Control from "./Control.js"
import type * as Listener from "./Listener.js"
import * as LogFile from "./LogFile.js"
import * as Logging from "./Logging.js"
import * as Profiling from "./Profiling.js"
import type * as Prometheus from "./Prometheus.js"
import type * as Tracing from "./Tracing.js"

/**
 * A weavelet process could not be started.
 *
 * @since 0.1.0
 * @category errors
 */
export class EnvelopeError extends Data.TaggedError("EnvelopeError")<{
  readonly group: string
  readonly reason: string
}> {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `cannot start a replica of ${this.group}: ${this.reason}`
  }
}

/**
 * A call to a weavelet failed: it is not ready yet, or it did not answer.
 *
 * @since 0.1.0
 * @category errors
 */
export class ReplicaCallError extends Data.TaggedError("ReplicaCallError")<{
  readonly replicaId: string
  readonly reason: string
}> {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `replica ${this.replicaId}: ${this.reason}`
  }
}

/**
 * What the deployer does for the control calls of one weavelet (Service
 * Weaver's `EnvelopeHandler`); see docs/DEPLOYERS.md.
 *
 * @since 0.1.0
 * @category models
 */
export interface Handler {
  /** The weavelet serves its components on `address` (the internal address it bound) and is process `pid`. */
  readonly ready: (address: string, pid: number) => Effect.Effect<void>
  /** The weavelet needs `component` (`ActivateComponent`): start the group hosting it if it is not running. */
  readonly activate: (component: string) => Effect.Effect<void, Control.ControlError>
  /**
   * The ready replica addresses of `component`'s group (`UpdateRoutingInfo`): a
   * new set on every change. The weavelet calls the component's replicas from
   * the first set on; an empty set is best not emitted.
   */
  readonly routing: (component: string) => Stream.Stream<ReadonlyArray<string>>
  /**
   * Listener `listener` of the weavelet serves on `address` (`ExportListener`),
   * speaking `kind`: HTTP (`Weaver.serve`), or any protocol over TCP
   * (`Weaver.listener`), which a proxy must pass through byte for byte.
   * Answers the address to announce to users, e.g. that of a proxy.
   */
  readonly exportListener: (
    listener: string,
    address: string,
    kind: Listener.Kind
  ) => Effect.Effect<string, Control.ControlError>
  /** Receives the weavelet's finished spans; dropped if absent. */
  readonly traceSpans?: ((spans: ReadonlyArray<Tracing.Span>) => Effect.Effect<void>) | undefined
  /**
   * The weavelet's mutual TLS credentials (`GetSelfCertificate`), issued by
   * the deployment's authority for its colocation group: required when the
   * bootstrap says `mtls`. They reach the weavelet over the control socket
   * only, never through a file or the environment.
   */
  readonly certificate?: Effect.Effect<Certificates.Credentials, Control.ControlError> | undefined
  /**
   * The components a peer of colocation group `group` may call
   * (`VerifyClientCertificate`): those its members require, by the call
   * graph. Absent: every component.
   */
  readonly authorize?: ((group: string) => Effect.Effect<ReadonlyArray<string>>) | undefined
  /** The code of `caller`, in this weavelet, resolved `component`: an edge of the call graph. */
  readonly requires?: ((caller: string, component: string) => Effect.Effect<void>) | undefined
  /**
   * The weavelet stopped answering its health probe (see {@link HealthOptions});
   * `reason` says for how long. Called before the envelope kills the process:
   * take its address out of routing here, so that callers stop picking it at
   * once. Its exit follows, with {@link ExitStatus} `unhealthy` set.
   */
  readonly unhealthy?: ((reason: string) => Effect.Effect<void>) | undefined
}

/**
 * How the process ended.
 *
 * @since 0.1.0
 * @category models
 */
export interface ExitStatus {
  readonly code: number | null
  readonly signal: string | null
  /** Set when the envelope killed the process because it stopped answering its health probe: why. */
  readonly unhealthy?: string | undefined
}

/**
 * The health probe of a weavelet (Service Weaver's `GetHealth`): once the
 * weavelet is ready, its envelope calls `GetHealth` (`Control.WeaveletRpcs`)
 * every `interval`. The weavelet answers on its event loop, so a process
 * that is stopped (SIGSTOP), spins in a busy loop or is otherwise blocked
 * does not answer. One that has answered no probe for `unhealthyAfter` is
 * unhealthy: the envelope calls `Handler.unhealthy`, then kills the process
 * group with SIGKILL, and `exited` completes as for a crash.
 *
 * `unhealthyAfter` must be longer than `interval`, and long enough for the
 * weavelet's longest garbage-collection pause (V8's are usually well under
 * a second). A probe that timed out while the envelope's own process was
 * stalled gets one more try.
 *
 * @since 0.1.0
 * @category models
 */
export interface HealthOptions {
  /** How often to probe (default 1 s). */
  readonly interval: Duration.DurationInput
  /** How long without an answer makes the weavelet unhealthy (default 3 s). */
  readonly unhealthyAfter: Duration.DurationInput
}

/**
 * The default {@link HealthOptions}: a probe every second, unhealthy after
 * three seconds without an answer.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultHealth: { readonly interval: Duration.Duration; readonly unhealthyAfter: Duration.Duration } = {
  interval: Duration.seconds(1),
  unhealthyAfter: Duration.seconds(3)
}

/**
 * Health options with their defaults filled in, or the reason they are
 * refused (naming the option and the value); `undefined` when probing is
 * off (`false`). {@link make} checks its `health` option with it; a deployer
 * may check its own up front.
 *
 * @since 0.1.0
 * @category constructors
 */
export const checkHealth = (
  health: Partial<HealthOptions> | false | undefined
): Either.Either<typeof defaultHealth | undefined, string> => {
  if (health === false) return Either.right(undefined)
  const duration = (name: keyof HealthOptions): Either.Either<Duration.Duration, string> => {
    const input = health?.[name]
    if (input === undefined) return Either.right(defaultHealth[name])
    const decoded = Duration.decodeUnknown(input)
    return decoded._tag === "Some" && Duration.isFinite(decoded.value) && Duration.toMillis(decoded.value) > 0
      ? Either.right(decoded.value)
      : Either.left(`health.${name}: expected a positive finite duration, got ${JSON.stringify(String(input))}`)
  }
  return Either.flatMap(
    Either.all({ interval: duration("interval"), unhealthyAfter: duration("unhealthyAfter") }),
    (resolved) =>
      Duration.greaterThan(resolved.unhealthyAfter, resolved.interval)
        ? Either.right(resolved)
        : Either.left(
          `health.unhealthyAfter (${Duration.format(resolved.unhealthyAfter)}) must be longer than health.interval ` +
            `(${Duration.format(resolved.interval)})`
        )
  )
}

/**
 * Options of {@link make}.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /**
   * The bootstrap, without the control socket (the envelope picks it, and
   * the weavelet socket). `internalAddress` is the address the weavelet must
   * serve its components on, e.g. `127.0.0.1:0`.
   */
  readonly bootstrap: Omit<Control.Bootstrap, "controlSocket" | "mtls" | "listeners"> & {
    /** Whether the weavelet uses mutual TLS (default false); the handler's `certificate` then issues its credentials. */
    readonly mtls?: boolean | undefined
    /** Where each listener binds (default: any free port on loopback). */
    readonly listeners?: Readonly<Record<string, string>> | undefined
  }
  /** Directory for the control socket (private to the deployment). */
  readonly socketDir: string
  /** The program and its arguments, e.g. `node [--enable-source-maps] main.js`. */
  readonly command: string
  readonly args: ReadonlyArray<string>
  readonly env: Readonly<Record<string, string | undefined>>
  readonly cwd?: string | undefined
  readonly handler: Handler
  /** Receives each line the process writes. */
  readonly output: (stream: "stdout" | "stderr", line: string) => void
  /** The health probe (see {@link HealthOptions}); on by default with {@link defaultHealth}, off with `false`. */
  readonly health?: Partial<HealthOptions> | false | undefined
}

/**
 * A running weavelet process: the service {@link make} starts and
 * {@link layer} provides, one per process.
 *
 * @since 0.1.0
 * @category tags
 */
export class Envelope extends Context.Tag("@effect-weaver/runtime/Envelope")<Envelope, {
  readonly replicaId: string
  readonly pid: number
  /** Completes when the process has exited. */
  readonly exited: Effect.Effect<ExitStatus>
  /** Sends a signal to the process group. */
  readonly kill: (signal: NodeJS.Signals) => void
  /** The weavelet's metric snapshots (`GetMetrics`); fails if it is not ready or does not answer within 10 s. */
  readonly metrics: Effect.Effect<ReadonlyArray<Prometheus.MetricSnapshot>, ReplicaCallError>
  /**
   * A gzipped pprof profile of the weavelet (`GetProfile`). Fails with the
   * weavelet's `ProfilingError`, or with reason `failed` if it is not ready
   * or does not answer within the duration plus 30 s.
   */
  readonly profile: (options: Profiling.CollectOptions) => Effect.Effect<Uint8Array, Profiling.ProfilingError>
}>() {}

/**
 * The log entry a line of a weavelet's output carries (what {@link Options}'
 * `output` receives): the entry the weavelet logged, for a stderr line that
 * starts with `Control.logMarker` (Service Weaver's `HandleLogEntry`), or else
 * the line itself as an entry of level `stdout` or `stderr` from `origin`.
 * Print it with `Logging.pretty`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const logEntry = (
  origin: LogFile.OutputOrigin,
  stream: "stdout" | "stderr",
  line: string
): Logging.Entry => {
  if (stream === "stderr" && line.startsWith(Control.logMarker)) {
    const entry = LogFile.decode(line.slice(Control.logMarker.length))
    if (Option.isSome(entry)) return entry.value
  }
  return LogFile.outputEntry(origin, stream, line)
}

type WeaveletClient = RpcClient.FromGroup<typeof Control.WeaveletRpcs, RpcClientError>

/**
 * The longest line of a weavelet's output passed on whole: longer ones are
 * cut into pieces of this length, so that a process that writes without
 * newlines cannot make its deployer hold all it writes.
 *
 * @since 0.1.0
 * @category constants
 */
export const maxOutputLine = 1024 * 1024

const lines = (stream: NodeJS.ReadableStream | null, emit: (line: string) => void) => {
  if (stream === null) return
  let buffered = ""
  stream.setEncoding("utf8")
  stream.on("data", (chunk: string) => {
    // Only the chunk is searched for newlines: what is buffered has none (searching it again on every chunk
    // would be quadratic in the length of a long line).
    let start = 0
    let newline = chunk.indexOf("\n")
    while (newline >= 0) {
      emit(buffered + chunk.slice(start, newline))
      buffered = ""
      start = newline + 1
      newline = chunk.indexOf("\n", start)
    }
    buffered += chunk.slice(start)
    while (buffered.length > maxOutputLine) {
      emit(buffered.slice(0, maxOutputLine))
      buffered = buffered.slice(maxOutputLine)
    }
  })
  stream.on("end", () => {
    if (buffered !== "") emit(buffered)
    buffered = ""
  })
}

const signalGroup = (pid: number, signal: NodeJS.Signals) => {
  // The child leads its own process group; signalling -pid reaches anything it started too.
  try {
    process.kill(-pid, signal)
  } catch {
    try {
      process.kill(pid, signal)
    } catch {
      // already gone
    }
  }
}

/**
 * How long a weavelet has to exit after SIGTERM before it is killed.
 *
 * @since 0.1.0
 * @category constants
 */
export const stopGrace = 3_000

/**
 * Starts a weavelet process and serves its control socket. Closing the
 * scope stops the process (SIGTERM, then SIGKILL after {@link stopGrace}).
 *
 * The steps: check the internal address and the health options, serve the
 * control socket (whose `Ready` connects to the weavelet's socket), spawn
 * the process with its bootstrap and relay its output, stop it when the
 * scope closes, and probe its health once it is ready.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (options: Options) => Effect.Effect<Envelope["Type"], EnvelopeError, Scope.Scope> = Effect
  .fnUntraced(function*(options: Options) {
    const { group, replicaId } = options.bootstrap
    yield* checkInternalAddress(options.bootstrap)
    const health = yield* Either.mapLeft(checkHealth(options.health), (reason) => new EnvelopeError({ group, reason }))
    const sockets = socketsOf(options)
    const weavelet = yield* makeWeaveletClient(replicaId, sockets.weavelet)
    yield* serveControl(group, replicaId, sockets.control, options.handler, weavelet.connect)
    const child = yield* spawnWeavelet(options, {
      ...options.bootstrap,
      mtls: options.bootstrap.mtls ?? false,
      listeners: options.bootstrap.listeners ?? {},
      controlSocket: sockets.control,
      weaveletSocket: sockets.weavelet
    })
    yield* stopOnClose(child)
    if (health !== undefined) yield* probeHealth(child, weavelet, health, options.handler)
    return {
      replicaId,
      pid: child.pid,
      exited: Deferred.await(child.exited),
      kill: (signal) => signalGroup(child.pid, signal),
      metrics: replicaMetrics(replicaId, weavelet.call),
      profile: replicaProfile(replicaId, weavelet.call)
    }
  })

/**
 * One weavelet process as a Layer: started when the layer is built,
 * stopped when its scope closes.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<Envelope, EnvelopeError> => Layer.scoped(Envelope, make(options))

/** Refuses a malformed internal address here, so that it fails the deployer's call rather than the process. */
const checkInternalAddress = (bootstrap: Options["bootstrap"]): Effect.Effect<void, EnvelopeError> =>
  Schema.is(Control.InternalAddress)(bootstrap.internalAddress) ? Effect.void : new EnvelopeError({
    group: bootstrap.group,
    reason: `bad internal address ${JSON.stringify(bootstrap.internalAddress)}: expected "host:port" with a port ` +
      `from 0 to 65535 (port 0: any free port)`
  })

/** The two Unix sockets of the control plane, in the deployment's socket directory. */
const socketsOf = (options: Options) => {
  const prefix = Path.join(options.socketDir, options.bootstrap.replicaId.slice(0, 8))
  return { control: `${prefix}.sock`, weavelet: `${prefix}.weavelet.sock` }
}

/**
 * The client of the weavelet's socket (`WeaveletRpcs`). The weavelet serves
 * it before it calls `Ready`: `connect` then, once; until then `call` fails
 * as not ready. The socket file is removed when the scope closes.
 */
const makeWeaveletClient = Effect.fnUntraced(function*(replicaId: string, socket: string) {
  const scope = yield* Effect.scope
  const client = yield* Deferred.make<WeaveletClient>()
  yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(socket, { force: true })))
  const connect = Effect.gen(function*() {
    if (yield* Deferred.isDone(client)) return
    const protocol = yield* Layer.buildWithScope(
      RpcClient.layerProtocolSocket({ retryTransientErrors: false }).pipe(
        Layer.provide(NodeSocket.layerNet({ path: socket })),
        Layer.provide(Control.layerSerialization())
      ),
      scope
    )
    const connected = yield* RpcClient.make(Control.WeaveletRpcs, { disableTracing: true }).pipe(
      Effect.provide(protocol),
      Scope.extend(scope)
    )
    yield* Deferred.succeed(client, connected)
  }).pipe(
    Effect.catchAll((error) => Effect.logWarning(`replica ${replicaId}: cannot connect to ${socket}: ${error.message}`))
  )
  const call = <A, E>(f: (client: WeaveletClient) => Effect.Effect<A, E>): Effect.Effect<A, E | ReplicaCallError> =>
    Effect.gen(function*() {
      const connected = yield* Deferred.poll(client)
      if (Option.isNone(connected)) return yield* new ReplicaCallError({ replicaId, reason: "not ready" })
      return yield* f(yield* connected.value)
    })
  return { replicaId, connect, connected: Deferred.await(client), call }
})

type WeaveletConnection = Effect.Effect.Success<ReturnType<typeof makeWeaveletClient>>

type WeaveletCall = <A, E>(f: (client: WeaveletClient) => Effect.Effect<A, E>) => Effect.Effect<A, E | ReplicaCallError>

/**
 * Serves `ControlRpcs` on the control socket for the scope, answering with
 * `handler`; `Ready` first connects to the weavelet's socket.
 */
const serveControl = (
  group: string,
  replicaId: string,
  socket: string,
  handler: Handler,
  connect: Effect.Effect<void>
): Effect.Effect<void, EnvelopeError, Scope.Scope> =>
  Effect.gen(function*() {
    const handlers = Control.ControlRpcs.toLayer({
      Ready: ({ address, pid }) => Effect.zipRight(connect, handler.ready(address, pid)),
      Activate: ({ component }) => handler.activate(component),
      Routing: ({ component }) => handler.routing(component),
      ExportListener: ({ address, kind, listener }) => handler.exportListener(listener, address, kind),
      Health: () => Effect.succeed("ok" as const),
      TraceSpans: ({ spans }) => handler.traceSpans?.(spans) ?? Effect.void,
      Certificate: () =>
        handler.certificate ??
          new Control.ControlError({
            message: "this deployment does not use mutual TLS: its deployer issues no certificates"
          }),
      Authorize: ({ group }) => handler.authorize?.(group) ?? Effect.succeed([Control.anyComponent]),
      Requires: ({ caller, component }) => handler.requires?.(caller, component) ?? Effect.void
    })
    // Bad input on the control socket (a broken or hostile weavelet) closes that connection and is logged, at most
    // 10 lines per 10 seconds.
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    const badInput = Logging.makeRateLimiter({
      lines: 10,
      interval: "10 seconds",
      about: `bad input on the control socket of replica ${replicaId}`,
      write: (message) => runFork(Effect.logWarning(message))
    })
    yield* Effect.addFinalizer(() => Effect.sync(badInput.flush))
    const server = RpcServer.layer(Control.ControlRpcs, { disableTracing: true }).pipe(
      Layer.provide(handlers),
      Layer.provide(RpcServer.layerProtocolSocketServer),
      Layer.provide(Control.layerSerialization({
        onBadInput: (reason) => badInput.log(`control socket of replica ${replicaId}: closing a connection: ${reason}`)
      })),
      Layer.provide(NodeSocketServer.layer({ path: socket }))
    )
    yield* Effect.scopeWith((scope) => Layer.buildWithScope(server, scope)).pipe(
      Effect.mapError((error) => new EnvelopeError({ group, reason: `control socket ${socket}: ${error}` })),
      Effect.zipRight(Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(socket, { force: true }))))
    )
  })

interface Child {
  pid: number
  readonly exited: Deferred.Deferred<ExitStatus>
  /** Why the envelope killed it as unhealthy, once it did. */
  unhealthy: string | undefined
}

/**
 * Spawns the weavelet with its bootstrap in the environment, in a process
 * group of its own, and relays every line it writes to `options.output`.
 */
const spawnWeavelet = Effect.fnUntraced(function*(options: Options, bootstrap: Control.Bootstrap) {
  const group = bootstrap.group
  const exited = yield* Deferred.make<ExitStatus>()
  const child = yield* Effect.try({
    try: () =>
      ChildProcess.spawn(options.command, [...options.args], {
        env: { ...options.env, [Control.bootstrapEnv]: Control.encodeBootstrap(bootstrap) },
        cwd: options.cwd,
        stdio: ["ignore", "pipe", "pipe"],
        detached: true
      }),
    catch: (cause) => new EnvelopeError({ group, reason: String(cause) })
  })
  const state: Child = { pid: 0, exited, unhealthy: undefined }
  child.once("exit", (code, signal) =>
    Deferred.unsafeDone(
      exited,
      Effect.succeed(state.unhealthy === undefined ? { code, signal } : { code, signal, unhealthy: state.unhealthy })
    ))
  const pid = yield* Effect.async<number, EnvelopeError>((resume) => {
    if (child.pid !== undefined) return resume(Effect.succeed(child.pid))
    child.once("error", (cause) => resume(Effect.fail(new EnvelopeError({ group, reason: cause.message }))))
    child.once("spawn", () => resume(Effect.succeed(child.pid!)))
  })
  child.on("error", () => undefined)
  lines(child.stdout, (line) => options.output("stdout", line))
  lines(child.stderr, (line) => options.output("stderr", line))
  state.pid = pid
  return state
})

/** When the scope closes: SIGTERM to the process group, then SIGKILL after {@link stopGrace}. */
const stopOnClose = (child: Child): Effect.Effect<void, never, Scope.Scope> =>
  Effect.addFinalizer(() =>
    Effect.gen(function*() {
      if (yield* Deferred.isDone(child.exited)) return
      signalGroup(child.pid, "SIGTERM")
      const done = yield* Deferred.await(child.exited).pipe(Effect.timeout(stopGrace), Effect.option)
      if (done._tag === "None") {
        signalGroup(child.pid, "SIGKILL")
        yield* Deferred.await(child.exited).pipe(Effect.timeout(stopGrace), Effect.ignore)
      }
    })
  )

/**
 * Probes the weavelet once it is ready, for the scope: `GetHealth` every
 * `interval`, each given what is left of `unhealthyAfter` since the last
 * answer. When that runs out (a probe unanswered, or failing, for
 * `unhealthyAfter`), the weavelet is unhealthy: `handler.unhealthy` takes it
 * out of routing, then the process group is killed with SIGKILL. A process
 * that exits ends the probing.
 */
const probeHealth = (
  child: Child,
  weavelet: WeaveletConnection,
  health: typeof defaultHealth,
  handler: Handler
): Effect.Effect<void, never, Scope.Scope> => {
  const interval = Duration.toMillis(health.interval)
  const bound = Duration.toMillis(health.unhealthyAfter)
  const getHealth = (within: number) =>
    weavelet.call((client) => client.GetHealth()).pipe(
      Effect.timeout(within),
      Effect.match({ onFailure: () => false, onSuccess: () => true })
    )
  const probe = Effect.gen(function*() {
    yield* weavelet.connected
    let answeredAt = Date.now()
    while (true) {
      yield* Effect.sleep(interval)
      const sentAt = Date.now()
      const left = answeredAt + bound - sentAt
      let answered = left > 0 && (yield* getHealth(left))
      if (!answered && left > 0 && Date.now() - (sentAt + left) > interval) {
        // This process stalled itself (its timer fired that late): the answer may be queued behind it. One more try.
        answered = yield* getHealth(interval)
      }
      if (answered) answeredAt = Date.now()
      else if (Date.now() - answeredAt >= bound) break
    }
    if (yield* Deferred.isDone(child.exited)) return
    const reason = `did not answer its health probe (GetHealth) for ${Duration.format(health.unhealthyAfter)}`
    child.unhealthy = reason
    yield* handler.unhealthy?.(reason) ?? Effect.void
    signalGroup(child.pid, "SIGKILL")
  })
  return Effect.asVoid(Effect.forkScoped(Effect.raceFirst(probe, Deferred.await(child.exited))))
}

/** `GetMetrics`, within 10 s. */
const replicaMetrics = (
  replicaId: string,
  call: WeaveletCall
): Effect.Effect<ReadonlyArray<Prometheus.MetricSnapshot>, ReplicaCallError> =>
  call((client) => client.GetMetrics()).pipe(
    Effect.timeoutFail({
      duration: "10 seconds",
      onTimeout: () => new ReplicaCallError({ replicaId, reason: "no metrics within 10 seconds" })
    }),
    Effect.catchTag(
      "RpcClientError",
      (error) => Effect.fail(new ReplicaCallError({ replicaId, reason: error.message }))
    )
  )

/** `GetProfile`, within its duration plus 30 s; every failure as a `ProfilingError`. */
const replicaProfile = (replicaId: string, call: WeaveletCall) =>
(
  options: Profiling.CollectOptions
): Effect.Effect<Uint8Array, Profiling.ProfilingError> => {
  const duration = Duration.decode(options.duration)
  return call((client) => client.GetProfile({ type: options.type, durationMs: Duration.toMillis(duration) })).pipe(
    Effect.timeoutFail({
      duration: Duration.sum(duration, Duration.seconds(30)),
      onTimeout: () => new ReplicaCallError({ replicaId, reason: "no profile in time" })
    }),
    Effect.catchTags({
      ProfileFailed: (error) =>
        Effect.fail(new Profiling.ProfilingError({ reason: error.reason, message: error.message })),
      RpcClientError: (error) =>
        Effect.fail(
          new Profiling.ProfilingError({ reason: "failed", message: `replica ${replicaId}: ${error.message}` })
        ),
      ReplicaCallError: (error) =>
        Effect.fail(new Profiling.ProfilingError({ reason: "failed", message: error.message }))
    })
  )
}
