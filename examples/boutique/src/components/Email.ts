/**
 * The email component: it renders each order confirmation and keeps the
 * latest ones in memory (and in its log) instead of sending them over SMTP.
 *
 * @since 0.2.0
 */
import { Component } from "@effect-weaver/core"
import { Effect, Schema } from "effect"
import * as Order from "../domain/Order.js"
import { OrderResult } from "./Model.js"

/**
 * How many confirmations the component keeps, oldest dropped first.
 *
 * @since 0.2.0
 * @category constants
 */
export const kept = 1_000

/**
 * Sends order confirmations.
 *
 * @since 0.2.0
 * @category components
 */
export class Email extends Component.Tag("boutique/Email")<Email>()({
  sendOrderConfirmation: Component.method({
    payload: Schema.Struct({ email: Schema.String, order: OrderResult }),
    retry: false,
    routeBy: ({ email }) => email
  }),
  /** The confirmations kept for an address, oldest first. */
  sent: Component.method({ payload: Schema.String, success: Schema.Array(Schema.String), routeBy: (email) => email })
}) {}

/**
 * @since 0.2.0
 * @category implementations
 */
export const EmailImpl = Component.implement(
  Email,
  Effect.sync(() => {
    const outbox: Array<{ readonly email: string; readonly text: string }> = []
    return {
      sendOrderConfirmation: ({ email, order }) =>
        Effect.suspend(() => {
          const text = Order.confirmation(email, order)
          outbox.push({ email, text })
          if (outbox.length > kept) outbox.shift()
          return Effect.logDebug(`order confirmation to ${email}:\n${text}`)
        }),
      sent: (email) => Effect.sync(() => outbox.filter((m) => m.email === email).map((m) => m.text))
    }
  })
)
