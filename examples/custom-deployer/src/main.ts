/**
 * The custom deployer as a program:
 *
 *     node dist/main.js <weaver.toml>
 *
 * It deploys the application until it is interrupted (Ctrl-C, SIGTERM),
 * then stops every process of it and exits. A deployment that cannot start
 * (a bad config, one the application refuses) prints one line with the
 * error and exits with code 1.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Effect } from "effect"
import { deploy, DeployerError } from "./Deployer.js"

const configFile = process.argv[2]

Effect.gen(function*() {
  if (configFile === undefined) return yield* new DeployerError({ reason: "usage: custom-deployer <weaver.toml>" })
  yield* deploy(configFile)
  return yield* Effect.never
}).pipe(
  Effect.scoped,
  Effect.catchAll((error) =>
    Effect.sync(() => {
      process.stderr.write(`custom-deployer: ${error.message}\n`)
      process.exitCode = 1
    })
  ),
  NodeRuntime.runMain
)
