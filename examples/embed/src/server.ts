/**
 * A plain node:http server that uses a Service Weaver application through
 * `Weaver.embed`: no Effect in sight, only Promises.
 */
import { Weaver } from "@effect-weaver/core"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { app, Reverser } from "./Reverser.js"

export interface Started {
  /** The port the server listens on (useful when started on port 0). */
  readonly port: number
  /** Stops the server, then the embedded application. Safe to call twice. */
  readonly close: () => Promise<void>
}

/**
 * Starts the server on `127.0.0.1:port`. It answers `GET /reverse?s=abc`
 * with `cba`.
 */
export const start = async (port: number): Promise<Started> => {
  const weaver = await Weaver.embed(app)
  const reverser = weaver.client(Reverser)
  const server = Http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://localhost")
    if (req.method !== "GET" || url.pathname !== "/reverse") {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n")
      return
    }
    const s = url.searchParams.get("s")
    if (s === null) {
      res.writeHead(400, { "content-type": "text/plain" }).end("missing query parameter s\n")
      return
    }
    reverser.reverse(s).then(
      (reversed) => res.writeHead(200, { "content-type": "text/plain; charset=utf-8" }).end(reversed),
      (error: unknown) => res.writeHead(503, { "content-type": "text/plain" }).end(`${String(error)}\n`)
    )
  })
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject)
      server.listen(port, "127.0.0.1", () => resolve())
    })
  } catch (error) {
    await weaver.close()
    throw error
  }
  let closing: Promise<void> | undefined
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }).then(() => weaver.close())
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const started = await start(Number(process.env.PORT ?? 8080))
  process.stdout.write(`listening on http://127.0.0.1:${started.port}/reverse?s=abc\n`)
  const stop = () => void started.close().then(() => process.exit(0))
  process.once("SIGINT", stop)
  process.once("SIGTERM", stop)
}
