import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"

/**
 * Runs `end` with `effect`'s outcome once it succeeds or fails, then passes
 * the outcome on: one pair of match handlers, cheaper than `Effect.onExit`'s
 * uninterruptible region. An interrupted fiber skips them: callers that must
 * see an interruption watch the fiber's end too (the weavelet's calls in
 * flight, a traced call's span).
 *
 * @internal
 */
export const settled = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  end: (exit: Exit.Exit<A, E>) => void
): Effect.Effect<A, E, R> =>
  Effect.matchCauseEffect(effect, {
    onFailure: (cause) => {
      const exit = Exit.failCause(cause)
      end(exit)
      return exit
    },
    onSuccess: (value) => {
      const exit = Exit.succeed(value)
      end(exit)
      return exit
    }
  })
