/**
 * The replicas of a multiprocess deployment: starting a group's replicas,
 * answering each one's control calls, and restarting a replica that exits,
 * with jittered exponential backoff, until it crashes too often.
 *
 * @internal
 */
import * as ConfigCheck from "@effect-weaver/runtime/ConfigCheck"
import * as Control from "@effect-weaver/runtime/Control"
import * as Envelope from "@effect-weaver/runtime/Envelope"
import type * as LogFile from "@effect-weaver/runtime/LogFile"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Stream from "effect/Stream"
import * as Crypto from "node:crypto"
import type { Restart } from "../Deployer.js"
import type { Deployment } from "./deployment.js"
import { givenUp, writeRegistry } from "./deployment.js"
import * as Groups from "./groups.js"
import * as Logs from "./logs.js"
import * as Security from "./security.js"

/**
 * Starts the group hosting `component` if it is not running
 * (`ActivateComponent`).
 *
 * @internal
 */
export const activate = (deployment: Deployment, component: string): Effect.Effect<void> =>
  startGroup(deployment, deployment.groups.of(component))

/**
 * The ready replica addresses of `component`'s group (`UpdateRoutingInfo`).
 *
 * @internal
 */
export const routing = (deployment: Deployment, component: string): Stream.Stream<ReadonlyArray<string>> =>
  Groups.routing(deployment.groups.of(component))

/**
 * Starts the group's replicas, once: a supervisor per slot, for the rest of
 * the deployment. The main group hosted in this process has none.
 *
 * @internal
 */
export const startGroup = (deployment: Deployment, group: Groups.Group): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (group.started) return Effect.void
    group.started = true
    if (group.name === Groups.mainGroup && deployment.options.mainInProcess) return writeRegistry(deployment)
    const note = ConfigCheck.singletonNote(group, group)
    return Effect.zipRight(
      Effect.zipRight(
        note === undefined ? Effect.void : Effect.logInfo(note),
        Effect.forEach(group.slots, (slot) => Effect.forkIn(supervise(deployment, group, slot), deployment.scope), {
          discard: true
        })
      ),
      writeRegistry(deployment)
    )
  })

/**
 * Stops every replica at once (SIGTERM to each process group); their
 * supervisors then see the exits and, as the deployment is stopping, end.
 *
 * @internal
 */
export const stopAll = (deployment: Deployment): Effect.Effect<void> =>
  Effect.sync(() => {
    deployment.stopping = true
    for (const group of deployment.groups.all.values()) {
      for (const slot of group.slots) slot.current?.envelope.kill("SIGTERM")
    }
  })

/**
 * Runs one replica slot: start a replica, wait for its exit, retire it, and
 * restart it after a delay, until it is given up on or the deployment stops.
 *
 * @internal
 */
export const supervise = (deployment: Deployment, group: Groups.Group, slot: Groups.Slot): Effect.Effect<void> =>
  Effect.gen(function*() {
    const crashes: Crashes = { times: [], consecutive: 0 }
    while (!deployment.stopping) {
      const replicaId = Crypto.randomUUID()
      const writer = yield* deployment.logs.writerFor(replicaId)
      const started = Date.now()
      const status = yield* runReplica(deployment, group, slot, replicaId, writer)
      const pid = slot.current?.envelope.pid
      yield* retire(deployment, group, slot, replicaId)
      if (deployment.stopping) return
      const delay = recordExit(deployment.restart, crashes, started, Date.now())
      if (delay === undefined) {
        slot.givenUp = true
        const survivors = group.slots.filter((s) => s.current !== undefined).length
        yield* Effect.logError(
          `crash loop: replica ${slot.index + 1} of ${group.name} exited ${crashes.times.length} times within ` +
            `${Duration.format(deployment.restart.window)} (last: pid ${pid ?? "?"}, ${describeExit(status)}); ` +
            `it is not restarted again. ` +
            (survivors === 0
              ? `No other replica of ${group.name} is running; `
              : `The deployment keeps serving with ${survivors} other replica(s) of ${group.name}; `) +
            `see "weaver multi logs" for its output.`
        )
        return yield* givenUp(deployment, group, describeExit(status))
      }
      yield* Effect.logWarning(
        `replica ${slot.index + 1} of ${group.name} (pid ${pid ?? "?"}) ${describeExit(status)}; ` +
          `restarting it in ${delay} ms`
      )
      group.restarts++
      yield* Effect.sleep(Duration.millis(delay))
    }
  })

/**
 * One life of a replica: its envelope, held in the slot, from start to exit.
 * A replica that cannot be started counts as one that exited at once.
 */
