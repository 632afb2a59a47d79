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
 * - A group holding a singleton ({@link Options.singletons}) runs exactly
 *   one process, whatever `[multi] replicas` says (its other components run
 *   once too, which the deployer logs). It starts with the deployment, and
 *   its singletons are constructed as its process starts. When that process
 *   dies, it is restarted as any replica is, and calls made meanwhile wait
 *   for it (see the RPC client's `replicaWait`) within their deadline.
 * - Each listener gets a proxy on its `[multi] listeners.<name>.address` that
 *   balances across the replicas serving it: request by request for HTTP
 *   (`Weaver.serve`), connection by connection for any other protocol
 *   (`Weaver.listener`; see `Proxy`).
 * - Supervision: a replica that exits is restarted with jittered exponential
 *   backoff; a replica that keeps crashing is given up on with a clear error
 *   while the others keep serving. A replica that hangs (stops answering its
 *   health probe, see {@link Options.health}) is taken out of routing at
 *   once, killed, and restarted as a crashed one is. Every change is pushed to the weavelets as
 *   a routing update and written to the registry (`weaver multi status`).
 *   Once every replica of the main group has been given up on, nothing is
 *   left to serve: the deployment fails ({@link Deployer.failure}), is
 *   recorded as failed in the registry, and stops.
 * - Config: {@link prepare} refuses a config the application would refuse
 *   (its binary answers a check, see `ConfigCheck`) before any process starts.
 * - Logs: every line a replica logs or prints is written to its JSON-lines
 *   log file (see `LogFile`) and printed on the deployer's terminal.
 * - Status: a status server (see `Status`) serves the metrics of every
 *   replica merged, profiles of one replica per group merged, and health;
 *   its address is the registry entry's `statusAddress`.
 *
 * A running deployment is the {@link Deployer} service ({@link make},
 * {@link layer}), built only on `@effect-weaver/runtime`'s public modules.
 * Its steps live in `internal/`: placement and routing (`groups`), the
 * replicas' supervision and control calls (`supervisor`), the listeners'
 * proxies (`listeners`), and logs (`logs`).
 *
 * @since 0.1.0
 */
import type * as Certificates from "@effect-weaver/runtime/Certificates"
import * as ConfigCheck from "@effect-weaver/runtime/ConfigCheck"
import type * as Control from "@effect-weaver/runtime/Control"
import * as Envelope from "@effect-weaver/runtime/Envelope"
import * as Logging from "@effect-weaver/runtime/Logging"
import type * as Profiling from "@effect-weaver/runtime/Profiling"
import type * as Prometheus from "@effect-weaver/runtime/Prometheus"
import * as Registry from "@effect-weaver/runtime/Registry"
import * as Tracing from "@effect-weaver/runtime/Tracing"
import * as WeaverConfig from "@effect-weaver/runtime/WeaverConfig"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import type { Deployment } from "./internal/deployment.js"
import { writeRegistry } from "./internal/deployment.js"
import * as Groups from "./internal/groups.js"
import * as Listeners from "./internal/listeners.js"
import * as Logs from "./internal/logs.js"
import * as Security from "./internal/security.js"
import * as Supervisor from "./internal/supervisor.js"
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
export const mainGroup: "main" = Groups.mainGroup

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
  /**
   * The application's singletons (`ConfigCheck.Accepted`'s): the group of
   * each runs one replica.
   *
   * @since 0.2.0
   */
  readonly singletons?: ReadonlyArray<string> | undefined
  /**
   * Mutual TLS between the processes, with call-graph authorization (default:
   * `[multi] mtls` of the config, off unless set to true).
   */
  readonly mtls?: boolean | undefined
  readonly restart?: Partial<Restart> | undefined
  /**
   * The health probe of every replica (`Envelope.HealthOptions`): `GetHealth`
   * every `interval` (default 1 s); a replica that answers none for
   * `unhealthyAfter` (default 3 s) is taken out of routing and out of its
   * listeners' proxies at once, killed with SIGKILL and restarted as a
   * crashed one is. `false` turns probing off.
   */
  readonly health?: Partial<Envelope.HealthOptions> | false | undefined
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
  /** Replicas given up on: each crashed `Restart.maxCrashes` times within `Restart.window`. */
  readonly givenUp: number
}

/**
 * A running deployment: the service {@link make} starts and {@link layer}
 * provides.
 *
 * @since 0.1.0
 * @category tags
 */
