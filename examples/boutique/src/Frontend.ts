/**
 * The storefront: the main component, serving the demo's pages as a JSON
 * API on the `boutique` listener. Each route makes the calls the demo's
 * frontend makes, in the same order.
 *
 * @since 0.2.0
 */
import { Weaver } from "@effect-weaver/core"
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect } from "effect"
import * as Crypto from "node:crypto"
import { Ad } from "./components/Ad.js"
import { Cart } from "./components/Cart.js"
import { Checkout } from "./components/Checkout.js"
import { Currency } from "./components/Currency.js"
import { AddToCartForm, CheckoutForm, SetCurrencyForm } from "./components/Model.js"
import { ProductCatalog } from "./components/ProductCatalog.js"
import { Recommendation } from "./components/Recommendation.js"
import { Shipping } from "./components/Shipping.js"
import * as Order from "./domain/Order.js"
import * as Shop from "./domain/Shop.js"

/** The session and currency of a request, and the cookie to set for a new session. */
const session = Effect.map(HttpServerRequest.HttpServerRequest, (request) => {
  const given = request.headers["x-session-id"] ?? request.cookies[Shop.sessionCookie]
  const userId = given !== undefined && given !== "" ? given : Crypto.randomUUID()
  return {
    userId,
    isNew: userId !== given,
    currency: Shop.currencyOf(request.headers["x-currency"] ?? request.cookies[Shop.currencyCookie])
  }
})

const json = (body: unknown, created: { readonly userId: string; readonly isNew: boolean }, status = 200) => {
  const response = HttpServerResponse.unsafeJson(body, { status })
  return created.isNew
    ? HttpServerResponse.unsafeSetCookie(response, Shop.sessionCookie, created.userId, { path: "/", maxAge: "2 days" })
    : response
}

/** The JSON error of a failed request: 400 for bad input, 404 for an unknown product, 503 if a component is unreachable. */
const failure = (error: { readonly _tag: string; readonly message: string }) => {
  const status = error._tag === "ProductNotFound"
    ? 404
    : error._tag === "RemoteCallError"
    ? 503
    : [
        "ParseError",
        "RequestError",
        "InvalidCreditCard",
        "UnacceptedCreditCard",
        "ExpiredCreditCard",
        "EmptyCart",
        "UnsupportedCurrency"
      ]
        .includes(error._tag)
    ? 400
    : 500
  return Effect.succeed(HttpServerResponse.unsafeJson({ error: error._tag, message: error.message }, { status }))
}

/**
 * Serves the storefront on the `boutique` listener.
 *
 * @since 0.2.0
 * @category main
 */
