import { Weaver, WeaverConfig } from "@effect-weaver/core"
import type { Weavelet } from "@effect-weaver/core"
import * as TransportLocal from "@effect-weaver/transport-local"
import { Effect } from "effect"

/**
 * Builds a weavelet for `app` over the local transport and runs `body` as the
 * main component would: with a client of every component in its context.
 */
export const runLocal = <A, E>(
  app: Weaver.App<any, any>,
  body: (weavelet: Weavelet.Weavelet["Type"]) => Effect.Effect<A, E, any>,
  options?: Partial<Weaver.WeaveletOptions>
): Effect.Effect<A, E | WeaverConfig.WeaverConfigError> =>
  Effect.gen(function*() {
    const weavelet = yield* Weaver.makeWeavelet(app, { config: WeaverConfig.empty(), ...options })
    return yield* (body(weavelet).pipe(Effect.provide(weavelet.clients("main"))) as Effect.Effect<A, E>)
  }).pipe(Effect.scoped, Effect.provide(TransportLocal.layer))
