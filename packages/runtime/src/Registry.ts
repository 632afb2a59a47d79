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
  components: Schema.Array(Schema.Struct({ name: Schema.String, pids: Schema.Array(Schema.Number) })),
  listeners: Schema.Array(Schema.Struct({ name: Schema.String, address: Schema.String })),
  /** The deployment's status server (`host:port`), serving its metrics; see `StatusServer`. */
  statusAddress: Schema.optional(Schema.String)
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
 * Records a deployment for as long as the scope lasts. Returns a function
 * that updates the entry.
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
      () => Effect.promise(() => Fs.rm(fileOf(current.tool, current.deploymentId), { force: true }))
    )
    return (f: (d: Deployment) => Deployment) =>
      semaphore.withPermits(1)(
        Effect.suspend(() => {
          current = f(current)
          return write(current)
        }).pipe(Effect.ignoreLogged)
      )
  })

/**
 * Lists live deployments, oldest first, deleting entries whose owning
 * process is gone.
 *
 * @since 0.1.0
 * @category accessors
 */
export const list = (tool: Tool): Effect.Effect<ReadonlyArray<Deployment>> =>
  Effect.promise(async () => {
    const dir = directory(tool)
    const names = await Fs.readdir(dir).catch(() => [] as Array<string>)
    const live: Array<Deployment> = []
    for (const name of names.filter((n) => n.endsWith(".registration.json"))) {
      const file = Path.join(dir, name)
      const text = await Fs.readFile(file, "utf8").catch(() => undefined)
      if (text === undefined) continue
      const entry = decode(text)
      if (entry._tag === "Some" && isAlive(entry.value.pid)) {
        live.push(entry.value)
      } else {
        await Fs.rm(file, { force: true })
      }
    }
    return live.sort((a, b) => a.startedAt - b.startedAt)
  })
