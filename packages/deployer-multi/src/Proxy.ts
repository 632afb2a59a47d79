/**
 * The proxy in front of a listener: the multi deployer binds one per
 * listener on its `[multi] listeners.<name>.address` and balances round-robin
 * across the replicas serving the listener, as the listener's kind
 * (`Listener.Kind`) asks:
 *
 * - `http` (`Weaver.serve`): request by request. A replica that refuses
 *   connections is skipped (requests without a body are retried on the next
 *   one); with no replica left the answer is `502 Bad Gateway`.
 * - `tcp` (`Weaver.listener`, any protocol): connection by connection, at
 *   layer 4. Each accepted connection is joined to a new connection to the
 *   next replica and bytes flow both ways untouched, with backpressure; a
 *   half-close is passed on, and an error or reset of either side resets the
 *   other. A replica that refuses the connection is skipped; with no replica
 *   left the connection is reset.
 *
 * Requests and connections that arrive while the deployment starts, before
 * any replica serves the listener, wait for the first one (up to
 * `startupWait`) instead. A proxy may start before it knows its listener's
 * kind (the deployer binds configured addresses before any replica runs):
 * connections then wait for the first replica to tell it, and are reset if
 * none does within `startupWait`.
 *
 * @since 0.1.0
 */
import { Address } from "@effect-weaver/runtime"
import * as Listener from "@effect-weaver/runtime/Listener"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Http from "node:http"
import * as Net from "node:net"
import { Pool } from "undici"