const runReplica = (
  deployment: Deployment,
  group: Groups.Group,
  slot: Groups.Slot,
  replicaId: string,
  writer: LogFile.Writer | undefined
): Effect.Effect<Envelope.ExitStatus> =>
  Effect.gen(function*() {
    const { app, deploymentId, options } = deployment
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
        external: [...deployment.groups.external],
        appModule: options.appModule,
        mtls: deployment.security !== undefined
      },
      socketDir: deployment.socketDir,
      command: options.launch.command,
      args: options.launch.args,
      env: options.launch.env,
      cwd: options.launch.cwd,
      handler: handler(deployment, group, slot, replicaId),
      health: deployment.health,
      output: Logs.replicaOutput(deployment.logs, { app, deploymentId, node: replicaId, component: group.name }, writer)
    })
    slot.current = { envelope, address: undefined }
    yield* writeRegistry(deployment)
    return yield* envelope.exited
  }).pipe(
    Effect.catchTag(
      "EnvelopeError",
      (error) => Effect.as(Effect.logError(error.message), { code: null, signal: null } as Envelope.ExitStatus)
    ),
    Effect.scoped
  )

/** The replica is gone: out of its slot, its group's routing and the listeners' proxies. */
const retire = (
  deployment: Deployment,
  group: Groups.Group,
  slot: Groups.Slot,
  replicaId: string
): Effect.Effect<void> =>
  Effect.suspend(() => {
    slot.current = undefined
    deployment.listeners.drop(replicaId)
    return Effect.zipRight(Groups.publish(group), writeRegistry(deployment))
  })

/**
 * What the deployer does for the control calls of replica `replicaId`
 * (see `Envelope.Handler`).
 */
const handler = (
  deployment: Deployment,
  group: Groups.Group,
  slot: Groups.Slot,
  replicaId: string
): Envelope.Handler => ({
  traceSpans: (spans) => Effect.sync(() => deployment.traces.add(spans)),
  certificate: deployment.security?.credentials(group),
  authorize: (name) => Security.authorize(deployment.security, name),
  requires: (caller, component) => Security.requires(deployment.security, caller, component),
  ready: (address) =>
    Effect.suspend(() => {
      if (slot.current === undefined || slot.current.envelope.replicaId !== replicaId) return Effect.void
      slot.current.address = address
      return Effect.zipRight(Groups.publish(group), writeRegistry(deployment))
    }),
  unhealthy: (reason) =>
    Effect.suspend(() => {
      const current = slot.current
      if (current === undefined || current.envelope.replicaId !== replicaId) return Effect.void
      // Out of routing and the proxies now; the slot keeps the process until its exit, which the kill brings.
      current.address = undefined
      deployment.listeners.drop(replicaId)
      return Effect.logWarning(
        `replica ${slot.index + 1} of ${group.name} (pid ${current.envelope.pid}) ${reason}; ` +
          `taken out of routing, killing it`
      ).pipe(Effect.zipRight(Groups.publish(group)), Effect.zipRight(writeRegistry(deployment)))
    }),
  activate: (component) => activate(deployment, component),
  routing: (component) => routing(deployment, component),
  exportListener: (listener, address, kind) =>
    deployment.listeners.exportListener(replicaId, listener, address, kind).pipe(
      Effect.tap(() => writeRegistry(deployment)),
      Effect.map((proxy) => proxy.address),
      Effect.mapError((error) => new Control.ControlError({ message: error.message })),
      Effect.tapError((error) => Effect.logError(error.message))
    )
})

/** The recent exits of a slot's replicas. */
interface Crashes {
  /** When each exit within the restart window happened. */
  readonly times: Array<number>
  /** Exits in a row of replicas that ran for less than the restart window. */
  consecutive: number
}

/**
 * Records the exit, at `now`, of a replica started at `started`: the delay
 * before its restart (exponential in the consecutive crashes, capped, with
 * jitter), or undefined when it crashed `maxCrashes` times within the
 * window: a crash loop, not restarted again.
 */
const recordExit = (restart: Restart, crashes: Crashes, started: number, now: number): number | undefined => {
  const window = Duration.toMillis(restart.window)
  crashes.consecutive = now - started > window ? 1 : crashes.consecutive + 1
  crashes.times.push(now)
  while (crashes.times.length > 0 && now - crashes.times[0]! > window) crashes.times.shift()
  if (crashes.times.length >= restart.maxCrashes) return undefined
  const base = Math.min(
    Duration.toMillis(restart.maxDelay),
    Duration.toMillis(restart.initialDelay) * 2 ** (crashes.consecutive - 1)
  )
  return Math.round(base * (0.5 + Math.random()))
}

const describeExit = (status: Envelope.ExitStatus): string =>
  status.unhealthy !== undefined
    ? `was killed (${status.signal ?? `exit code ${status.code}`}): it ${status.unhealthy}`
    : status.signal !== null
    ? `killed by ${status.signal}`
    : `exit code ${status.code}`
