/**
 * The multiprocess deployer (`weaver multi deploy`): the application split
 * into OS processes on one machine.
 *
 * - Colocation groups: one per `colocate` entry of weaver.toml and one per
 *   remaining component; the main component has its own group.
 * - Each group runs `[multi] replicas` processes (default 2), started the
 *   first time one of its components is activated: main's group at once, and
 *   the others when main's replicas start (they activate every component, as
 *   Service Weaver's main does for the components it references) or on a
 *   first call. Components themselves are constructed on their first call.
 * - Each listener gets an HTTP proxy on its `[multi] listeners.<name>.address`
 *   that balances across the replicas serving it.
 * - Supervision: a replica that exits is restarted with jittered exponential
 *   backoff; a replica that keeps crashing is given up on with a clear error
 *   while the others keep serving. Every change is pushed to the weavelets as
 *   a routing update and written to the registry (`weaver multi status`).
 * - Logs: every line a replica logs or prints is written to its JSON-lines
 *   log file (see `LogFile`) and printed on the deployer's terminal.
 * - Status: a status server (see `Status`) serves the metrics of every
 *   replica merged, profiles of one replica per group merged, and health;
 *   its address is the registry entry's `statusAddress`.
 *
 * @since 0.1.0
 */
import { Logging, Registry, Tracing, WeaverConfig } from "@effect-weaver/runtime"
import type { Profiling, Prometheus } from "@effect-weaver/runtime"
import * as Control from "@effect-weaver/runtime/Control"
import * as Envelope from "@effect-weaver/runtime/Envelope"
import * as LogFile from "@effect-weaver/runtime/LogFile"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as HashSet from "effect/HashSet"
import * as Logger from "effect/Logger"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Proxy from "./Proxy.js"
import * as Status from "./Status.js"

/**
 * The deployment could not start.
 *
 * @since 0.1.0
 * @category errors
 */
export class DeployError extends Data.TaggedError("DeployError")<{
  readonly reason: string
}> {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return this.reason
  }
}

/**
 * The name of the main component's colocation group.
 *
 * @since 0.1.0
 * @category constants
 */
export const mainGroup = "main"

/**
 * How to start a weavelet process: every replica runs the same command,
 * with its bootstrap in the environment.
 *
 * @since 0.1.0
 * @category models
 */
export interface Launch {
  readonly command: string
  readonly args: ReadonlyArray<string>
  readonly env: Readonly<Record<string, string | undefined>>
  readonly cwd?: string | undefined
}

/**
 * Restart policy of crashed replicas.
 *
 * @since 0.1.0
 * @category models
 */
export interface Restart {
  /** Delay before the first restart; doubled on every consecutive crash (default 200 ms). */
  readonly initialDelay: Duration.DurationInput
  /** Cap of the delay (default 10 s). */
  readonly maxDelay: Duration.DurationInput
  /** A replica that crashes this many times within {@link Restart.window} is not restarted again (default 5). */
  readonly maxCrashes: number
  /** (default 60 s) */
  readonly window: Duration.DurationInput
}

const defaultRestart: Restart = {
  initialDelay: Duration.millis(200),
  maxDelay: Duration.seconds(10),
  maxCrashes: 5,
  window: Duration.seconds(60)
}

