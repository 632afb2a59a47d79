/**
 * The baseline's gRPC plumbing, as a TypeScript team writes it with
 * `@grpc/grpc-js` and `@grpc/proto-loader`: the services of
 * `boutique.proto`, clients whose unary calls return Promises, and the
 * mapping of the boutique's typed errors to gRPC statuses and back.
 *
 * @since 0.2.0
 */
import * as Grpc from "@grpc/grpc-js"
import * as ProtoLoader from "@grpc/proto-loader"
import * as Fs from "node:fs"
import { fileURLToPath } from "node:url"

// From source (baseline/) the proto is a sibling; built (dist/baseline/) it is two levels up.
const protoFile = [
  new URL("./boutique.proto", import.meta.url),
  new URL("../../baseline/boutique.proto", import.meta.url)
]
  .map((url) => fileURLToPath(url))
  .find((file) => Fs.existsSync(file))

if (protoFile === undefined) throw new Error(`boutique.proto not found next to ${fileURLToPath(import.meta.url)}`)

const definition = ProtoLoader.loadSync(protoFile, {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  arrays: true
})
const proto = (Grpc.loadPackageDefinition(definition) as any).boutique

/**
 * The services of the boutique, by the name the launcher and the peers use.
 *
 * @since 0.2.0
 * @category services
 */
export const services = {
  cart: "CartService",
  recommendation: "RecommendationService",
  productcatalog: "ProductCatalogService",
  shipping: "ShippingService",
  currency: "CurrencyService",
  payment: "PaymentService",
  email: "EmailService",
  checkout: "CheckoutService",
  ad: "AdService"
} as const

/**
 * A service's short name.
 *
 * @since 0.2.0
 * @category services
 */
export type ServiceName = keyof typeof services

/**
 * The service definition of a service, for `Server.addService`.
 *
 * @since 0.2.0
 * @category services
 */
export const serviceDefinition = (name: ServiceName): Grpc.ServiceDefinition => proto[services[name]].service

/**
 * A client of a service whose unary methods (lower camel case, as
 * proto-loader names them) return Promises.
 *
 * @since 0.2.0
 * @category clients
 */
export type Client = { readonly [method: string]: (request: any) => Promise<any> }

/**
 * A client of service `name` at `address` (`host:port`), over plaintext HTTP/2.
 *
 * @since 0.2.0
 * @category clients
 */
export const client = (name: ServiceName, address: string): Client => {
  const stub = new proto[services[name]](address, Grpc.credentials.createInsecure())
  const methods: Record<string, (request: any) => Promise<any>> = {}
  for (const method of Object.keys(proto[services[name]].service)) {
    const call = stub[method[0]!.toLowerCase() + method.slice(1)].bind(stub)
    methods[method[0]!.toLowerCase() + method.slice(1)] = (request) =>
      new Promise((resolve, reject) =>
        call(request, (error: Grpc.ServiceError | null, response: unknown) => error ? reject(error) : resolve(response))
      )
  }
  return methods
}

const tagKey = "boutique-error"

/**
 * A typed error of the boutique as a gRPC status: the code, the message as
 * details and the tag (e.g. `InvalidCreditCard`) in the trailers.
 *
 * @since 0.2.0
 * @category errors
 */
export const typedError = (code: Grpc.status, tag: string, message: string): Partial<Grpc.StatusObject> => {
  const metadata = new Grpc.Metadata()
  metadata.set(tagKey, tag)
  return { code, details: message, metadata }
}

/**
 * The tag of a typed error a call failed with, if it was one.
 *
 * @since 0.2.0
 * @category errors
 */
export const tagOf = (error: unknown): string | undefined => {
  const value = (error as Partial<Grpc.ServiceError>)?.metadata?.get(tagKey)[0]
  return typeof value === "string" ? value : undefined
}

/**
 * Passes a typed error received from a call on to this call's caller;
 * anything else becomes `INTERNAL` naming `what` failed.
 *
 * @since 0.2.0
 * @category errors
 */
export const passOn = (error: unknown, what: string): Partial<Grpc.StatusObject> => {
  const e = error as Partial<Grpc.ServiceError>
  const tag = tagOf(error)
  return tag !== undefined
    ? typedError(e.code ?? Grpc.status.INTERNAL, tag, e.details ?? "")
    : { code: Grpc.status.INTERNAL, details: `${what}: ${e.details ?? String(error)}` }
}

/**
 * A unary handler from an async function: its result is the response, a
 * thrown status object the error.
 *
 * @since 0.2.0
 * @category servers
 */
export const unary = <Req, Res>(
  handler: (request: Req) => Promise<Res> | Res
): Grpc.handleUnaryCall<Req, Res> =>
(call, callback) => {
  Promise.resolve().then(() => handler(call.request)).then(
    (response) => callback(null, response),
    (error: Partial<Grpc.StatusObject> | Error) =>
      callback(
        error instanceof Error ? { code: Grpc.status.INTERNAL, details: error.message } : error as Grpc.ServiceError,
        null
      )
  )
}

/**
 * Serves `implementation` for service `name` on `127.0.0.1:port` (0 for any
 * free port); resolves to the port bound.
 *
 * @since 0.2.0
 * @category servers
 */
export const serve = (name: ServiceName, implementation: Grpc.UntypedServiceImplementation, port = 0) =>
  new Promise<{ readonly server: Grpc.Server; readonly port: number }>((resolve, reject) => {
    const server = new Grpc.Server()
    server.addService(serviceDefinition(name), implementation)
    server.bindAsync(
      `127.0.0.1:${port}`,
      Grpc.ServerCredentials.createInsecure(),
      (error, bound) => error ? reject(error) : resolve({ server, port: bound })
    )
  })

export { status } from "@grpc/grpc-js"