export class Deployer extends Context.Tag("@effect-weaver/deployer-multi/Deployer")<Deployer, {
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
  /**
   * The mutual TLS credentials of `group`'s processes (for a group hosted
   * outside the deployer's processes, such as the in-process main group);
   * `undefined` when the deployment does not use mutual TLS.
   */
  readonly credentials: (group: string) => Effect.Effect<Certificates.Credentials | undefined, Control.ControlError>
  /** The components a peer of `group` may call (see `Envelope.Handler`'s `authorize`). */
  readonly authorize: (group: string) => Effect.Effect<ReadonlyArray<string>>
  /** Records an edge of the call graph reported outside the deployer's processes. */
  readonly requires: (caller: string, component: string) => Effect.Effect<void>
  /**
   * Fails once the deployment can serve nothing any more: every replica of
   * the main group was given up on (crash loops). Never succeeds.
   * {@link deploy} ends with it.
   */
  readonly failure: Effect.Effect<never, DeployError>
}>() {}

/**
 * Starts a deployment (main's group at once, other groups on first use)
 * that lasts as long as the scope. Closing the scope stops every process.
 *
 * The steps: open the deployment (socket directory, logs, registry entry,
 * groups, listeners), stop every replica when the scope closes, bind the
 * proxies of the configured listeners, start the main group, serve the
 * status endpoint.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (options: Options) => Effect.Effect<Deployer["Type"], DeployError, Scope.Scope> = Effect
  .fnUntraced(function*(options: Options) {
    const deployment = yield* open(options)
    yield* Effect.addFinalizer(() => Supervisor.stopAll(deployment))
    yield* bindListeners(deployment)
    // Main's replicas boot while the status server starts: their start-up is on the way to the first request.
    if (!options.mainInProcess) yield* Supervisor.startGroup(deployment, deployment.groups.of(mainGroup))
    // Singletons are constructed as their process starts: the deployment's run-once hooks run at deploy time.
    for (const singleton of options.singletons ?? []) {
      yield* Supervisor.startGroup(deployment, deployment.groups.of(singleton))
    }
    const statusAddress = yield* serveStatus(deployment)
    return service(deployment, statusAddress)
  })

/**
 * A deployment as a Layer: started when the layer is built, every process
 * stopped when its scope closes.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<Deployer, DeployError> => Layer.scoped(Deployer, make(options))

/**
 * The deployment's identity and state, for the lifetime of the scope: the
 * socket directory of its envelopes, its logs (this fiber logs as the
 * deployer from now on), its registry entry, its groups and listeners.
 */
const open = Effect.fnUntraced(function*(options: Options) {
  const scope = yield* Effect.scope
  const app = options.app
  const deploymentId = options.deploymentId ?? Crypto.randomUUID()
  const health = yield* Either.mapLeft(
    Envelope.checkHealth(options.health),
    (reason) => new DeployError({ reason: `bad deployer option: ${reason}` })
  )
  const socketDir = yield* Effect.acquireRelease(
    Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "weaver-"))),
    (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
  )
  const logs = yield* Logs.make({ app, deploymentId, logFiles: options.logFiles, output: options.output })
  yield* Logs.logAsDeployer(logs, app, deploymentId)
  const updateRegistry = options.register === false
    ? (_: (d: Registry.Deployment) => Registry.Deployment) => Effect.void
    : yield* Registry.register({
      app,
      deploymentId,
      tool: "multi",
      pid: process.pid,
      startedAt: Date.now(),
      configFile: options.configFile,
      components: [],
      listeners: []
    })
  const groups = Groups.make(options.config, options.external ?? [], options.singletons ?? [])
  const security = (options.mtls ?? options.config.multi.mtls)
    ? yield* Security.make(app, groups.all).pipe(
      Effect.mapError((error) => new DeployError({ reason: `mutual TLS: ${error.message}` }))
    )
    : undefined
  const deployment: Deployment = {
    app,
    deploymentId,
    options,
    restart: { ...defaultRestart, ...options.restart },
    health: health ?? false,
    scope,
    socketDir,
    logs,
    groups,
    listeners: yield* Listeners.make(options.config),
    traces: Tracing.makeStore(),
    security,
    updateRegistry,
    failed: yield* Deferred.make<string>(),
    stopping: false
  }
  return deployment
})

/** Binds the proxies of the listeners with a configured address up front, so a busy port fails the deployment. */
const bindListeners = (deployment: Deployment): Effect.Effect<void, DeployError> =>
  Effect.forEach(
    Object.keys(deployment.options.config.multi.listeners),
    (listener) =>
      deployment.listeners.proxyFor(listener).pipe(
        Effect.mapError((error) => new DeployError({ reason: error.message }))
      ),
    { discard: true }
  )

/** Every group and its ready replicas, as the status server reaches them. */
const statusGroups = (deployment: Deployment): Effect.Effect<ReadonlyArray<Status.Group>> =>
  Effect.sync(() => [...deployment.groups.all.values()].map(Groups.statusGroup))

/**
 * Serves the status endpoint (metrics and profiles of the replicas, through
 * their control sockets; traces) and records its address in the registry,
 * unless turned off. A status server that cannot start is a warning, not a
 * failed deployment.
 */