/**
 * Options of {@link make}.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly app: string
  readonly deploymentId?: string | undefined
  readonly config: WeaverConfig.WeaverConfig
  /** How weavelets read the config: the file, or its text (inline configs). */
  readonly configSource: Control.Bootstrap["config"]
  readonly launch: Launch
  /** Set when weavelets must import the application from a module (the weavertest Multi runner). */
  readonly appModule?: Control.Bootstrap["appModule"]
  /**
   * When set, the main group is not started as processes: this process
   * hosts it (and `external`, e.g. weavertest fakes) and registers its address
   * with {@link Deployer.addExternalReplica}.
   */
  readonly mainInProcess?: boolean | undefined
  readonly external?: ReadonlyArray<string> | undefined
  readonly restart?: Partial<Restart> | undefined
  /** Record the deployment in the `multi` registry (default true). */
  readonly register?: boolean | undefined
  /** The config file's path, shown in the registry. */
  readonly configFile?: string | undefined
  /** Where output and logs of replicas go. Defaults to log files plus the terminal. */
  readonly output?: ((entry: Logging.Entry) => void) | undefined
  /** Write log files under `LogFile.directory("multi")` (default true). */
  readonly logFiles?: boolean | undefined
  /** Run a status server (see `Status`) and record its address in the registry (default: as `register`). */
  readonly status?: boolean | undefined
}

/**
 * One replica, as reported by {@link Deployer.groups}.
 *
 * @since 0.1.0
 * @category models
 */
export interface ReplicaInfo {
  readonly replicaId: string
  readonly pid: number
  /** The address its components are served on, once ready. */
  readonly address: string | undefined
}

/**
 * One colocation group, as reported by {@link Deployer.groups}.
 *
 * @since 0.1.0
 * @category models
 */
export interface GroupInfo {
  readonly name: string
  readonly components: ReadonlyArray<string>
  readonly started: boolean
  readonly replicas: ReadonlyArray<ReplicaInfo>
  /** Restarts so far. */
  readonly restarts: number
}

/**
 * A running deployment.
 *
 * @since 0.1.0
 * @category models
 */
export interface Deployer {
  readonly app: string
  readonly deploymentId: string
  /** Starts the group of `component` if it is not running. */
  readonly activate: (component: string) => Effect.Effect<void, Control.ControlError>
  /** The ready replica addresses of `component`'s group: the current set (once non-empty), then every change. */
  readonly routing: (component: string) => Stream.Stream<ReadonlyArray<string>>
  /** Adds a replica hosted outside the deployer's processes (the in-process main group). */
  readonly addExternalReplica: (group: string, address: string) => Effect.Effect<void>
  readonly groups: Effect.Effect<ReadonlyArray<GroupInfo>>
  /** The listeners' proxies, by listener name. */
  readonly proxies: Effect.Effect<ReadonlyMap<string, string>>
  /** Recent traces: the spans every replica sends (see `Tracing.layer`'s `onSpans`). */
  readonly traces: Tracing.Store
  /** The metrics of every ready replica, labelled by replica (see `Status.metrics`). */
  readonly metrics: Effect.Effect<ReadonlyArray<Prometheus.MetricSnapshot>>
  /** A profile of one replica per group, scaled and merged (see `Status.profileGroups`). */
  readonly profile: (options: Profiling.CollectOptions) => Effect.Effect<Uint8Array, Profiling.ProfilingError>
  /** The status server's `host:port` (recorded in the registry), if it runs; see {@link Options.status}. */
  readonly statusAddress: string | undefined
}

interface Slot {
  readonly index: number
  current: { readonly envelope: Envelope.Envelope["Type"]; address: string | undefined } | undefined
}

interface Group {
  readonly name: string
  readonly components: ReadonlyArray<string>
  readonly runMain: boolean
  readonly slots: Array<Slot>
  readonly addresses: SubscriptionRef.SubscriptionRef<ReadonlyArray<string>>
  readonly external: Array<string>
  started: boolean
  restarts: number
}

const describeExit = (status: Envelope.ExitStatus): string =>
  status.signal !== null ? `killed by ${status.signal}` : `exit code ${status.code}`

