/**
 * The Online Boutique as one effect-weaver application: the storefront
 * (main) and its nine components.
 *
 * @since 0.2.0
 */
import { Weaver } from "@effect-weaver/core"
import { AdImpl } from "./components/Ad.js"
import { CartImpl } from "./components/Cart.js"
import { CheckoutImpl } from "./components/Checkout.js"
import { CurrencyImpl } from "./components/Currency.js"
import { EmailImpl } from "./components/Email.js"
import { PaymentImpl } from "./components/Payment.js"
import { ProductCatalogImpl } from "./components/ProductCatalog.js"
import { RecommendationImpl } from "./components/Recommendation.js"
import { ShippingImpl } from "./components/Shipping.js"
import { Main } from "./Frontend.js"

/**
 * @since 0.2.0
 * @category app
 */
export const app = Weaver.app({
  main: Main,
  components: [
    AdImpl,
    CartImpl,
    CheckoutImpl,
    CurrencyImpl,
    EmailImpl,
    PaymentImpl,
    ProductCatalogImpl,
    RecommendationImpl,
    ShippingImpl
  ]
})