const serveStatus = (deployment: Deployment): Effect.Effect<string | undefined, never, Scope.Scope> => {
  const { app, deploymentId, options } = deployment
  if ((options.status ?? options.register) === false) return Effect.succeed(undefined)
  return Status.make({ app, deploymentId, groups: statusGroups(deployment), traces: deployment.traces }).pipe(
    Effect.map((server): string | undefined => server.address),
    Effect.tap((address) => deployment.updateRegistry((d) => ({ ...d, statusAddress: address }))),
    Effect.catchAll((error) => Effect.as(Effect.logWarning("status server not started", error), undefined))
  )
}

/** The running deployment as the {@link Deployer} service. */
const service = (deployment: Deployment, statusAddress: string | undefined): Deployer["Type"] => {
  const { app, deploymentId, groups, listeners } = deployment
  return {
    statusAddress,
    metrics: Effect.flatMap(statusGroups(deployment), (groups) => Status.metrics({ app, deploymentId }, groups)),
    profile: (options) => Effect.flatMap(statusGroups(deployment), (groups) => Status.profileGroups(groups, options)),
    app,
    deploymentId,
    traces: deployment.traces,
    activate: (component) => Supervisor.activate(deployment, component),
    routing: (component) => Supervisor.routing(deployment, component),
    addExternalReplica: (name, address) =>
      Effect.suspend(() => {
        const group = groups.all.get(name) ?? groups.of(name)
        group.external.push(address)
        return Effect.zipRight(Groups.publish(group), writeRegistry(deployment))
      }),
    groups: Effect.sync(() => [...groups.all.values()].map(Groups.info)),
    credentials: (name) => {
      const security = deployment.security
      return security === undefined
        ? Effect.succeed(undefined)
        : security.credentials(groups.all.get(name) ?? groups.of(name))
    },
    authorize: (name) => Security.authorize(deployment.security, name),
    requires: (caller, component) => Security.requires(deployment.security, caller, component),
    proxies: Effect.sync(() => new Map([...listeners.proxies].map(([name, proxy]) => [name, proxy.address]))),
    failure: Effect.flatMap(Deferred.await(deployment.failed), (reason) => new DeployError({ reason }))
  }
}

/**
 * How `weaver multi deploy` starts the application's `binary`: `node` with
 * this process's own Node flags (so a deployer run through a TypeScript
 * loader starts TypeScript binaries too), source maps, the binary resolved
 * against the config file's directory, and `args` and `env` from
 * `[serviceweaver]`. Fails when `binary` is missing or is not a file.
 *
 * @since 0.1.0
 * @category constructors
 */
export const launchOf = (config: WeaverConfig.WeaverConfig): Effect.Effect<Launch, WeaverConfig.WeaverConfigError> =>
  Effect.gen(function*() {
    const resolved = yield* ConfigCheck.binary(config)
    const env: Record<string, string | undefined> = { ...process.env, ...WeaverConfig.environment(config) }
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
 * Loads the config file at `configFile` and works out the deployment of it
 * (its app, a new deployment id, how to launch its binary), after checking
 * that the application accepts the config: its binary, run once in check
 * mode, answers (see `ConfigCheck`). Each mistake fails with an error naming
 * the file, the section and the key, before any process of the deployment
 * starts.
 *
 * @since 0.1.0
 * @category constructors
 */
export const prepare = (
  configFile: string
): Effect.Effect<Options, WeaverConfig.WeaverConfigError | ConfigCheck.CheckError> =>
  Effect.gen(function*() {
    const config = yield* WeaverConfig.load(configFile)
    const launch = yield* launchOf(config)
    const accepted = yield* ConfigCheck.run({ config, command: launch.command, args: launch.args, env: launch.env })
    const app = config.serviceweaver.name ??
      Path.basename(launch.args.at(-1 - config.serviceweaver.args.length) ?? "app")
        .replace(/\.[cm]?[jt]s$/, "")
    return {
      app,
      deploymentId: Crypto.randomUUID(),
      config,
      configSource: { file: Path.resolve(configFile), dir: config.dir },
      configFile: Path.resolve(configFile),
      launch,
      singletons: accepted.singletons
    } satisfies Options
  })

/**
 * `weaver multi deploy <weaver.toml>`: checks the config ({@link prepare}),
 * starts the deployment, prints the box with the app and deployment id, and
 * runs until interrupted (Ctrl-C, SIGTERM), then stops every process. Fails
 * if the deployment fails ({@link Deployer.failure}).
 *
 * @since 0.1.0
 * @category runtime
 */
export const deploy = (
  configFile: string
): Effect.Effect<never, DeployError | WeaverConfig.WeaverConfigError | ConfigCheck.CheckError> =>
  Effect.flatMap(prepare(configFile), (options) =>
    Deployer.pipe(
      Effect.tap((deployer) =>
        Effect.sync(() => process.stdout.write(`${Logging.banner(deployer.app, deployer.deploymentId)}\n`))
      ),
      Effect.flatMap((deployer) => deployer.failure),
      Effect.provide(layer(options))
    ))
