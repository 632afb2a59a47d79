/**
 * Money as the Online Boutique's protocol has it: whole `units` and `nanos`
 * (10^-9 units) of a currency, both with the amount's sign, and the carry
 * arithmetic its services total orders with. Plain functions, shared by the
 * effect-weaver components and the gRPC baseline.
 *
 * @since 0.2.0
 */

/**
 * An amount of a currency: `units` whole units plus `nanos` 10^-9 units,
 * `nanos` within ±999,999,999 and of the same sign as `units` (or either zero).
 *
 * @since 0.2.0
 * @category models
 */
export interface Money {
  /** The ISO 4217 code, e.g. `"USD"`. */
  readonly currencyCode: string
  readonly units: number
  readonly nanos: number
}

const nanosMod = 1_000_000_000

/**
 * A money value that breaks the invariants, or two of different currencies
 * added: a bug of the caller, as Go's `money.Must` panics on.
 *
 * @since 0.2.0
 * @category errors
 */
export class MoneyError extends Error {
  override readonly name = "MoneyError"
}

/**
 * Whether `m` keeps the invariants: integral fields, `nanos` within
 * ±999,999,999, and `units` and `nanos` not of opposite signs.
 *
 * @since 0.2.0
 * @category predicates
 */
export const isValid = (m: Money): boolean =>
  Number.isSafeInteger(m.units) && Number.isInteger(m.nanos) && m.nanos > -nanosMod && m.nanos < nanosMod &&
  (m.nanos === 0 || m.units === 0 || (m.nanos < 0) === (m.units < 0))

/**
 * Zero of a currency.
 *
 * @since 0.2.0
 * @category constructors
 */
export const zero = (currencyCode: string): Money => ({ currencyCode, units: 0, nanos: 0 })

/**
 * `m` as text, e.g. `USD 19.990000000`, for messages and logs.
 *
 * @since 0.2.0
 * @category formatting
 */
export const format = (m: Money): string => {
  const negative = m.units < 0 || m.nanos < 0
  return `${m.currencyCode} ${negative ? "-" : ""}${Math.abs(m.units)}.${String(Math.abs(m.nanos)).padStart(9, "0")}`
}

/**
 * The sum of two amounts of the same currency, carrying nanos into units.
 *
 * Go's `money.Sum` (in the demo and in Service Weaver's port) leaves
 * 0.3 + 0.2 as `{units: 1, nanos: -500000000}`, which breaks the sign
 * invariant; here the result is always normalised.
 *
 * @since 0.2.0
 * @category arithmetic
 */
export const sum = (l: Money, r: Money): Money => {
  if (!isValid(l) || !isValid(r)) throw new MoneyError(`invalid money value: ${JSON.stringify(isValid(l) ? r : l)}`)
  if (l.currencyCode !== r.currencyCode) {
    throw new MoneyError(`mismatching currency codes: ${l.currencyCode} and ${r.currencyCode}`)
  }
  let units = l.units + r.units
  let nanos = l.nanos + r.nanos
  units += Math.trunc(nanos / nanosMod)
  nanos = nanos % nanosMod
  if (units > 0 && nanos < 0) {
    units--
    nanos += nanosMod
  } else if (units < 0 && nanos > 0) {
    units++
    nanos -= nanosMod
  }
  return { currencyCode: l.currencyCode, units, nanos: nanos === 0 ? 0 : nanos }
}

/**
 * `m` times a non-negative whole `n`, by repeated {@link sum} (the original's
 * `MultiplySlow`; quantities are small).
 *
 * @since 0.2.0
 * @category arithmetic
 */
export const multiply = (m: Money, n: number): Money => {
  if (!Number.isSafeInteger(n) || n < 0) throw new MoneyError(`cannot multiply money by ${n}`)
  let out = zero(m.currencyCode)
  for (let i = 0; i < n; i++) out = sum(out, m)
  return out
}
