/**
 * The baseline's storefront: a `node:http` server making gRPC calls, with
 * the same JSON API, calls and answers as the effect-weaver storefront
 * (`src/Frontend.ts`). Its peers' addresses come in `BOUTIQUE_PEERS`
 * (JSON), its port in `BOUTIQUE_PORT` (0 for any free port); it announces
 * `frontend listening on <host:port>` on stdout.
 *
 * @since 0.2.0
 */
import { Either, Schema } from "effect"
import * as Crypto from "node:crypto"
import * as Http from "node:http"
import { AddToCartForm, CheckoutForm, SetCurrencyForm } from "../src/components/Model.js"
import type { Product } from "../src/domain/Catalog.js"
import type { Money } from "../src/domain/Money.js"
import * as Order from "../src/domain/Order.js"
import * as Shop from "../src/domain/Shop.js"
import * as Grpc from "./Grpc.js"
import type * as Services from "./Services.js"

const peers = JSON.parse(process.env.BOUTIQUE_PEERS ?? "{}") as Services.Peers
const client = (name: Grpc.ServiceName) => {
  const address = peers[name]
  if (address === undefined) throw new Error(`BOUTIQUE_PEERS has no address for ${name}`)
  return Grpc.client(name, address)
}
const catalog = client("productcatalog")
const currency = client("currency")
const cart = client("cart")
const recommendation = client("recommendation")
const shipping = client("shipping")
const checkout = client("checkout")
const ads = client("ad")

class HttpError extends Error {
  constructor(readonly status: number, readonly tag: string, message: string) {
    super(message)
  }
}

const statusOfTag: Record<string, number> = {
  ProductNotFound: 404,
  InvalidCreditCard: 400,
  UnacceptedCreditCard: 400,
  ExpiredCreditCard: 400,
  EmptyCart: 400,
  UnsupportedCurrency: 400
}

/** A failed gRPC call as the storefront answers it: typed errors by their tag, unreachable services 503. */
const httpError = (error: unknown): HttpError => {
  if (error instanceof HttpError) return error
  const e = error as { code?: number; details?: string }
  const tag = Grpc.tagOf(error)
  if (tag !== undefined) return new HttpError(statusOfTag[tag] ?? 500, tag, e.details ?? "")
  if (e.code === Grpc.status.UNAVAILABLE || e.code === Grpc.status.DEADLINE_EXCEEDED) {
    return new HttpError(503, "RemoteCallError", e.details ?? String(error))
  }
  return new HttpError(500, "InternalError", error instanceof Error ? error.message : String(error))
}

const cookies = (header: string | undefined): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const part of (header ?? "").split(";")) {
    const eq = part.indexOf("=")
    if (eq > 0) out[part.slice(0, eq).trim()] = decodeURIComponent(part.slice(eq + 1).trim())
  }
  return out
}

const readBody = (request: Http.IncomingMessage) =>
  new Promise<string>((resolve, reject) => {
    let body = ""
    request.setEncoding("utf8").on("data", (chunk: string) => (body += chunk)).once("end", () => resolve(body)).once(
      "error",
      reject
    )
  })

const decodeBody = async <A, I>(request: Http.IncomingMessage, schema: Schema.Schema<A, I>): Promise<A> => {
  const text = await readBody(request)
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (error) {
    throw new HttpError(400, "RequestError", `the body is not JSON: ${(error as Error).message}`)
  }
  const decoded = Schema.decodeUnknownEither(schema)(json)
  if (Either.isLeft(decoded)) throw new HttpError(400, "ParseError", decoded.left.message)
  return decoded.right
}

const currencies = async () =>
  ((await currency.getSupportedCurrencies({})).currencyCodes as Array<string>).filter((c) =>
    Shop.currencies.includes(c)
  )
const convert = (from: Money, toCode: string): Promise<Money> => currency.convert({ from, toCode })
// The demo gives the ad service 100 ms and shows no ad rather than fail the page.
const chooseAd = (keywords: ReadonlyArray<string>) =>
  Promise.race([
    ads.getAds({ contextKeys: keywords }).then(({ ads: list }) =>
      list[Math.floor(Math.random() * list.length)] ?? null
    ),
    new Promise((resolve) => setTimeout(() => resolve(null), 100).unref())
  ]).catch(() => null)
const recommendations = async (userId: string, productIds: ReadonlyArray<string>): Promise<Array<Product>> => {
  const { productIds: ids } = await recommendation.listRecommendations({ userId, productIds })
  return Promise.all(
    (ids as Array<string>).slice(0, Shop.recommendationsShown).map((id) =>
      catalog.getProduct({ id }) as Promise<Product>
    )
  )
}

interface Session {
  readonly userId: string
  readonly isNew: boolean
  readonly currency: string
}

type Route = (request: Http.IncomingMessage, s: Session, param: string) => Promise<unknown>

const home: Route = async (_request, s) => {
  const [codes, { products }, { items }] = await Promise.all([
    currencies(),
    catalog.listProducts({}),
    cart.getCart({ userId: s.userId })
  ])
  const priced = await Promise.all(
    (products as Array<Product>).map(async (product) => ({
      product,
      price: await convert(product.priceUsd, s.currency)
    }))
  )
  const ad = await chooseAd([])
  return { currency: s.currency, currencies: codes, products: priced, cartSize: items.length, ad }
}

