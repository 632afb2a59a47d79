/**
 * A custom deployer: Service Weaver's "write your own deployer" tutorial
 * (https://serviceweaver.dev/blog/deployers.html) rebuilt on effect-weaver.
 *
 * It runs an application on this machine as one process per colocation
 * group: no replication, no restarts, no listener proxies. It is written
 * only against the public deployer API of `@effect-weaver/runtime`:
 *
 * - `Envelope.make` starts the application's binary as a weavelet (its
 *   bootstrap in the environment variable `WEAVER_WEAVELET`) and serves the
 *   control calls the weavelet makes, by calling the `Envelope.Handler` we
 *   give it;
 * - `Control` holds what travels on the control plane (the bootstrap, the
 *   errors a handler answers with);
 * - `ConfigCheck` runs the binary once to check the config against the
 *   application, before anything of the deployment starts.
 *
 * A deployer has five duties, and the handler is where it does them:
 *
 * 1. components: a weavelet that needs a component asks to `activate` it;
 *    we start the process of the colocation group hosting it (once);
 * 2. routing: a weavelet asks for the `routing` of a component it calls; we
 *    answer with the addresses of the group's replicas, and again whenever
 *    they change;
 * 3. listeners: a weavelet that serves a listener (an HTTP server of the
 *    app) calls `exportListener` with its address; we print it and answer
 *    it as the address users reach (the multi deployer answers a proxy's);
 * 4. telemetry: the envelope hands us every line the process writes; log
 *    entries are among them, and we print them all;
 * 5. security: we make the deployment's certificate authority and hand each
 *    weavelet the `certificate` of its group, so that weavelets call one
 *    another over mutual TLS; a weavelet reports which components its code
 *    `requires`, and a callee asks us whom to `authorize` (`Certificates`).
 *
 * docs/DEPLOYERS.md describes the protocol in full.
 */
import { App, Certificates, ConfigCheck, Control, Envelope, Logging, WeaverConfig } from "@effect-weaver/runtime"
import { Data, Effect, Scope, Stream, SubscriptionRef } from "effect"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

/**
 * The deployment could not start.
 */
export class DeployerError extends Data.TaggedError("DeployerError")<{
  readonly reason: string
}> {
  override get message(): string {
    return this.reason
  }
}

/**
 * A colocation group: the components one process hosts, and the addresses
 * its replicas serve them on (here one replica, once it is ready).
 */
interface Group {
  readonly name: string
  readonly components: ReadonlyArray<string>
  /** Its certificate and key, issued on first use. */
  readonly certificate: Effect.Effect<Certificates.Credentials, Control.ControlError>
  readonly replicas: SubscriptionRef.SubscriptionRef<ReadonlyArray<string>>
  started: boolean
}

const say = (line: string) => Effect.sync(() => process.stdout.write(`${line}\n`))

/**
 * Deploys the application of `configFile` (a weaver.toml) for as long as the
 * scope lasts: the main group at once, the other groups when they are first
 * activated. Closing the scope stops every process (SIGTERM, then SIGKILL
 * after a grace period; `Envelope.make` does it).
 */
