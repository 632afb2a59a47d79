/**
 * `weaver <tool> metrics [regex]`: the metrics of every live deployment of a
 * tool, read from their status servers and printed in the Prometheus text
 * format, optionally only those whose name matches a regular expression.
 *
 * @since 0.1.0
 */
import * as Prometheus from "@effect-weaver/runtime/Prometheus"
import * as Registry from "@effect-weaver/runtime/Registry"
import * as StatusServer from "@effect-weaver/runtime/StatusServer"
import * as Console from "effect/Console"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"

/**
 * A metrics regular expression that does not compile.
 *
 * @since 0.1.0
 * @category errors
 */
export class MetricsFilterError extends Data.TaggedError("MetricsFilterError")<{
  readonly regex: string
  readonly reason: string
}> {
  override get message(): string {
    return `invalid metrics regex ${JSON.stringify(this.regex)}: ${this.reason}`
  }
}

/**
 * Compiles the `[regex]` argument.
 *
 * @since 0.1.0
 * @category constructors
 */
export const compileFilter = (regex: string): Effect.Effect<RegExp, MetricsFilterError> =>
  Effect.try({
    try: () => new RegExp(regex),
    catch: (cause) => new MetricsFilterError({ regex, reason: cause instanceof Error ? cause.message : String(cause) })
  })

const decode = Schema.decodeUnknownEither(Schema.parseJson(StatusServer.MetricsResponse))

/** The time allowed to each status server to answer. */
const fetchTimeout = 5_000

/**
 * The metrics of one deployment, from its status server; a string saying
 * what went wrong if they cannot be read.
 *
 * @since 0.1.0
 * @category accessors
 */
export const fetchDeployment = (
  deployment: Registry.Deployment
): Effect.Effect<Either.Either<ReadonlyArray<Prometheus.MetricSnapshot>, string>> => {
  const address = deployment.statusAddress
  const where = `deployment ${deployment.deploymentId} (${deployment.app})`
  if (address === undefined) return Effect.succeed(Either.left(`${where} has no status server`))
  return Effect.tryPromise({
    try: async (signal) => {
      const response = await fetch(`http://${address}${StatusServer.metricsPath}`, {
        signal: AbortSignal.any([signal, AbortSignal.timeout(fetchTimeout)])
      })
      if (!response.ok) throw new Error(`HTTP ${response.status}`)
      return response.text()
    },
    catch: (cause) => cause instanceof Error ? cause.message : String(cause)
  }).pipe(
    Effect.map((text) =>
      Either.mapLeft(
        decode(text),
        (error) => `${where}: status server at ${address} sent bad metrics: ${error.message}`
      )
    ),
    Effect.catchAll((reason) =>
      Effect.succeed(Either.left(`${where}: status server at ${address} did not answer: ${reason}`))
    )
  )
}

/**
 * The Prometheus text of every live deployment of `tool`, with the
 * deployments that could not be read. The header's scrape targets are the
 * status servers that answered.
 *
 * @since 0.1.0
 * @category accessors
 */
export const collect = (
  tool: Registry.Tool,
  filter?: RegExp
): Effect.Effect<{ readonly text: string; readonly failures: ReadonlyArray<string> }> =>
  Effect.gen(function*() {
    const deployments = yield* Registry.list(tool)
    const results = yield* Effect.forEach(deployments, fetchDeployment, { concurrency: 8 })
    const failures: Array<string> = []
    const metrics: Array<Prometheus.MetricSnapshot> = []
    const targets: Array<string> = []
    results.forEach((result, i) => {
      if (Either.isLeft(result)) {
        failures.push(result.left)
      } else {
        metrics.push(...result.right)
        targets.push(deployments[i]!.statusAddress!)
      }
    })
    return { text: Prometheus.encode(metrics, { targets, filter }), failures }
  })

/**
 * Prints the metrics of every live deployment of `tool` on standard output,
 * and on standard error a line for each deployment that could not be read.
 *
 * @since 0.1.0
 * @category runtime
 */
export const metrics = (tool: Registry.Tool, regex: string | undefined): Effect.Effect<void, MetricsFilterError> =>
  Effect.gen(function*() {
    const filter = regex === undefined ? undefined : yield* compileFilter(regex)
    const { failures, text } = yield* collect(tool, filter)
    for (const failure of failures) yield* Console.error(`weaver: ${failure}`)
    yield* Console.log(text.trimEnd())
  })
