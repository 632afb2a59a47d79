/**
 * The nine services of the baseline, each a gRPC service over the same
 * business modules the effect-weaver components use (`src/domain`), calling
 * its peers with gRPC clients.
 *
 * @since 0.2.0
 */
import type * as GrpcJs from "@grpc/grpc-js"
import * as Crypto from "node:crypto"
import * as Ads from "../src/domain/Ads.js"
import { type CartItem, CartStore } from "../src/domain/Cart.js"
import * as Catalog from "../src/domain/Catalog.js"
import * as Conversion from "../src/domain/Currency.js"
import * as MoneyOps from "../src/domain/Money.js"
import * as Order from "../src/domain/Order.js"
import * as Pay from "../src/domain/Payment.js"
import * as Recommend from "../src/domain/Recommendation.js"
import * as Ship from "../src/domain/Shipping.js"
import * as Grpc from "./Grpc.js"

/**
 * The addresses of a service's peers, by service name.
 *
 * @since 0.2.0
 * @category models
 */
export type Peers = Partial<Record<Grpc.ServiceName, string>>

/**
 * The services each service calls.
 *
 * @since 0.2.0
 * @category models
 */
export const dependencies: Record<Grpc.ServiceName, ReadonlyArray<Grpc.ServiceName>> = {
  cart: [],
  productcatalog: [],
  currency: [],
  shipping: [],
  payment: [],
  email: [],
  ad: [],
  recommendation: ["productcatalog"],
  checkout: ["cart", "productcatalog", "currency", "shipping", "payment", "email"]
}

const peer = (peers: Peers, name: Grpc.ServiceName) => {
  const address = peers[name]
  if (address === undefined) throw new Error(`no address given for peer service ${name}`)
  return Grpc.client(name, address)
}

const confirmationsKept = 1_000

/**
 * The gRPC implementation of service `name`.
 *
 * @since 0.2.0
 * @category services
 */