/**
 * The proxy could not listen on its address, or was told two kinds for its
 * listener.
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
  /** Replaces the replica addresses requests (or connections) go to. */
  readonly setBackends: (addresses: ReadonlyArray<string>) => void
  readonly backends: () => ReadonlyArray<string>
  /** The listener's kind, once known. */
  readonly kind: () => Listener.Kind | undefined
  /**
   * Sets the listener's kind, if it was not known; fails if it was another
   * (replicas that serve one listener in two ways).
   */
  readonly setKind: (kind: Listener.Kind) => Effect.Effect<void, ProxyError>
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
  /** The listener's kind, if known up front; otherwise set by the first replica ({@link Proxy}'s `setKind`). */
  readonly kind?: Listener.Kind | undefined
  /** How long a request or connection waits for the first replica (default 10 seconds). */
  readonly startupWait?: Duration.DurationInput | undefined
  /** How long an HTTP client has to send a request's headers (default 10 seconds); then it gets 408 and is closed. */
  readonly headersTimeout?: Duration.DurationInput | undefined
  /** How long an HTTP client has to send a whole request, body included (default 5 minutes). */
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
 * listener, requests and connections wait for it for up to `startupWait`
 * (10 seconds by default).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (options: Options) => Effect.Effect<Proxy["Type"], ProxyError, Scope.Scope> = Effect.fnUntraced(
  function*(options: Options) {
    const http = Http.createServer({
      headersTimeout: Duration.toMillis(options.headersTimeout ?? defaults.headersTimeout),
      requestTimeout: Duration.toMillis(options.requestTimeout ?? defaults.requestTimeout),
      // Checked this often (Node's default is every 30 s, which lets a slow client keep its socket that long).
      connectionsCheckingInterval: 1_000
    }, (req, res) => forward(balancer, req, res, 0))
    http.keepAliveTimeout = 5_000
    const balancer = makeBalancer(options, http)
    // Options of Node's HTTP server, for its connections; the rest need them too (no Nagle delay on small frames).
    const server = Net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => accept(balancer, socket))
    server.maxConnections = options.maxConnections ?? defaults.maxConnections
    yield* listen(server, options)
    // The HTTP server never listens: this server accepts for it. It tracks its connections (the headers and
    // request timeouts) from its "listening" event on.
    http.emit("listening")
    yield* Effect.addFinalizer(() => close(server, balancer))
    const address = Address.format(server.address() as Net.AddressInfo)
    return {
      listener: options.listener,
      address,
      setBackends: (addresses) => setBackends(balancer, addresses),
      backends: () => balancer.backends,
      kind: () => balancer.kind,
      setKind: (kind) =>
        Effect.suspend(() => {
          if (balancer.kind === kind) return Effect.void
          if (balancer.kind !== undefined) {
            const cause = new Error(
              `its replicas serve it in two ways: as ${Listener.describe(balancer.kind)} and as ${
                Listener.describe(kind)
              }`
            )
            return Effect.fail(new ProxyError({ listener: options.listener, address, cause }))
          }
          balancer.kind = kind
          if (balancer.backends.length > 0) endStartup(balancer)
          return Effect.void
        })
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

/**
 * Where requests and connections go: the replicas, a connection pool to each
 * (http), the requests and connections held during start-up, and every open
 * socket.
 */
interface Balancer {
  readonly listener: string
  readonly startupWait: Duration.Duration
  kind: Listener.Kind | undefined
  /** Serves the accepted connections of an `http` listener. */
  readonly http: Http.Server
  backends: ReadonlyArray<string>
  /**
   * Requests and connections held until the first replica serves the
   * listener and its kind is known; undefined once both are.
   */
  starting: Set<() => void> | undefined
  readonly pools: Map<string, Pool>
  /** Accepted connections and those to replicas (tcp), destroyed when the proxy closes. */
  readonly sockets: Set<Net.Socket>
  next: number
}

const makeBalancer = (options: Options, http: Http.Server): Balancer => ({
  listener: options.listener,
  startupWait: Duration.decode(options.startupWait ?? "10 seconds"),
  kind: options.kind,
  http,
  backends: [],
  starting: new Set(),
  pools: new Map(),
  sockets: new Set(),
  next: 0
})

/** Start-up is over: forward the held requests and connections, and hold no more. */
const endStartup = (balancer: Balancer): void => {
  const held = balancer.starting ?? []
  balancer.starting = undefined
  for (const release of held) release()
}

const setBackends = (balancer: Balancer, addresses: ReadonlyArray<string>): void => {
  balancer.backends = [...addresses]
  if (balancer.backends.length > 0 && balancer.kind !== undefined) endStartup(balancer)
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
  const backend = nextBackend(balancer, current)
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

/** The next replica, round-robin. */
const nextBackend = (balancer: Balancer, current: ReadonlyArray<string>): string => {
  const backend = current[balancer.next++ % current.length]!
  if (balancer.next >= 0x40000000) balancer.next = 0
  return backend
}

/** Keeps `socket` in the open sockets until it closes. */
const track = (balancer: Balancer, socket: Net.Socket): void => {
  balancer.sockets.add(socket)
  socket.once("close", () => balancer.sockets.delete(socket))
}

const ignore = () => undefined

/** A connection accepted: tracked, then served as its listener's kind asks. */
const accept = (balancer: Balancer, socket: Net.Socket): void => {
  track(balancer, socket)
  // Errors of a connection held or piped end it (see splice); Node's HTTP server adds its own handling.
  socket.on("error", ignore)
  dispatch(balancer, socket)
}

const dispatch = (balancer: Balancer, socket: Net.Socket): void => {
  if (socket.destroyed) return
  if (balancer.kind === "http") {
    balancer.http.emit("connection", socket)
  } else if (balancer.kind === "tcp") {
    connect(balancer, socket, 0)
  } else if (balancer.starting !== undefined) {
    holdConnection(balancer, socket, balancer.starting)
  } else {
    socket.resetAndDestroy()
  }
}

/** Holds a connection until start-up is over, or resets it after `startupWait`. */
const holdConnection = (balancer: Balancer, socket: Net.Socket, waiting: Set<() => void>): void => {
  const release = () => {
    clearTimeout(timer)
    socket.off("close", drop)
    dispatch(balancer, socket)
  }
  const drop = () => {
    clearTimeout(timer)
    waiting.delete(release)
  }
  const timer = setTimeout(() => {
    drop()
    socket.resetAndDestroy()
  }, Duration.toMillis(balancer.startupWait))
  socket.once("close", drop)
  waiting.add(release)
}

/**
 * Joins a connection of a `tcp` listener to a new connection to the next
 * replica. Nothing has been sent to a replica that could not be reached, so
 * the next one is tried, each replica at most once; the client's bytes wait
 * in its socket meanwhile. With no replica to join, the connection is reset
 * (not ended), so that the client does not take it for an empty answer.
 */
const connect = (balancer: Balancer, socket: Net.Socket, tried: number): void => {
  if (socket.destroyed) return
  const current = balancer.backends
  if (current.length === 0) {
    return balancer.starting !== undefined
      ? holdConnection(balancer, socket, balancer.starting)
      : void socket.resetAndDestroy()
  }
  if (tried >= current.length) return void socket.resetAndDestroy()
  const { host, port } = Address.split(nextBackend(balancer, current), "127.0.0.1")
  const upstream = Net.connect({ host, port, allowHalfOpen: true, noDelay: true })
  track(balancer, upstream)
  const abandon = () => upstream.destroy()
  const failed = () => {
    socket.off("close", abandon)
    upstream.destroy()
    connect(balancer, socket, tried + 1)
  }
  socket.once("close", abandon)
  upstream.once("error", failed)
  upstream.once("connect", () => {
    socket.off("close", abandon)
    upstream.off("error", failed)
    splice(socket, upstream)
  })
}

/**
 * Pipes bytes both ways with backpressure. The end of one direction (a
 * half-close) ends the same direction on the other side, and a socket closes
 * once both of its directions have ended; an error or reset of one side
 * resets the other, so that neither peer takes a cut stream for a whole one.
 */
const splice = (client: Net.Socket, upstream: Net.Socket): void => {
  client.on("error", () => upstream.resetAndDestroy())
  upstream.on("error", () => client.resetAndDestroy())
  client.pipe(upstream)
  upstream.pipe(client)
}

/** Binds the server on the proxy's address. */
const listen = (server: Net.Server, options: Options): Effect.Effect<void, ProxyError> => {
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

/**
 * Answers the held requests (502) and closes the held connections, closes the
 * server and every connection, and drops the pools.
 */
const close = (server: Net.Server, balancer: Balancer): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    endStartup(balancer)
    server.close(() => resume(Effect.void))
    // Stops its connection checks.
    balancer.http.close()
    for (const socket of balancer.sockets) socket.destroy()
    for (const pool of balancer.pools.values()) void pool.destroy().catch(() => undefined)
  })