export const Main = Weaver.main(
  Effect.gen(function*() {
    const catalog = yield* ProductCatalog
    const currency = yield* Currency
    const cart = yield* Cart
    const recommendation = yield* Recommendation
    const shipping = yield* Shipping
    const checkout = yield* Checkout
    const ads = yield* Ad

    const currencies = Effect.map(
      currency.supportedCurrencies(),
      (codes) => codes.filter((c) => Shop.currencies.includes(c))
    )
    const convert = (from: Parameters<typeof currency.convert>[0]["from"], toCode: string) =>
      currency.convert({ from, toCode })
    // The demo gives the ad service 100 ms and shows no ad rather than fail the page.
    const chooseAd = (keywords: ReadonlyArray<string>) =>
      ads.getAds(keywords).pipe(
        Effect.timeout("100 millis"),
        Effect.map((list) => list[Math.floor(Math.random() * list.length)] ?? null),
        Effect.orElseSucceed(() => null)
      )
    const recommendations = (userId: string, productIds: ReadonlyArray<string>) =>
      recommendation.listRecommendations({ userId, productIds }).pipe(
        Effect.flatMap((ids) =>
          Effect.forEach(ids.slice(0, Shop.recommendationsShown), (id) => catalog.getProduct(id), {
            concurrency: "unbounded"
          })
        )
      )

    const home = Effect.gen(function*() {
      const s = yield* session
      const [codes, products, items] = yield* Effect.all([currencies, catalog.listProducts(), cart.getCart(s.userId)], {
        concurrency: "unbounded"
      })
      const priced = yield* Effect.forEach(
        products,
        (product) => Effect.map(convert(product.priceUsd, s.currency), (price) => ({ product, price })),
        { concurrency: "unbounded" }
      )
      const ad = yield* chooseAd([])
      return json({ currency: s.currency, currencies: codes, products: priced, cartSize: items.length, ad }, s)
    })

    const product = Effect.gen(function*() {
      const s = yield* session
      const id = (yield* HttpRouter.params).id ?? ""
      const p = yield* catalog.getProduct(id)
      const [codes, items, price, recommended] = yield* Effect.all([
        currencies,
        cart.getCart(s.userId),
        convert(p.priceUsd, s.currency),
        recommendations(s.userId, [id])
      ], { concurrency: "unbounded" })
      const ad = yield* chooseAd(p.categories)
      return json({ product: p, price, currencies: codes, cartSize: items.length, recommendations: recommended, ad }, s)
    })

    const addToCart = Effect.gen(function*() {
      const s = yield* session
      const item = yield* HttpServerRequest.schemaBodyJson(AddToCartForm)
      const p = yield* catalog.getProduct(item.productId)
      yield* cart.addItem({ userId: s.userId, item: { productId: p.id, quantity: item.quantity } })
      return json({ added: { productId: p.id, quantity: item.quantity } }, s)
    })

    const viewCart = Effect.gen(function*() {
      const s = yield* session
      const items = yield* cart.getCart(s.userId)
      const [codes, recommended, shippingCost, lines] = yield* Effect.all([
        currencies,
        recommendations(s.userId, items.map((i) => i.productId)),
        Effect.flatMap(shipping.getQuote({ address: Shop.noAddress, items }), (usd) => convert(usd, s.currency)),
        Effect.forEach(items, (item) =>
          Effect.flatMap(
            catalog.getProduct(item.productId),
            (p) => Effect.map(convert(p.priceUsd, s.currency), (cost) => ({ product: p, item, cost }))
          ), { concurrency: "unbounded" })
      ], { concurrency: "unbounded" })
      return json(Shop.cartView(s.currency, codes, lines, shippingCost, recommended), s)
    })

    const emptyCart = Effect.gen(function*() {
      const s = yield* session
      yield* cart.emptyCart(s.userId)
      return json({ emptied: true }, s)
    })

    const placeOrder = Effect.gen(function*() {
      const s = yield* session
      const form = yield* HttpServerRequest.schemaBodyJson(CheckoutForm)
      const order = yield* checkout.placeOrder({ ...form, userId: s.userId, userCurrency: s.currency })
      const [codes, recommended] = yield* Effect.all([currencies, recommendations(s.userId, [])], {
        concurrency: "unbounded"
      })
      const totalPaid = Order.total(s.currency, order.shippingCost, order.items)
      return json({ order, totalPaid, currencies: codes, recommendations: recommended }, s)
    })

    const setCurrency = Effect.gen(function*() {
      const s = yield* session
      const { currencyCode } = yield* HttpServerRequest.schemaBodyJson(SetCurrencyForm)
      if (!Shop.currencies.includes(currencyCode)) {
        return yield* failure({
          _tag: "UnsupportedCurrency",
          message: `currency ${JSON.stringify(currencyCode)} is not offered; offered: ${Shop.currencies.join(", ")}`
        })
      }
      return HttpServerResponse.unsafeSetCookie(
        json({ currency: currencyCode }, s),
        Shop.currencyCookie,
        currencyCode,
        { path: "/", maxAge: "2 days" }
      )
    })

    const router = HttpRouter.empty.pipe(
      HttpRouter.get("/", home.pipe(Effect.catchAll(failure))),
      HttpRouter.get("/product/:id", product.pipe(Effect.catchAll(failure))),
      HttpRouter.post("/cart", addToCart.pipe(Effect.catchAll(failure))),
      HttpRouter.get("/cart", viewCart.pipe(Effect.catchAll(failure))),
      HttpRouter.post("/cart/empty", emptyCart.pipe(Effect.catchAll(failure))),
      HttpRouter.post("/cart/checkout", placeOrder.pipe(Effect.catchAll(failure))),
      HttpRouter.post("/setCurrency", setCurrency.pipe(Effect.catchAll(failure)))
    )
    yield* Weaver.serve("boutique", router)
  }),
  { listeners: ["boutique"] }
)