export const deploy = Effect.fnUntraced(function*(configFile: string) {
  // The config as the deployer sees it: TOML, [serviceweaver], [single], [multi], the binary is a file.
  const config = yield* WeaverConfig.load(configFile)
  const binary = yield* ConfigCheck.binary(config)

  // Every weavelet runs the same binary; the bootstrap tells it which group it is.
  const command = process.execPath
  const args = ["--enable-source-maps", binary, ...config.serviceweaver.args]
  const env: Record<string, string | undefined> = { ...process.env, ...WeaverConfig.environment(config) }

  // The config as the application sees it (its listeners, components, component sections): the binary, run
  // once with ConfigCheck.env set, answers instead of running. A refused config fails here, naming the file,
  // the section and the key, and no process of the deployment is started.
  yield* ConfigCheck.run({ config, command, args, env })

  const app = config.serviceweaver.name ?? "app"
  const deploymentId = Crypto.randomUUID()
  const scope = yield* Effect.scope
  // The envelopes put the control sockets of their weavelets in a directory private to the deployment.
  const socketDir = yield* Effect.acquireRelease(
    Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "custom-deployer-"))),
    (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
  )

  // Service Weaver's mTLS: an authority for this deployment only; its private key never leaves this process.
  const authority = yield* Certificates.makeAuthority(app).pipe(
    Effect.mapError((error) => new DeployerError({ reason: error.message }))
  )
  // The call graph, as the weavelets report it: which components the code of each component resolved.
  const graph = new Map<string, Set<string>>()

  // Colocation groups, as Service Weaver forms them: one per `colocate` entry of weaver.toml, one per other
  // component. The group holding the main component runs main, and is named after it.
  const groups = new Map<string, Group>()
  const groupOf = (component: string): Group => {
    const components = config.serviceweaver.colocate.find((entry) => entry.includes(component)) ?? [component]
    const name = components.includes(App.mainName) ? App.mainName : components[0]!
    let group = groups.get(name)
    if (group === undefined) {
      group = {
        name,
        components,
        certificate: Effect.runSync(Effect.cached(
          authority.issue({ group: name, components }).pipe(
            Effect.mapError((error) => new Control.ControlError({ message: error.message }))
          )
        )),
        replicas: Effect.runSync(SubscriptionRef.make<ReadonlyArray<string>>([])),
        started: false
      }
      groups.set(name, group)
    }
    return group
  }

  // The handler answers the control calls of the weavelet of `group`.
  const handlerFor = (group: Group): Envelope.Handler => ({
    // The weavelet serves its components on `address` (the internal address we gave it, with its port bound).
    ready: (address, pid) =>
      Effect.zipRight(
        SubscriptionRef.update(group.replicas, (replicas) => [...replicas, address]),
        say(`deployer: group ${group.name} (pid ${pid}) serves on ${address}`)
      ),
    // Service Weaver's ActivateComponent: start the group hosting the component, if it is not running.
    activate: (component) => start(groupOf(component)),
    // Service Weaver's UpdateRoutingInfo: the replica addresses of the component's group, now and on every
    // change. An empty set is not sent: a caller waits for the group's first replica instead.
    routing: (component) => groupOf(component).replicas.changes.pipe(Stream.filter((replicas) => replicas.length > 0)),
    // Service Weaver's ExportListener: no proxy here, so the listener's own address is the one to use.
    exportListener: (listener, address) =>
      Effect.as(say(`deployer: listener ${listener} of group ${group.name} available on ${address}`), address),
    // Service Weaver's HandleTraceSpans: this deployer keeps no traces.
    traceSpans: () => Effect.void,
    // Service Weaver's GetSelfCertificate: the certificate of the weavelet's group, over its control socket.
    certificate: group.certificate,
    // An edge of the call graph: the code of `caller` resolved `component`.
    requires: (caller, component) =>
      Effect.sync(() => {
        const required = graph.get(caller) ?? new Set()
        graph.set(caller, required.add(component))
      }),
    // Service Weaver's VerifyClientCertificate: a group may call what its components require.
    authorize: (name) =>
      Effect.sync(() => [...(groups.get(name)?.components ?? [])].flatMap((member) => [...(graph.get(member) ?? [])]))
  })

  // Service Weaver's spawn: start the weavelet of a group, once.
  const start = (group: Group): Effect.Effect<void, Control.ControlError> =>
    Effect.suspend(() => {
      if (group.started) return Effect.void
      group.started = true
      const replicaId = Crypto.randomUUID()
      // Service Weaver's HandleLogEntry: log entries and plain output lines, printed the way `weaver` does.
      const origin = { app, deploymentId, node: replicaId, component: group.name }
      const output = (stream: "stdout" | "stderr", line: string) =>
        process.stdout.write(`${Logging.pretty(Envelope.logEntry(origin, stream, line))}\n`)
      return Envelope.make({
        bootstrap: {
          app,
          deploymentId,
          replicaId,
          group: group.name,
          components: group.components,
          runMain: group.components.includes(App.mainName),
          // Where the weavelet serves its components: any free port on loopback, as all runs on this machine.
          internalAddress: "127.0.0.1:0",
          config: { file: Path.resolve(configFile), dir: config.dir },
          external: [],
          mtls: true
        },
        socketDir,
        command,
        args,
        env,
        handler: handlerFor(group),
        output
      }).pipe(
        // The process lives as long as the deployment, not as long as the control call that started it.
        Scope.extend(scope),
        Effect.tap((envelope) => say(`deployer: started group ${group.name} as pid ${envelope.pid}`)),
        // This deployer restarts nothing: a process that exits takes its group's address out of routing.
        Effect.tap((envelope) =>
          envelope.exited.pipe(
            Effect.tap((status) =>
              say(`deployer: group ${group.name} (pid ${envelope.pid}) exited (${status.signal ?? status.code})`)
            ),
            Effect.zipRight(SubscriptionRef.set(group.replicas, [])),
            Effect.forkIn(scope)
          )
        ),
        Effect.asVoid,
        Effect.mapError((error) => new Control.ControlError({ message: error.message }))
      )
    })

  // Service Weaver's main: start the main group; it activates the components main calls.
  yield* start(groupOf(App.mainName)).pipe(Effect.mapError((error) => new DeployerError({ reason: error.message })))
  yield* say(Logging.banner(app, deploymentId))
  return { app, deploymentId }
})
