/**
 * `weaver <tool> profile [--type=cpu|heap] [--duration=30s] <deployment>`:
 * collects a profile of a live deployment from its status server, writes the
 * gzipped pprof bytes to a file under the system's temporary directory and
 * prints the file's path, for `go tool pprof` or speedscope.
 *
 * @since 0.1.0
 */
import * as Profiling from "@effect-weaver/runtime/Profiling"
import * as Registry from "@effect-weaver/runtime/Registry"
import * as Console from "effect/Console"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"

/**
 * A profile that could not be taken: no or several deployments match, the
 * deployment has no status server, or the status server refused or failed.
 *
 * @since 0.1.0
 * @category errors
 */
export class ProfileError extends Data.TaggedError("ProfileError")<{
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
 * The live deployment of `tool` whose id is `id` or starts with it. Fails
 * naming the candidates when the prefix is ambiguous, and the live
 * deployments when none matches.
 *
 * @since 0.1.0
 * @category accessors
 */
export const findDeployment = (tool: Registry.Tool, id: string): Effect.Effect<Registry.Deployment, ProfileError> =>
  Effect.gen(function*() {
    const deployments = yield* Registry.list(tool)
    const exact = deployments.find((d) => d.deploymentId === id)
    if (exact !== undefined) return exact
    const matches = id === "" ? [] : deployments.filter((d) => d.deploymentId.startsWith(id))
    if (matches.length === 1) return matches[0]!
    if (matches.length > 1) {
      return yield* new ProfileError({
        reason: `deployment id prefix ${JSON.stringify(id)} is ambiguous: it matches ${
          matches.map((d) => `${d.deploymentId} (${d.app})`).join(", ")
        }`
      })
    }
    const live = deployments.length === 0
      ? `there are no live weaver ${tool} deployments`
      : `live deployments: ${deployments.map((d) => `${d.deploymentId} (${d.app})`).join(", ")}`
    return yield* new ProfileError({ reason: `no live weaver ${tool} deployment ${JSON.stringify(id)}; ${live}` })
  })

/**
 * What to profile.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly type: string
  readonly duration: string
  readonly deployment: string
}

/** Time allowed on top of the profile's duration for the status server to answer. */
const slack = Duration.seconds(30)

/**
 * Fetches a profile of `deployment` from its status server.
 *
 * @since 0.1.0
 * @category accessors
 */
export const fetchProfile = (
  deployment: Registry.Deployment,
  type: Profiling.ProfileType,
  duration: Duration.Duration
): Effect.Effect<Uint8Array, ProfileError> => {
  const where = `deployment ${deployment.deploymentId} (${deployment.app})`
  const address = deployment.statusAddress
  if (address === undefined) return Effect.fail(new ProfileError({ reason: `${where} has no status server` }))
  const query = new URLSearchParams({ type, duration: `${Duration.toMillis(duration)}ms` })
  return Effect.tryPromise({
    try: async (signal) => {
      const response = await fetch(`http://${address}${Profiling.path}?${query}`, {
        signal: AbortSignal.any([signal, AbortSignal.timeout(Duration.toMillis(Duration.sum(duration, slack)))])
      })
      if (!response.ok) {
        const text = (await response.text()).trim()
        return { ok: false as const, message: `HTTP ${response.status}${text === "" ? "" : `: ${text}`}` }
      }
      return { ok: true as const, bytes: new Uint8Array(await response.arrayBuffer()) }
    },
    catch: (cause) =>
      new ProfileError({
        reason: `${where}: status server at ${address} did not answer: ${
          cause instanceof Error ? cause.message : String(cause)
        }`
      })
  }).pipe(
    Effect.flatMap((result) =>
      result.ok
        ? Effect.succeed(result.bytes)
        : Effect.fail(
          new ProfileError({ reason: `${where}: status server at ${address} could not profile: ${result.message}` })
        )
    )
  )
}

/**
 * Collects the profile and writes it to
 * `<tmpdir>/<app>-<deployment prefix>-<type>-<random>.pb.gz`, returning the
 * file's path.
 *
 * @since 0.1.0
 * @category accessors
 */
export const collect = (
  tool: Registry.Tool,
  options: Options
): Effect.Effect<string, ProfileError | Profiling.ProfilingError> =>
  Effect.gen(function*() {
    const type = yield* Profiling.parseType(options.type)
    const duration = yield* Profiling.parseDuration(options.duration)
    const deployment = yield* findDeployment(tool, options.deployment)
    const bytes = yield* fetchProfile(deployment, type, duration)
    return yield* Effect.tryPromise({
      try: async () => {
        const name = `${deployment.app}-${deployment.deploymentId.slice(0, 8)}-${type}-${
          Crypto.randomBytes(4).toString("hex")
        }.pb.gz`
        const file = Path.join(Os.tmpdir(), name.replace(/[^\w.-]/g, "_"))
        await Fs.writeFile(file, bytes, { flag: "wx" })
        return file
      },
      catch: (cause) =>
        new ProfileError({
          reason: `could not write the profile under ${Os.tmpdir()}: ${
            cause instanceof Error ? cause.message : String(cause)
          }`
        })
    })
  })

/**
 * Runs `weaver <tool> profile`: prints the path of the written profile.
 *
 * @since 0.1.0
 * @category runtime
 */
export const profile = (
  tool: Registry.Tool,
  options: Options
): Effect.Effect<void, ProfileError | Profiling.ProfilingError> => Effect.flatMap(collect(tool, options), Console.log)
