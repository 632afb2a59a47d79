/**
 * The boutique deployed as users deploy it — `weaver single deploy`, `weaver
 * multi deploy` with every component in its own process, and with all of
 * them colocated with the storefront — and the gRPC baseline, driven over
 * HTTP with the same checks. Uses the built CLI and app (`npm run build`).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Deployments from "../harness/Deployments.js"
import { shop } from "./utils/flows.js"

const deployed = (deploy: () => Promise<Deployments.Deployment>, processes: (n: number) => boolean) =>
  Effect.acquireUseRelease(
    Effect.promise(deploy),
    (deployment) =>
      Effect.promise(async () => {
        await shop(deployment.address)
        // Two shoppers at once, on other sessions: carts do not mix.
        await Promise.all([shop(deployment.address), shop(deployment.address)])
        const count = deployment.pids().length
        assert.isTrue(processes(count), `${deployment.name}: ${count} processes\n${deployment.output()}`)
      }),
    (deployment) => Effect.promise(deployment.stop)
  )

describe("the deployed boutique", { sequential: true }, () => {
  it.live(
    "weaver single deploy: the flows over HTTP",
    () => deployed(() => Deployments.deployWeaver("single", "weaver.toml"), (n) => n >= 1 && n <= 2),
    120_000
  )

  it.live(
    "weaver multi deploy, one process per component: the flows over HTTP",
    // The deployer, the main group and the nine components' groups, one replica each.
    () => deployed(() => Deployments.deployWeaver("multi", "weaver.toml"), (n) => n >= 11),
    180_000
  )

  it.live(
    "weaver multi deploy, everything colocated with main: the flows over HTTP",
    () => deployed(() => Deployments.deployWeaver("multi", "weaver-colocated.toml"), (n) => n >= 2 && n <= 3),
    180_000
  )

  it.live(
    "the gRPC baseline, one process per service: the same flows over HTTP",
    // Nine services and the storefront.
    () => deployed(Deployments.deployBaseline, (n) => n === 10),
    120_000
  )
})
