/**
 * Shipping as the demo's shipping service does it: a flat quote for any
 * non-empty order, and a made-up tracking id.
 *
 * @since 0.2.0
 */
import type { Money } from "./Money.js"

/**
 * A shipping address.
 *
 * @since 0.2.0
 * @category models
 */
export interface Address {
  readonly streetAddress: string
  readonly city: string
  readonly state: string
  readonly country: string
  readonly zipCode: number
}

/**
 * The quote for shipping `count` items, in US dollars: $8.99, or nothing for
 * no items.
 *
 * @since 0.2.0
 * @category shipping
 */
export const quote = (count: number): Money =>
  count === 0 ? { currencyCode: "USD", units: 0, nanos: 0 } : { currencyCode: "USD", units: 8, nanos: 990_000_000 }

const letter = () => String.fromCharCode(65 + Math.floor(Math.random() * 25))
const digits = (n: number) => Array.from({ length: n }, () => Math.floor(Math.random() * 10)).join("")

/**
 * A tracking id for an order shipped to `address`, e.g. `QK-24123-12345678`
 * (the demo salts its shape with the address's length).
 *
 * @since 0.2.0
 * @category shipping
 */
export const trackingId = (address: Address): string => {
  const salt = `${address.streetAddress}, ${address.city}, ${address.state}`
  return `${letter()}${letter()}-${salt.length}${digits(3)}-${Math.floor(salt.length / 2)}${digits(7)}`
}