/**
 * Starts a deployment (main's group at once, other groups on first use)
 * that lasts as long as the scope. Closing the scope stops every process.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Deployer, DeployError, Scope.Scope> =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const deploymentId = options.deploymentId ?? Crypto.randomUUID()
    const app = options.app
    const config = options.config
    const restart: Restart = { ...defaultRestart, ...options.restart }
    const socketDir = yield* Effect.acquireRelease(
      Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "weaver-"))),
      (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
    )

    // Logs: each replica's entries and output lines go to its own log file and to `output`.
    const logDir = LogFile.directory("multi")
    const writers = new Map<string, LogFile.Writer>()
    const writerFor = (node: string): Effect.Effect<LogFile.Writer | undefined> => {
      if (options.logFiles === false) return Effect.succeed(undefined)
      const found = writers.get(node)
      if (found !== undefined) return Effect.succeed(found)
      return LogFile.writer(logDir, app, deploymentId, node).pipe(
        Scope.extend(scope),
        Effect.tap((w) => Effect.sync(() => writers.set(node, w))),
        Effect.catchAll((error) =>
          Effect.as(Effect.sync(() => process.stderr.write(`weaver: ${error.message}\n`)), undefined)
        )
      )
    }
    const color = process.stderr.isTTY === true
    const print = options.output ?? ((entry: Logging.Entry) => {
      const line = Logging.pretty(entry, { color }) + "\n"
      if (entry.level === "stdout") process.stdout.write(line)
      else process.stderr.write(line)
    })
    const emit = (writer: LogFile.Writer | undefined, entry: Logging.Entry) => {
      writer?.unsafeWrite(entry)
      print(entry)
    }
    const deployerNode = `deployer-${deploymentId.slice(0, 8)}`
    const deployerWriter = yield* writerFor(deployerNode)
    const origin: Logging.Origin = { app, deploymentId, replicaId: "deployer" }
    const logger = Logger.make<unknown, void>((logOptions) => emit(deployerWriter, Logging.toEntry(origin, logOptions)))
    yield* Effect.locallyScoped(FiberRef.currentLoggers, HashSet.make(logger))

    // Registry.
    const startedAt = Date.now()
    const update = options.register === false
      ? (_: (d: Registry.Deployment) => Registry.Deployment) => Effect.void
      : yield* Registry.register({
        app,
        deploymentId,
        tool: "multi",
        pid: process.pid,
        startedAt,
        configFile: options.configFile,
        components: [],
        listeners: []
      })

    const groups = new Map<string, Group>()
    const external = new Set(options.external ?? [])
    const groupNameOf = (component: string): string => {
      if (component === mainGroup || external.has(component)) return mainGroup
      for (const entry of config.serviceweaver.colocate) {
        if (entry.includes(component)) return entry.includes(mainGroup) ? mainGroup : entry[0]!
      }
      return component
    }
    const groupOf = (component: string): Group => {
      const name = groupNameOf(component)
      let group = groups.get(name)
      if (group === undefined) {
        const entry = config.serviceweaver.colocate.find((e) => e.includes(component) || e.includes(name))
        const components = name === mainGroup
          ? [mainGroup, ...(entry ?? []).filter((c) => c !== mainGroup), ...external]
          : [...(entry ?? [component])]
        group = {
          name,
          components,
          runMain: name === mainGroup,
          slots: Array.from({ length: config.multi.replicas }, (_, index) => ({ index, current: undefined })),
          addresses: Effect.runSync(SubscriptionRef.make<ReadonlyArray<string>>([])),
          external: [],
          started: false,
          restarts: 0
        }
        groups.set(name, group)
      }
      return group
    }

    // Proxies.
    const proxies = new Map<string, Proxy.Proxy["Type"]>()
    const exported = new Map<string, Map<string, string>>() // replica id → listener → address
    const proxyLock = yield* Effect.makeSemaphore(1)
    const proxyFor = (listener: string) =>
      proxyLock.withPermits(1)(Effect.suspend(() => {
        const found = proxies.get(listener)
        if (found !== undefined) return Effect.succeed(found)
        const address = config.multi.listeners[listener]?.address ?? "localhost:0"
        return Proxy.make({ listener, address }).pipe(
          Scope.extend(scope),
          Effect.tap((proxy) =>
            Effect.zipRight(
              Effect.sync(() => proxies.set(listener, proxy)),
              Effect.logInfo(`proxy for listener ${listener} on ${proxy.address}`)
            )
          )
        )
      }))
    const refreshProxies = () => {
      for (const [listener, proxy] of proxies) {
        const backends: Array<string> = []
        for (const byListener of exported.values()) {
          const address = byListener.get(listener)
          if (address !== undefined) backends.push(address)
        }
        proxy.setBackends(backends)
      }
    }

    const writeRegistry = update((d) => ({
      ...d,
      components: [...groups.values()].filter((g) => g.started).flatMap((g) => {
        const pids = g.slots.flatMap((s) => s.current === undefined ? [] : [s.current.envelope.pid])
        return g.components.map((name) => ({
          name,
          pids: name === mainGroup && options.mainInProcess ? [process.pid] : pids
        }))
      }),
      listeners: [...proxies.values()].map((p) => ({ name: p.listener, address: p.address }))
    }))

    const publish = (group: Group) =>
      SubscriptionRef.set(group.addresses, [
        ...group.external,
        ...group.slots.flatMap((s) => s.current?.address === undefined ? [] : [s.current.address])
      ])

    const traces = Tracing.makeStore()
    const handlerFor = (group: Group, slot: Slot, replicaId: string): Envelope.Handler => ({
      traceSpans: (spans) => Effect.sync(() => traces.add(spans)),
      ready: (address) =>
        Effect.suspend(() => {
          if (slot.current === undefined || slot.current.envelope.replicaId !== replicaId) return Effect.void
          slot.current.address = address
          return Effect.zipRight(publish(group), writeRegistry)
        }),
      activate,
      routing,
      exportListener: (listener, address) =>
        proxyFor(listener).pipe(
          Effect.tap(() =>
            Effect.sync(() => {
              let byListener = exported.get(replicaId)
              if (byListener === undefined) {
                byListener = new Map()
                exported.set(replicaId, byListener)
              }
              byListener.set(listener, address)
              refreshProxies()
            })
          ),
          Effect.tap(() => writeRegistry),
          Effect.map((proxy) => proxy.address),
          Effect.mapError((error) => new Control.ControlError({ message: error.message })),
          Effect.tapError((error) => Effect.logError(error.message))
        )
    })

    const output = (group: Group, replicaId: string, writer: LogFile.Writer | undefined) => {
      const outputOrigin = { app, deploymentId, node: replicaId, component: group.name }
      return (stream: "stdout" | "stderr", line: string) => emit(writer, Envelope.logEntry(outputOrigin, stream, line))
    }

    let stopping = false

    /** Runs one replica slot: start, wait for exit, restart with backoff, until given up or stopped. */
    const supervise = (group: Group, slot: Slot) =>
      Effect.gen(function*() {
        const crashes: Array<number> = []
        let consecutive = 0
        while (!stopping) {
          const replicaId = Crypto.randomUUID()
          const writer = yield* writerFor(replicaId)
          const started = Date.now()
          const status = yield* Effect.scoped(
            Effect.gen(function*() {
              const envelope = yield* Envelope.make({
                bootstrap: {
                  app,
                  deploymentId,
                  replicaId,
                  group: group.name,
                  components: group.components,
                  runMain: group.runMain,
                  // One machine: replicas serve on loopback, each on a free port it reports in Ready.
                  internalAddress: "127.0.0.1:0",
                  config: options.configSource,
                  external: [...external],
                  appModule: options.appModule
                },
                socketDir,
                command: options.launch.command,
                args: options.launch.args,
                env: options.launch.env,
                cwd: options.launch.cwd,
                handler: handlerFor(group, slot, replicaId),
                output: output(group, replicaId, writer)
              })
              slot.current = { envelope, address: undefined }
              yield* writeRegistry
              return yield* envelope.exited
            }).pipe(
              Effect.catchTag(
                "EnvelopeError",
                (error) =>
                  Effect.as(Effect.logError(error.message), { code: null, signal: null } as Envelope.ExitStatus)
              )
            )
          )
          const pid = slot.current?.envelope.pid
          slot.current = undefined
          exported.delete(replicaId)
          refreshProxies()
          yield* publish(group)
          yield* writeRegistry
          if (stopping) {
            return
          }
          const now = Date.now()
          consecutive = now - started > Duration.toMillis(restart.window) ? 1 : consecutive + 1
          crashes.push(now)
          while (crashes.length > 0 && now - crashes[0]! > Duration.toMillis(restart.window)) crashes.shift()
          const survivors = group.slots.filter((s) => s.current !== undefined).length
          if (crashes.length >= restart.maxCrashes) {
            return yield* Effect.logError(
              `crash loop: replica ${slot.index + 1} of ${group.name} exited ${crashes.length} times within ` +
                `${Duration.format(restart.window)} (last: pid ${pid ?? "?"}, ${
                  describeExit(status)
                }); it is not restarted again. ` +
                `The deployment keeps serving with ${survivors} other replica(s) of ${group.name}; ` +
                `see "weaver multi logs" for its output.`
            )
          }
          const base = Math.min(
            Duration.toMillis(restart.maxDelay),
            Duration.toMillis(restart.initialDelay) * 2 ** (consecutive - 1)
          )
          const delay = Math.round(base * (0.5 + Math.random()))
          yield* Effect.logWarning(
            `replica ${slot.index + 1} of ${group.name} (pid ${pid ?? "?"}) ${describeExit(status)}; ` +
              `restarting it in ${delay} ms`
          )
          group.restarts++
          yield* Effect.sleep(Duration.millis(delay))
        }
      })

    const startGroup = (group: Group): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (group.started) return Effect.void
        group.started = true
        if (group.name === mainGroup && options.mainInProcess) return writeRegistry
        return Effect.zipRight(
          Effect.forEach(group.slots, (slot) => Effect.forkIn(supervise(group, slot), scope), { discard: true }),
          writeRegistry
        )
      })

    const activate = (component: string): Effect.Effect<void> => startGroup(groupOf(component))

    const routing = (component: string): Stream.Stream<ReadonlyArray<string>> =>
      groupOf(component).addresses.changes.pipe(
        Stream.dropWhile((addresses) => addresses.length === 0),
        Stream.changesWith((a, b) => a.length === b.length && a.every((x, i) => x === b[i]))
      )

    // Stop every process at once when the deployment ends (supervisors then see their exits).
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        stopping = true
        for (const group of groups.values()) {
          for (const slot of group.slots) slot.current?.envelope.kill("SIGTERM")
        }
      })
    )

    // Proxies of listeners with a configured address are bound up front, so a busy port fails the deployment.
    for (const listener of Object.keys(config.multi.listeners)) {
      yield* proxyFor(listener).pipe(Effect.mapError((error) => new DeployError({ reason: error.message })))
    }

    // Main's replicas boot while the status server starts: their start-up is on the way to the first request.
    if (!options.mainInProcess) yield* startGroup(groupOf(mainGroup))

    // The status server: metrics and profiles of the replicas, through their control sockets.
    const statusGroups = Effect.sync(() =>
      [...groups.values()].map((group): Status.Group => ({
        name: group.name,
        replicas: group.slots.flatMap((slot) => {
          const current = slot.current
          return current === undefined || current.address === undefined ? [] : [{
            replicaId: current.envelope.replicaId,
            metrics: current.envelope.metrics,
            profile: current.envelope.profile
          }]
        })
      }))
    )
    const statusAddress = (options.status ?? options.register) === false ? undefined : yield* Status.make({
      app,
      deploymentId,
      groups: statusGroups,
      traces
    }).pipe(
      Effect.map((server) => server.address),
      Effect.tap((address) => update((d) => ({ ...d, statusAddress: address }))),
      Effect.catchAll((error) => Effect.as(Effect.logWarning("status server not started", error), undefined))
    )

    const deployer: Deployer = {
      statusAddress,
      metrics: Effect.flatMap(statusGroups, (groups) => Status.metrics({ app, deploymentId }, groups)),
      profile: (profileOptions) =>
        Effect.flatMap(statusGroups, (groups) => Status.profileGroups(groups, profileOptions)),
      app,
      deploymentId,
      traces,
      activate,
      routing,
      addExternalReplica: (name, address) =>
        Effect.suspend(() => {
          const group = groups.get(name) ?? groupOf(name)
          group.external.push(address)
          return Effect.zipRight(publish(group), writeRegistry)
        }),
      groups: Effect.sync(() =>
        [...groups.values()].map((g) => ({
          name: g.name,
          components: g.components,
          started: g.started,
          restarts: g.restarts,
          replicas: g.slots.flatMap((s) =>
            s.current === undefined
              ? []
              : [{ replicaId: s.current.envelope.replicaId, pid: s.current.envelope.pid, address: s.current.address }]
          )
        }))
      ),
      proxies: Effect.sync(() => new Map([...proxies].map(([name, proxy]) => [name, proxy.address])))
    }
    return deployer
  })

