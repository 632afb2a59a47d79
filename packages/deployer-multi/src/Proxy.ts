/**
 * The HTTP proxy in front of a listener: the multi deployer binds one per
 * listener on its `[multi] listeners.<name>.address` and balances requests
 * round-robin across the replicas serving the listener. A replica that
 * refuses connections is skipped (requests without a body are retried on the
 * next one); with no replica left the answer is `502 Bad Gateway`. Requests
 * that arrive while the deployment starts, before any replica serves the
 * listener, wait for the first one (up to `startupWait`) instead.
 *
 * @since 0.1.0
 */
import { Address } from "@effect-weaver/runtime"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Http from "node:http"
import type * as Net from "node:net"
import { Pool } from "undici"

/**
 * The proxy could not listen on its address.
 *
 * @since 0.1.0
 * @category errors
 */
export class ProxyError extends Data.TaggedError("ProxyError")<{
  readonly listener: string
  readonly address: string
  readonly cause: unknown
}> {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    const code = (this.cause as NodeJS.ErrnoException)?.code
    const detail = code === "EADDRINUSE"
      ? "the address is already in use"
      : this.cause instanceof Error
      ? this.cause.message
      : String(this.cause)
    return `listener ${this.listener}: cannot proxy on ${this.address}: ${detail}`
  }
}

/**
 * A running proxy: the service {@link make} starts and {@link layer}
 * provides, one per listener.
 *
 * @since 0.1.0
 * @category tags
 */
export class Proxy extends Context.Tag("@effect-weaver/deployer-multi/Proxy")<Proxy, {
  readonly listener: string
  /** The bound address, `host:port`. */
  readonly address: string
  /** Replaces the replica addresses requests go to. */
  readonly setBackends: (addresses: ReadonlyArray<string>) => void
  readonly backends: () => ReadonlyArray<string>
}>() {}

/**
 * Options of {@link make}.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly listener: string
  /** `host:port`; port 0 picks a free one. */
  readonly address: string
  /** How long a request waits for the first replica (default 10 seconds). */
  readonly startupWait?: Duration.DurationInput | undefined
  /** How long a client has to send a request's headers (default 10 seconds); then it gets 408 and is closed. */
  readonly headersTimeout?: Duration.DurationInput | undefined
  /** How long a client has to send a whole request, body included (default 5 minutes). */
  readonly requestTimeout?: Duration.DurationInput | undefined
  /** The most connections open at once (default 4096); more are closed as they are accepted. */
  readonly maxConnections?: number | undefined
}

/**
 * The limits of a proxy against clients that send too much or too slowly:
 * Node's HTTP server answers headers over 16 KiB with 431 and malformed
 * requests with 400, and closes the connection; a body streams through to
 * the replica, never held whole.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaults = {
  headersTimeout: Duration.seconds(10),
  requestTimeout: Duration.minutes(5),
  maxConnections: 4096
} as const

const hopByHop = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "expect",
  "host"
])

const refused = (error: unknown): boolean => {
  const code = (error as { code?: string })?.code ?? (error as { cause?: { code?: string } })?.cause?.code
  return code === "ECONNREFUSED" || code === "ECONNRESET" || code === "UND_ERR_SOCKET" || code === "EPIPE"
}

/**
 * Starts a proxy for `listener` on `address` (`host:port`, port 0 picks one)
 * that lives as long as the scope. Until the first replica serves the
 * listener, requests wait for it for up to `startupWait` (10 seconds by
 * default).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (options: Options) => Effect.Effect<Proxy["Type"], ProxyError, Scope.Scope> = Effect.fnUntraced(
  function*(options: Options) {
    const balancer = makeBalancer(options)
    const server = Http.createServer({
      headersTimeout: Duration.toMillis(options.headersTimeout ?? defaults.headersTimeout),
      requestTimeout: Duration.toMillis(options.requestTimeout ?? defaults.requestTimeout),
      // Checked this often (Node's default is every 30 s, which lets a slow client keep its socket that long).
      connectionsCheckingInterval: 1_000
    }, (req, res) => forward(balancer, req, res, 0))
    server.keepAliveTimeout = 5_000
    server.maxConnections = options.maxConnections ?? defaults.maxConnections
    yield* listen(server, options)
    yield* Effect.addFinalizer(() => close(server, balancer))
    return {
      listener: options.listener,
      address: Address.format(server.address() as Net.AddressInfo),
      setBackends: (addresses) => setBackends(balancer, addresses),
      backends: () => balancer.backends
    }
  }
)

/**
 * The proxy of one listener as a Layer: bound when the layer is built,
 * closed when its scope closes.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<Proxy, ProxyError> => Layer.scoped(Proxy, make(options))

/** Where requests go: the replicas, a connection pool to each, and the requests held during start-up. */
interface Balancer {
  readonly listener: string
  readonly startupWait: Duration.Duration
  backends: ReadonlyArray<string>
  /** Requests held until the first replica serves the listener; undefined once one has. */
  starting: Set<() => void> | undefined
  readonly pools: Map<string, Pool>
  next: number
}

