/**
 * Shopping carts, per user and in memory, as the demo's cart service keeps
 * them without Redis.
 *
 * @since 0.2.0
 */

/**
 * A line of a cart.
 *
 * @since 0.2.0
 * @category models
 */
export interface CartItem {
  readonly productId: string
  readonly quantity: number
}

/**
 * The carts of every user: adding a product already in the cart adds to its
 * quantity.
 *
 * @since 0.2.0
 * @category models
 */
export class CartStore {
  readonly #carts = new Map<string, ReadonlyArray<CartItem>>()

  add(userId: string, item: CartItem): void {
    const cart = this.#carts.get(userId) ?? []
    const found = cart.some((x) => x.productId === item.productId)
    this.#carts.set(
      userId,
      found
        ? cart.map((x) => x.productId === item.productId ? { ...x, quantity: x.quantity + item.quantity } : x)
        : [...cart, { productId: item.productId, quantity: item.quantity }]
    )
  }

  get(userId: string): ReadonlyArray<CartItem> {
    return this.#carts.get(userId) ?? []
  }

  empty(userId: string): void {
    this.#carts.delete(userId)
  }
}