/**
 * How `weaver multi deploy` starts the application's `binary`: `node` with
 * this process's own Node flags (so a deployer run through a TypeScript
 * loader starts TypeScript binaries too), source maps, the binary resolved
 * against the config file's directory, and `args` and `env` from
 * `[serviceweaver]`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const launchOf = (config: WeaverConfig.WeaverConfig): Effect.Effect<Launch, DeployError> =>
  Effect.gen(function*() {
    const binary = config.serviceweaver.binary
    if (binary === undefined || binary === "") {
      return yield* new DeployError({
        reason: new WeaverConfig.WeaverConfigError({
          file: config.file,
          section: "serviceweaver",
          key: "binary",
          reason: `missing required key: the application's entry file, for example binary = "./dist/main.js"`
        }).message
      })
    }
    const resolved = Path.resolve(config.dir, binary)
    if (!Fs.existsSync(resolved)) {
      return yield* new DeployError({
        reason: `${config.file}: [serviceweaver] binary ${resolved} does not exist; run "npm run build" to build it`
      })
    }
    const env: Record<string, string | undefined> = { ...process.env }
    for (const entry of config.serviceweaver.env) {
      const eq = entry.indexOf("=")
      env[entry.slice(0, eq)] = entry.slice(eq + 1)
    }
    const execArgv = process.execArgv.includes("--enable-source-maps")
      ? process.execArgv
      : [...process.execArgv, "--enable-source-maps"]
    return {
      command: process.execPath,
      args: [...execArgv, resolved, ...config.serviceweaver.args],
      env
    }
  })

/**
 * `weaver multi deploy <weaver.toml>`: loads the config, starts the
 * deployment, prints the box with the app and deployment id, and runs until
 * interrupted (Ctrl-C, SIGTERM), then stops every process.
 *
 * @since 0.1.0
 * @category runtime
 */
export const deploy = (configFile: string): Effect.Effect<never, DeployError | WeaverConfig.WeaverConfigError> =>
  Effect.gen(function*() {
    const config = yield* WeaverConfig.load(configFile)
    const launch = yield* launchOf(config)
    const app = config.serviceweaver.name ??
      Path.basename(launch.args.at(-1 - config.serviceweaver.args.length) ?? "app")
        .replace(/\.[cm]?[jt]s$/, "")
    const deploymentId = Crypto.randomUUID()
    yield* make({
      app,
      deploymentId,
      config,
      configSource: { file: Path.resolve(configFile), dir: config.dir },
      configFile: Path.resolve(configFile),
      launch
    })
    process.stdout.write(`${Logging.banner(app, deploymentId)}\n`)
    return yield* Effect.never
  }).pipe(Effect.scoped)