const product: Route = async (_request, s, id) => {
  const p: Product = await catalog.getProduct({ id })
  const [codes, { items }, price, recommended] = await Promise.all([
    currencies(),
    cart.getCart({ userId: s.userId }),
    convert(p.priceUsd, s.currency),
    recommendations(s.userId, [id])
  ])
  const ad = await chooseAd(p.categories)
  return { product: p, price, currencies: codes, cartSize: items.length, recommendations: recommended, ad }
}

const addToCart: Route = async (request, s) => {
  const item = await decodeBody(request, AddToCartForm)
  const p: Product = await catalog.getProduct({ id: item.productId })
  await cart.addItem({ userId: s.userId, item: { productId: p.id, quantity: item.quantity } })
  return { added: { productId: p.id, quantity: item.quantity } }
}

const viewCart: Route = async (_request, s) => {
  const { items } = await cart.getCart({ userId: s.userId })
  const [codes, recommended, shippingCost, lines] = await Promise.all([
    currencies(),
    recommendations(s.userId, items.map((i: { productId: string }) => i.productId)),
    shipping.getQuote({ address: Shop.noAddress, items }).then(({ costUsd }) => convert(costUsd, s.currency)),
    Promise.all(items.map(async (item: { productId: string; quantity: number }) => {
      const p: Product = await catalog.getProduct({ id: item.productId })
      return { product: p, item, cost: await convert(p.priceUsd, s.currency) }
    }))
  ])
  return Shop.cartView(s.currency, codes, lines, shippingCost, recommended)
}

const emptyCart: Route = async (_request, s) => {
  await cart.emptyCart({ userId: s.userId })
  return { emptied: true }
}

const placeOrder: Route = async (request, s) => {
  const form = await decodeBody(request, CheckoutForm)
  const { order } = await checkout.placeOrder({ ...form, userId: s.userId, userCurrency: s.currency })
  const [codes, recommended] = await Promise.all([currencies(), recommendations(s.userId, [])])
  const totalPaid = Order.total(s.currency, order.shippingCost, order.items)
  return { order, totalPaid, currencies: codes, recommendations: recommended }
}

const routes: ReadonlyArray<readonly [string, RegExp, Route]> = [
  ["GET", /^\/$/, home],
  ["GET", /^\/product\/([^/]+)$/, product],
  ["POST", /^\/cart$/, addToCart],
  ["GET", /^\/cart$/, viewCart],
  ["POST", /^\/cart\/empty$/, emptyCart],
  ["POST", /^\/cart\/checkout$/, placeOrder]
]

const cookieHeader = (name: string, value: string) => `${name}=${encodeURIComponent(value)}; Max-Age=172800; Path=/`

const handle = async (request: Http.IncomingMessage, response: Http.ServerResponse) => {
  const url = new URL(request.url ?? "/", "http://localhost")
  const jar = cookies(request.headers.cookie)
  const given = (request.headers["x-session-id"] as string | undefined) ?? jar[Shop.sessionCookie]
  const userId = given !== undefined && given !== "" ? given : Crypto.randomUUID()
  const s: Session = {
    userId,
    isNew: userId !== given,
    currency: Shop.currencyOf((request.headers["x-currency"] as string | undefined) ?? jar[Shop.currencyCookie])
  }
  const setCookies = s.isNew ? [cookieHeader(Shop.sessionCookie, userId)] : []
  const send = (status: number, body: unknown) => {
    const text = JSON.stringify(body)
    response.writeHead(status, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(text),
      ...(setCookies.length > 0 ? { "set-cookie": setCookies } : {})
    })
    response.end(text)
  }
  try {
    if (request.method === "POST" && url.pathname === "/setCurrency") {
      const { currencyCode } = await decodeBody(request, SetCurrencyForm)
      if (!Shop.currencies.includes(currencyCode)) {
        throw new HttpError(
          400,
          "UnsupportedCurrency",
          `currency ${JSON.stringify(currencyCode)} is not offered; offered: ${Shop.currencies.join(", ")}`
        )
      }
      setCookies.push(cookieHeader(Shop.currencyCookie, currencyCode))
      return send(200, { currency: currencyCode })
    }
    for (const [method, pattern, route] of routes) {
      const match = request.method === method ? pattern.exec(url.pathname) : null
      if (match !== null) return send(200, await route(request, s, decodeURIComponent(match[1] ?? "")))
    }
    send(404, { error: "RouteNotFound", message: `no route for ${request.method} ${url.pathname}` })
  } catch (error) {
    const e = httpError(error)
    send(e.status, { error: e.tag, message: e.message })
  }
}

const server = Http.createServer((request, response) => void handle(request, response))
server.keepAliveTimeout = 65_000
server.listen(Number(process.env.BOUTIQUE_PORT ?? 0), "127.0.0.1", () => {
  const address = server.address() as { port: number }
  process.stdout.write(`frontend listening on 127.0.0.1:${address.port}\n`)
})
const shutdown = () => server.close(() => process.exit(0))
process.once("SIGTERM", shutdown)
process.once("SIGINT", shutdown)
