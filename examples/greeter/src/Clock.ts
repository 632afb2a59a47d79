import { Component } from "@effect-weaver/core"
import { Effect, Schema } from "effect"

/**
 * Tells the time. Tests replace it with a fake so greetings are predictable.
 */
export class Clock extends Component.Tag("greeter/Clock")<Clock>()({
  now: Component.method({ success: Schema.String })
}) {}

const twoDigits = (n: number) => String(n).padStart(2, "0")

export const ClockImpl = Component.implement(
  Clock,
  Effect.succeed({
    now: () =>
      Effect.sync(() => {
        const date = new Date()
        return `${twoDigits(date.getHours())}:${twoDigits(date.getMinutes())}`
      })
  })
)
