/**
 * The registry of live deployments on this machine: one JSON file per
 * deployment under `$XDG_DATA_HOME/serviceweaver/<tool>/registry/`, written
 * by the process that runs the deployment and read by `weaver <tool> status`.
 * Entries whose processes are gone are dropped when the registry is read.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Listener from "./Listener.js"

/**
 * One deployment as recorded in the registry.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Deployment = Schema.Struct({
  app: Schema.String,
  deploymentId: Schema.String,
  tool: Schema.Literal("single", "multi"),
  /** The process that owns the entry; the entry dies with it. */
  pid: Schema.Number,
  startedAt: Schema.Number,
  configFile: Schema.optional(Schema.String),
  components: Schema.Array(Schema.Struct({
    name: Schema.String,
    pids: Schema.Array(Schema.Number),
    /** Replicas given up on after crash loops (multi). */
    givenUp: Schema.optional(Schema.Number)
  })),
  listeners: Schema.Array(Schema.Struct({
    name: Schema.String,
    address: Schema.String,
    /** What it speaks, once known: a multi proxy bound before any replica served the listener has none yet. */
    kind: Schema.optional(Listener.Kind)
  })),
  /** The deployment's status server (`host:port`), serving its metrics; see `StatusServer`. */
  statusAddress: Schema.optional(Schema.String),
  /**
   * Why the deployment failed, and when: an entry with a failure outlives its
   * process, for `weaver <tool> status` to report, until `weaver <tool> purge`.
   */
  failure: Schema.optional(Schema.Struct({ reason: Schema.String, at: Schema.Number }))
})

/**
 * @since 0.1.0
 * @category models
 */
export type Deployment = typeof Deployment.Type

/**
 * The tools that keep a registry.
 *
 * @since 0.1.0
 * @category models
 */
export type Tool = Deployment["tool"]

/**
 * The directory holding a tool's registry. Follows Service Weaver:
 * `$XDG_DATA_HOME/serviceweaver/<tool>/registry`, defaulting to
 * `~/.local/share`.
 *
 * @since 0.1.0
 * @category accessors
 */
export const directory = (tool: Tool): string =>
  Path.join(
    process.env.XDG_DATA_HOME || Path.join(Os.homedir(), ".local", "share"),
    "serviceweaver",
    tool,
    "registry"
  )

const fileOf = (tool: Tool, deploymentId: string) => Path.join(directory(tool), `${deploymentId}.registration.json`)

const encode = Schema.encodeSync(Schema.parseJson(Deployment, { space: 2 }))
const decode = Schema.decodeUnknownOption(Schema.parseJson(Deployment))

const write = (deployment: Deployment) =>
  Effect.promise(async () => {
    const file = fileOf(deployment.tool, deployment.deploymentId)
    await Fs.mkdir(Path.dirname(file), { recursive: true })
    const tmp = `${file}.${process.pid}.tmp`
    await Fs.writeFile(tmp, encode(deployment))
    await Fs.rename(tmp, file)
  })

/**
 * Whether a process is alive.
 *
 * @since 0.1.0
 * @category accessors
 */
export const isAlive = (pid: number): boolean => {
  // process.kill(pid, 0) probes without signalling; EPERM still means "exists".
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

/**
 * Records a deployment for as long as the scope lasts (longer if it was
 * given a `failure`: see {@link failures}). Returns a function that updates
 * the entry.
 *
 * @since 0.1.0
 * @category constructors
 */
export const register = (
  deployment: Deployment
): Effect.Effect<(f: (d: Deployment) => Deployment) => Effect.Effect<void>, never, Scope.Scope> =>
  Effect.gen(function*() {
    let current = deployment
    const semaphore = yield* Effect.makeSemaphore(1)
    yield* Effect.acquireRelease(
      write(current).pipe(Effect.ignoreLogged),
      () =>
        current.failure !== undefined
          ? Effect.void
          : Effect.promise(() => Fs.rm(fileOf(current.tool, current.deploymentId), { force: true }))
    )
    return (f: (d: Deployment) => Deployment) =>
      semaphore.withPermits(1)(
        Effect.suspend(() => {
          current = f(current)
          return write(current)
        }).pipe(Effect.ignoreLogged)
      )
  })

/** Every readable entry, deleting those whose owning process is gone and which record no failure. */
const entries = (tool: Tool): Promise<Array<Deployment>> =>
  (async () => {
    const dir = directory(tool)
    const names = await Fs.readdir(dir).catch(() => [] as Array<string>)
    const kept: Array<Deployment> = []
    for (const name of names.filter((n) => n.endsWith(".registration.json"))) {
      const file = Path.join(dir, name)
      const text = await Fs.readFile(file, "utf8").catch(() => undefined)
      if (text === undefined) continue
      const entry = decode(text)
      if (entry._tag === "Some" && (entry.value.failure !== undefined || isAlive(entry.value.pid))) {
        kept.push(entry.value)
      } else {
        await Fs.rm(file, { force: true })
      }
    }
    return kept.sort((a, b) => a.startedAt - b.startedAt)
  })()

/**
 * Lists live deployments, oldest first, deleting entries whose owning
 * process is gone. Failed deployments are not listed: see {@link failures}.
 *
 * @since 0.1.0
 * @category accessors
 */
export const list = (tool: Tool): Effect.Effect<ReadonlyArray<Deployment>> =>
  Effect.promise(() => entries(tool)).pipe(
    Effect.map((all) => all.filter((d) => d.failure === undefined))
  )

/**
 * Lists failed deployments (those whose entry records a `failure`), oldest
 * first. They stay until `weaver <tool> purge` deletes the registry.
 *
 * @since 0.1.0
 * @category accessors
 */
export const failures = (tool: Tool): Effect.Effect<ReadonlyArray<Deployment>> =>
  Effect.promise(() => entries(tool)).pipe(
    Effect.map((all) => all.filter((d) => d.failure !== undefined))
  )
