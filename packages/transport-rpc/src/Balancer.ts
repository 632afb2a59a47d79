/**
 * Picks a replica for each call: round-robin for unrouted methods, and for
 * `routeBy` methods a stable key → replica mapping.
 *
 * Routing follows Service Weaver: the key is hashed onto a fixed number of
 * equal slices of the 32-bit key space, and each slice is owned by one
 * replica. Unlike Service Weaver's `EqualSlices` (which deals slices out in
 * sorted order, so adding a replica moves most keys), a slice's owner is
 * chosen by rendezvous hashing of (slice, replica address): every client
 * computes the same table from the same replica set, and when a replica comes
 * or goes only the slices it wins or owned move (about 1/n of the keys).
 *
 * @since 0.1.0
 */

/**
 * The number of slices of the key space (a power of two).
 *
 * @since 0.1.0
 * @category constants
 */
export const sliceCount = 1024

const sliceShift = 32 - Math.log2(sliceCount)

const fnv1a = (value: string, seed = 0x811c9dc5): number => {
  let hash = seed
  for (let i = 0; i < value.length; i++) {
    hash ^= value.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193)
  }
  return hash >>> 0
}

const mix = (value: number): number => {
  let h = value
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/**
 * The 32-bit hash of a routing key. Strings and numbers never collide by
 * construction (`"1"` and `1` are different keys).
 *
 * @since 0.1.0
 * @category routing
 */
export const hashKey = (key: string | number): number => mix(fnv1a(typeof key === "number" ? `n:${key}` : `s:${key}`))

/**
 * The slice a key falls into.
 *
 * @since 0.1.0
 * @category routing
 */
export const sliceOf = (key: string | number): number => hashKey(key) >>> sliceShift

/**
 * Assigns every slice to one of `replicas` (by index into `replicas`).
 *
 * @since 0.1.0
 * @category routing
 */
export const assign = (replicas: ReadonlyArray<string>): Int32Array => {
  const table = new Int32Array(sliceCount).fill(-1)
  const seeds = replicas.map((address) => fnv1a(address))
  for (let slice = 0; slice < sliceCount; slice++) {
    let best = -1
    let bestWeight = -1
    const salt = Math.imul(slice + 1, 0x9e3779b1)
    for (let i = 0; i < seeds.length; i++) {
      const weight = mix(seeds[i]! ^ salt)
      if (weight > bestWeight || (weight === bestWeight && replicas[i]! < replicas[best]!)) {
        best = i
        bestWeight = weight
      }
    }
    table[slice] = best
  }
  return table
}

/**
 * A balancer over the replicas of one component.
 *
 * @since 0.1.0
 * @category models
 */
export class Balancer<A> {
  private replicas: ReadonlyArray<A> = []
  private table: Int32Array = new Int32Array(0)
  private next = 0

  constructor(readonly addressOf: (replica: A) => string) {}

  /**
   * The current replicas.
   *
   * @since 0.1.0
   */
  get current(): ReadonlyArray<A> {
    return this.replicas
  }

  /**
   * Replaces the replica set.
   *
   * @since 0.1.0
   */
  update(replicas: ReadonlyArray<A>): void {
    this.replicas = replicas
    this.table = assign(replicas.map(this.addressOf))
  }

  /**
   * The replica owning `key`, ignoring health.
   *
   * @since 0.1.0
   */
  owner(key: string | number): A | undefined {
    if (this.replicas.length === 0) return undefined
    return this.replicas[this.table[sliceOf(key)]!]
  }

  /**
   * Picks a usable replica: the key's owner when there is a key and the
   * owner is usable, otherwise the next usable one in round-robin order.
   *
   * @since 0.1.0
   */
  pick(key: string | number | undefined, usable: (replica: A) => boolean): A | undefined {
    const replicas = this.replicas
    const n = replicas.length
    if (n === 0) return undefined
    if (key !== undefined) {
      const owner = replicas[this.table[sliceOf(key)]!]!
      if (usable(owner)) return owner
    }
    for (let i = 0; i < n; i++) {
      const replica = replicas[this.next++ % n]!
      if (this.next >= 0x40000000) this.next = 0
      if (usable(replica)) return replica
    }
    return undefined
  }
}