export const implementation = (name: Grpc.ServiceName, peers: Peers): GrpcJs.UntypedServiceImplementation => {
  switch (name) {
    case "productcatalog":
      return {
        listProducts: Grpc.unary(() => ({ products: Catalog.all })),
        getProduct: Grpc.unary(({ id }: { id: string }) => {
          const product = Catalog.get(id)
          if (product === undefined) {
            throw Grpc.typedError(Grpc.status.NOT_FOUND, "ProductNotFound", `no product with id ${JSON.stringify(id)}`)
          }
          return product
        }),
        searchProducts: Grpc.unary(({ query }: { query: string }) => ({ results: Catalog.search(query) }))
      }
    case "currency":
      return {
        getSupportedCurrencies: Grpc.unary(() => ({ currencyCodes: Conversion.supportedCurrencies })),
        convert: Grpc.unary(({ from, toCode }: { from: MoneyOps.Money; toCode: string }) => {
          const result = Conversion.convert(from, toCode)
          if (!Conversion.isProblem(result)) return result
          throw Grpc.typedError(
            Grpc.status.INVALID_ARGUMENT,
            "UnsupportedCurrency",
            result._tag === "UnsupportedCurrency"
              ? `unsupported currency code ${JSON.stringify(result.currencyCode)}`
              : `cannot convert ${MoneyOps.format(result.amount)}: only non-negative amounts are converted`
          )
        })
      }
    case "cart": {
      const store = new CartStore()
      return {
        addItem: Grpc.unary(({ item, userId }: { userId: string; item: CartItem }) => (store.add(userId, item), {})),
        getCart: Grpc.unary(({ userId }: { userId: string }) => ({ userId, items: store.get(userId) })),
        emptyCart: Grpc.unary(({ userId }: { userId: string }) => (store.empty(userId), {}))
      }
    }
    case "recommendation": {
      const catalog = peer(peers, "productcatalog")
      return {
        listRecommendations: Grpc.unary(async ({ productIds }: { productIds: Array<string> }) => {
          const { products } = await catalog.listProducts({})
          return { productIds: Recommend.recommend(products.map((p: Catalog.Product) => p.id), productIds) }
        })
      }
    }
    case "shipping":
      return {
        getQuote: Grpc.unary(({ items }: { items: Array<CartItem> }) => ({
          costUsd: Ship.quote(items.reduce((n, item) => n + item.quantity, 0))
        })),
        shipOrder: Grpc.unary(({ address }: { address: Ship.Address }) => ({ trackingId: Ship.trackingId(address) }))
      }
    case "payment":
      return {
        charge: Grpc.unary(({ amount, creditCard }: { amount: MoneyOps.Money; creditCard: Pay.CreditCard }) => {
          const result = Pay.charge(amount, creditCard)
          if ("transactionId" in result) return result
          throw Grpc.typedError(Grpc.status.INVALID_ARGUMENT, result._tag, Pay.describe(result))
        })
      }
    case "email": {
      const outbox: Array<{ readonly email: string; readonly text: string }> = []
      return {
        sendOrderConfirmation: Grpc.unary(({ email, order }: { email: string; order: Order.OrderResult }) => {
          outbox.push({ email, text: Order.confirmation(email, order) })
          if (outbox.length > confirmationsKept) outbox.shift()
          return {}
        }),
        sent: Grpc.unary(({ email }: { email: string }) => ({
          confirmations: outbox.filter((m) => m.email === email).map((m) => m.text)
        }))
      }
    }
    case "ad":
      return {
        getAds: Grpc.unary(({ contextKeys }: { contextKeys: Array<string> }) => ({ ads: Ads.forKeywords(contextKeys) }))
      }
    case "checkout": {
      const cart = peer(peers, "cart")
      const catalog = peer(peers, "productcatalog")
      const currency = peer(peers, "currency")
      const shipping = peer(peers, "shipping")
      const payment = peer(peers, "payment")
      const email = peer(peers, "email")
      const step = async <A>(what: string, call: Promise<A>): Promise<A> => {
        try {
          return await call
        } catch (error) {
          throw Grpc.passOn(error, what)
        }
      }
      return {
        placeOrder: Grpc.unary(async (request: {
          userId: string
          userCurrency: string
          address: Ship.Address
          email: string
          creditCard: Pay.CreditCard
        }) => {
          const { items } = await step("get cart", cart.getCart({ userId: request.userId }))
          if (items.length === 0) {
            throw Grpc.typedError(
              Grpc.status.FAILED_PRECONDITION,
              "EmptyCart",
              "the cart is empty: add a product before checking out"
            )
          }
          const [orderItems, shippingCost] = await Promise.all([
            Promise.all(items.map(async (item: CartItem) => {
              const product = await step("get product", catalog.getProduct({ id: item.productId }))
              const cost = await step(
                "convert",
                currency.convert({ from: product.priceUsd, toCode: request.userCurrency })
              )
              return { item, cost }
            })),
            step("quote shipping", shipping.getQuote({ address: request.address, items })).then(({ costUsd }) =>
              step("convert", currency.convert({ from: costUsd, toCode: request.userCurrency }))
            )
          ])
          const amount = Order.total(request.userCurrency, shippingCost, orderItems)
          await step("charge", payment.charge({ amount, creditCard: request.creditCard }))
          const { trackingId } = await step("ship", shipping.shipOrder({ address: request.address, items }))
          await step("empty cart", cart.emptyCart({ userId: request.userId }))
          const order = {
            orderId: Crypto.randomUUID(),
            shippingTrackingId: trackingId,
            shippingCost,
            shippingAddress: request.address,
            items: orderItems
          }
          // As in the original, a confirmation that cannot be sent does not fail the order.
          await email.sendOrderConfirmation({ email: request.email, order }).catch((error) =>
            process.stderr.write(`order confirmation to ${request.email} not sent: ${error}\n`)
          )
          return { order }
        })
      }
    }
  }
}
