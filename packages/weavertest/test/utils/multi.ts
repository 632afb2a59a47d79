import { WeaverConfig } from "@effect-weaver/core"
import type { Weaver } from "@effect-weaver/core"
import { App } from "@effect-weaver/runtime"
import { MultiDeployment } from "@effect-weaver/weavertest"
import { Effect, Layer } from "effect"

/**
 * Deploys `app` as the Multi runner does, this process playing main, and
 * returns the deployment and this process's weavelet: for tests that look at
 * the deployer itself, which a runner's test body cannot reach. `configText`
 * is a weaver.toml (none by default).
 */
export const deployHere = (app: Weaver.App<any, any>, configText?: string) =>
  Effect.gen(function*() {
    const config = configText === undefined
      ? WeaverConfig.empty()
      : yield* WeaverConfig.parse(configText, "<deployHere config>")
    const deployment = yield* MultiDeployment.make({
      app,
      config,
      configText,
      deploymentId: crypto.randomUUID(),
      fakes: new Map()
    })
    const transport = yield* Layer.build(deployment.transport)
    const weavelet = yield* App.makeWeavelet(app, {
      config,
      deploymentId: deployment.deployer.deploymentId,
      hosted: new Set<string>(),
      onRequire: deployment.onRequire
    }).pipe(Effect.provide(transport))
    yield* deployment.started(weavelet)
    return { deployment, weavelet }
  })