const makeBalancer = (options: Options): Balancer => ({
  listener: options.listener,
  startupWait: Duration.decode(options.startupWait ?? "10 seconds"),
  backends: [],
  starting: new Set(),
  pools: new Map(),
  next: 0
})

/** Start-up is over: forward the held requests, and hold no more. */
const endStartup = (balancer: Balancer): void => {
  const held = balancer.starting ?? []
  balancer.starting = undefined
  for (const release of held) release()
}

const setBackends = (balancer: Balancer, addresses: ReadonlyArray<string>): void => {
  balancer.backends = [...addresses]
  if (balancer.backends.length > 0) endStartup(balancer)
  for (const [backend, pool] of balancer.pools) {
    if (!addresses.includes(backend)) {
      balancer.pools.delete(backend)
      void pool.close().catch(() => undefined)
    }
  }
}

const poolOf = (balancer: Balancer, backend: string): Pool => {
  let pool = balancer.pools.get(backend)
  if (pool === undefined) {
    pool = new Pool(`http://${backend}`, { connections: 64, pipelining: 1 })
    balancer.pools.set(backend, pool)
  }
  return pool
}

const badGateway = (balancer: Balancer, res: Http.ServerResponse, detail: string): void => {
  if (res.headersSent) {
    res.destroy()
    return
  }
  res.writeHead(502, { "content-type": "text/plain; charset=utf-8" })
  res.end(`502 Bad Gateway: listener ${balancer.listener}: ${detail}\n`)
}

/** Holds a request until the first replica serves the listener, or answers 502 after `startupWait`. */
const hold = (
  balancer: Balancer,
  req: Http.IncomingMessage,
  res: Http.ServerResponse,
  waiting: Set<() => void>
): void => {
  const release = () => {
    clearTimeout(timer)
    res.off("close", drop)
    forward(balancer, req, res, 0)
  }
  const drop = () => {
    clearTimeout(timer)
    waiting.delete(release)
  }
  const timer = setTimeout(() => {
    drop()
    badGateway(balancer, res, `no replica is serving it yet (waited ${Duration.format(balancer.startupWait)})`)
  }, Duration.toMillis(balancer.startupWait))
  res.once("close", drop)
  waiting.add(release)
}

/** Sends a request to the next replica, round-robin; one that refuses is skipped if the request has no body. */
const forward = (balancer: Balancer, req: Http.IncomingMessage, res: Http.ServerResponse, tried: number): void => {
  const current = balancer.backends
  if (current.length === 0) {
    return balancer.starting !== undefined
      ? hold(balancer, req, res, balancer.starting)
      : badGateway(balancer, res, "no replica is serving it")
  }
  if (tried >= current.length) return badGateway(balancer, res, "no replica could be reached")
  const backend = current[balancer.next++ % current.length]!
  if (balancer.next >= 0x40000000) balancer.next = 0
  const headers: Record<string, string | Array<string>> = {}
  for (const [key, value] of Object.entries(req.headers)) {
    if (value !== undefined && !hopByHop.has(key)) headers[key] = value
  }
  headers["x-forwarded-for"] = req.socket.remoteAddress ?? ""
  headers["x-forwarded-host"] = req.headers.host ?? ""
  headers["x-forwarded-proto"] = "http"
  const hasBody = req.headers["content-length"] !== undefined && req.headers["content-length"] !== "0" ||
    req.headers["transfer-encoding"] !== undefined
  poolOf(balancer, backend).stream(
    {
      path: req.url ?? "/",
      method: req.method as any,
      headers,
      body: hasBody ? req : null
    },
    ({ headers: upstream, statusCode }) => {
      const out: Record<string, string | Array<string>> = {}
      for (const [key, value] of Object.entries(upstream)) {
        if (value !== undefined && !hopByHop.has(key.toLowerCase())) out[key] = value as string | Array<string>
      }
      res.writeHead(statusCode, out)
      return res
    },
    (error) => {
      if (error === null) return
      if (!res.headersSent && !hasBody && refused(error)) return forward(balancer, req, res, tried + 1)
      badGateway(balancer, res, `replica ${backend}: ${error.message}`)
    }
  )
}

/** Binds the server on the proxy's address. */
const listen = (server: Http.Server, options: Options): Effect.Effect<void, ProxyError> => {
  const { host, port } = Address.split(options.address, "0.0.0.0")
  return Effect.async<void, ProxyError>((resume) => {
    const onError = (cause: Error) =>
      resume(Effect.fail(new ProxyError({ listener: options.listener, address: options.address, cause })))
    server.once("error", onError)
    server.listen({ host, port }, () => {
      server.off("error", onError)
      resume(Effect.void)
    })
  })
}

/** Answers the held requests (502), closes the server and its connections, and drops the pools. */
const close = (server: Http.Server, balancer: Balancer): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    endStartup(balancer)
    server.close(() => resume(Effect.void))
    server.closeAllConnections()
    for (const pool of balancer.pools.values()) void pool.destroy().catch(() => undefined)
  })
