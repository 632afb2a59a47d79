import type { Weaver } from "@effect-weaver/core"
import { WeaverConfig } from "@effect-weaver/core"
import { App } from "@effect-weaver/runtime"
import type { Weavelet } from "@effect-weaver/runtime"
import * as TransportLocal from "@effect-weaver/transport-local"
import { Effect } from "effect"

/**
 * Builds a weavelet for `app` over the local transport and runs `body` as the
 * main component would: with a client of every component in its context.
 */
export const runLocal = <A, E>(
  app: Weaver.App<any, any>,
  body: (weavelet: Weavelet.Weavelet["Type"]) => Effect.Effect<A, E, any>,
  options?: Partial<App.WeaveletOptions>
): Effect.Effect<A, E | WeaverConfig.WeaverConfigError> =>
  Effect.gen(function*() {
    const weavelet = yield* App.makeWeavelet(app, { config: WeaverConfig.empty(), ...options })
    return yield* (body(weavelet).pipe(Effect.provide(weavelet.clients("main"))) as Effect.Effect<A, E>)
  }).pipe(Effect.scoped, Effect.provide(TransportLocal.layer))
