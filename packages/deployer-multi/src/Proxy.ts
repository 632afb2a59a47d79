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
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
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
 * A running proxy.
 *
 * @since 0.1.0
 * @category models
 */
export interface Proxy {
  readonly listener: string
  /** The bound address, `host:port`. */
  readonly address: string
  /** Replaces the replica addresses requests go to. */
  readonly setBackends: (addresses: ReadonlyArray<string>) => void
  readonly backends: () => ReadonlyArray<string>
}

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
export const make = (options: {
  readonly listener: string
  readonly address: string
  readonly startupWait?: Duration.DurationInput | undefined
}): Effect.Effect<Proxy, ProxyError, Scope.Scope> =>
  Effect.gen(function*() {
    const startupWait = Duration.decode(options.startupWait ?? "10 seconds")
    let backends: ReadonlyArray<string> = []
    // Requests held until the first replica serves the listener; undefined once one has.
    let starting: Set<() => void> | undefined = new Set()
    /** Start-up is over: forward the held requests, and hold no more. */
    const endStartup = () => {
      const held = starting ?? []
      starting = undefined
      for (const release of held) release()
    }
    const pools = new Map<string, Pool>()
    let next = 0
    const poolOf = (backend: string) => {
      let pool = pools.get(backend)
      if (pool === undefined) {
        pool = new Pool(`http://${backend}`, { connections: 64, pipelining: 1 })
        pools.set(backend, pool)
      }
      return pool
    }
    const badGateway = (res: Http.ServerResponse, detail: string): void => {
      if (res.headersSent) {
        res.destroy()
        return
      }
      res.writeHead(502, { "content-type": "text/plain; charset=utf-8" })
      res.end(`502 Bad Gateway: listener ${options.listener}: ${detail}\n`)
    }

    const hold = (req: Http.IncomingMessage, res: Http.ServerResponse, waiting: Set<() => void>) => {
      const release = () => {
        clearTimeout(timer)
        res.off("close", drop)
        forward(req, res, 0)
      }
      const drop = () => {
        clearTimeout(timer)
        waiting.delete(release)
      }
      const timer = setTimeout(() => {
        drop()
        badGateway(res, `no replica is serving it yet (waited ${Duration.format(startupWait)})`)
      }, Duration.toMillis(startupWait))
      res.once("close", drop)
      waiting.add(release)
    }

    const forward = (req: Http.IncomingMessage, res: Http.ServerResponse, tried: number): void => {
      const current = backends
      if (current.length === 0) {
        return starting !== undefined ? hold(req, res, starting) : badGateway(res, "no replica is serving it")
      }
      if (tried >= current.length) return badGateway(res, "no replica could be reached")
      const backend = current[next++ % current.length]!
      if (next >= 0x40000000) next = 0
      const headers: Record<string, string | Array<string>> = {}
      for (const [key, value] of Object.entries(req.headers)) {
        if (value !== undefined && !hopByHop.has(key)) headers[key] = value
      }
      headers["x-forwarded-for"] = req.socket.remoteAddress ?? ""
      headers["x-forwarded-host"] = req.headers.host ?? ""
      headers["x-forwarded-proto"] = "http"
      const hasBody = req.headers["content-length"] !== undefined && req.headers["content-length"] !== "0" ||
        req.headers["transfer-encoding"] !== undefined
      poolOf(backend).stream(
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
          if (!res.headersSent && !hasBody && refused(error)) return forward(req, res, tried + 1)
          badGateway(res, `replica ${backend}: ${error.message}`)
        }
      )
    }

    const server = Http.createServer((req, res) => forward(req, res, 0))
    server.keepAliveTimeout = 5_000
    const { host, port } = Address.split(options.address, "0.0.0.0")
    yield* Effect.async<void, ProxyError>((resume) => {
      const onError = (cause: Error) =>
        resume(Effect.fail(new ProxyError({ listener: options.listener, address: options.address, cause })))
      server.once("error", onError)
      server.listen({ host, port }, () => {
        server.off("error", onError)
        resume(Effect.void)
      })
    })
    yield* Effect.addFinalizer(() =>
      Effect.async<void>((resume) => {
        endStartup()
        server.close(() => resume(Effect.void))
        server.closeAllConnections()
        for (const pool of pools.values()) void pool.destroy().catch(() => undefined)
      })
    )
    const proxy: Proxy = {
      listener: options.listener,
      address: Address.format(server.address() as Net.AddressInfo),
      setBackends: (addresses) => {
        backends = [...addresses]
        if (backends.length > 0) endStartup()
        for (const [backend, pool] of pools) {
          if (!addresses.includes(backend)) {
            pools.delete(backend)
            void pool.close().catch(() => undefined)
          }
        }
      },
      backends: () => backends
    }
    return proxy
  })
