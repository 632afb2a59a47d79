import { assert } from "@effect/vitest"
import * as Crypto from "node:crypto"

const nextYear = new Date().getFullYear() + 1
const checkoutForm = (creditCardNumber: string) => ({
  email: "someone@example.com",
  address: { streetAddress: "1 Main St", city: "Springfield", state: "IL", country: "USA", zipCode: 62701 },
  creditCard: { creditCardNumber, creditCardCvv: 123, creditCardExpirationYear: nextYear, creditCardExpirationMonth: 7 }
})

type Json = any

/**
 * Drives the storefront's flows over HTTP as a shopper does, checking every
 * answer: the same checks for every deployment, the baseline's included.
 */
export const shop = async (address: string): Promise<void> => {
  const session = Crypto.randomUUID()
  let cookie = `shop_session-id=${session}`
  const call = async (method: "GET" | "POST", path: string, body?: unknown) => {
    const response = await fetch(`http://${address}${path}`, {
      method,
      headers: { cookie, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) }),
      signal: AbortSignal.timeout(20_000)
    })
    const text = await response.text()
    return { status: response.status, headers: response.headers, body: JSON.parse(text) as Json, text }
  }

  const anonymous = await fetch(`http://${address}/`)
  assert.strictEqual(anonymous.status, 200)
  assert.match(
    anonymous.headers.get("set-cookie") ?? "",
    /shop_session-id=[0-9a-f-]{36}/,
    "a new session gets a cookie"
  )
  await anonymous.text()

  const home = await call("GET", "/")
  assert.strictEqual(home.status, 200, home.text)
  assert.strictEqual(home.body.currency, "USD")
  assert.strictEqual(home.body.products.length, 9)
  assert.sameMembers(home.body.currencies, ["USD", "EUR", "CAD", "JPY", "GBP", "TRY"])

  const badCurrency = await call("POST", "/setCurrency", { currencyCode: "XXX" })
  assert.strictEqual(badCurrency.status, 400, badCurrency.text)
  assert.strictEqual(badCurrency.body.error, "UnsupportedCurrency")
  const setCurrency = await call("POST", "/setCurrency", { currencyCode: "EUR" })
  assert.strictEqual(setCurrency.status, 200, setCurrency.text)
  assert.match(setCurrency.headers.get("set-cookie") ?? "", /shop_currency=EUR/)
  cookie += "; shop_currency=EUR"

  const product = await call("GET", "/product/OLJCESPC7Z")
  assert.strictEqual(product.status, 200, product.text)
  assert.strictEqual(product.body.product.name, "Sunglasses")
  assert.deepStrictEqual(product.body.price, { currencyCode: "EUR", units: 17, nanos: 682441398 })
  assert.strictEqual(product.body.recommendations.length, 4)
  assert.notInclude(product.body.recommendations.map((p: Json) => p.id), "OLJCESPC7Z")

  const missing = await call("GET", "/product/NOSUCHPRODUCT")
  assert.strictEqual(missing.status, 404, missing.text)
  assert.deepStrictEqual(missing.body, { error: "ProductNotFound", message: "no product with id \"NOSUCHPRODUCT\"" })

  const badLine = await call("POST", "/cart", { productId: "OLJCESPC7Z", quantity: 0 })
  assert.strictEqual(badLine.status, 400, badLine.text)
  assert.include(badLine.body.message, "quantity")
  const notJson = await call("POST", "/cart", "{not json")
  assert.strictEqual(notJson.status, 400, notJson.text)
  for (const line of [{ productId: "OLJCESPC7Z", quantity: 2 }, { productId: "9SIQT8TOJO", quantity: 3 }]) {
    const added = await call("POST", "/cart", line)
    assert.strictEqual(added.status, 200, added.text)
  }

  const cart = await call("GET", "/cart")
  assert.strictEqual(cart.status, 200, cart.text)
  assert.deepStrictEqual(cart.body.items.map((i: Json) => [i.product.id, i.quantity]), [["OLJCESPC7Z", 2], [
    "9SIQT8TOJO",
    3
  ]])
  assert.strictEqual(cart.body.totalPrice.currencyCode, "EUR")

  const refused = await call("POST", "/cart/checkout", checkoutForm("4111-1111-1111-1112"))
  assert.strictEqual(refused.status, 400, refused.text)
  assert.deepStrictEqual(refused.body, {
    error: "InvalidCreditCard",
    message: "credit card info is invalid: the number fails the Luhn check"
  })
  const badForm = await call("POST", "/cart/checkout", { ...checkoutForm("4111-1111-1111-1111"), email: "nobody" })
  assert.strictEqual(badForm.status, 400, badForm.text)

  const placed = await call("POST", "/cart/checkout", checkoutForm("4111-1111-1111-1111"))
  assert.strictEqual(placed.status, 200, placed.text)
  assert.deepStrictEqual(placed.body.totalPaid, cart.body.totalPrice, "charged what the cart showed")
  assert.match(placed.body.order.shippingTrackingId, /^[A-Z]{2}-\d+-\d+$/)
  const after = await call("GET", "/cart")
  assert.deepStrictEqual(after.body.items, [], "checkout empties the cart")

  const again = await call("POST", "/cart", { productId: "66VCHSJNUP", quantity: 1 })
  assert.strictEqual(again.status, 200, again.text)
  const emptied = await call("POST", "/cart/empty")
  assert.strictEqual(emptied.status, 200, emptied.text)
  assert.deepStrictEqual((await call("GET", "/cart")).body.items, [])
}
