import { describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import type * as Net from "node:net"
import * as Tls from "node:tls"
import * as Certificates from "../src/Certificates.js"

/** Serves one TLS connection per client with `options`; answers each with the client's identity, or closes. */
const serve = (options: Tls.TlsOptions) =>
  Effect.acquireRelease(
    Effect.async<{ server: Tls.Server; port: number; accepted: () => number }>((resume) => {
      let accepted = 0
      const server = Tls.createServer(options, (socket) => {
        accepted++
        const identity = Certificates.identityOf(socket.getPeerCertificate())
        socket.end(JSON.stringify(identity ?? null))
      })
      server.on("tlsClientError", () => {})
      server.listen(0, "127.0.0.1", () =>
        resume(Effect.succeed({
          server,
          port: (server.address() as Net.AddressInfo).port,
          accepted: () => accepted
        })))
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.close(() => resume(Effect.void))
      })
  )

const connect = (port: number, options: Tls.ConnectionOptions) =>
  Effect.async<string, Error>((resume) => {
    const socket = Tls.connect({ ...options, host: "127.0.0.1", port }, () => {})
    let data = ""
    socket.setEncoding("utf8")
    socket.on("data", (chunk: string) => (data += chunk))
    socket.on("end", () => resume(Effect.succeed(data)))
    socket.on("error", (error) => resume(Effect.fail(error)))
  })

describe("Certificates", () => {
  it.scoped("a group's certificate names it and its components; the server reads them from the handshake", () =>
    Effect.gen(function*() {
      const authority = yield* Certificates.makeAuthority("hello")
      const server = yield* authority.issue({ group: "hello/Reverser", components: ["hello/Reverser"] })
      const client = yield* authority.issue({ group: "main", components: ["main"] })
      expect(Redacted.value(server.key)).toContain("BEGIN PRIVATE KEY")
      expect(String(server.key)).not.toContain("PRIVATE KEY")
      const { port } = yield* serve(Certificates.serverOptions(server))
      const answer = yield* connect(port, Certificates.clientOptions(client, "hello/Reverser"))
      expect(JSON.parse(answer)).toEqual({ group: "main", components: ["main"] })
    }))

  it.scoped("a client without a certificate, or with another authority's, is refused", () =>
    Effect.gen(function*() {
      const authority = yield* Certificates.makeAuthority("hello")
      const stranger = yield* Certificates.makeAuthority("hello")
      const server = yield* authority.issue({ group: "g", components: ["app/A"] })
      const forged = yield* stranger.issue({ group: "main", components: ["main"] })
      const { accepted, port } = yield* serve(Certificates.serverOptions(server))
      const bare = yield* Effect.either(
        connect(port, { ca: server.authority, servername: "", checkServerIdentity: () => undefined })
      )
      expect(bare._tag === "Left" || bare.right === "").toBe(true)
      const other = yield* Effect.either(
        connect(port, { ...Certificates.clientOptions(forged, "app/A"), ca: server.authority })
      )
      expect(other._tag === "Left" || other.right === "").toBe(true)
      // Neither reached the server's connection handler.
      expect(accepted()).toBe(0)
    }))

  it.scoped("a client refuses a server whose certificate does not name the component it calls", () =>
    Effect.gen(function*() {
      const authority = yield* Certificates.makeAuthority("hello")
      const server = yield* authority.issue({ group: "g", components: ["app/A"] })
      const client = yield* authority.issue({ group: "main", components: ["main"] })
      const { port } = yield* serve(Certificates.serverOptions(server))
      const error = yield* Effect.flip(connect(port, Certificates.clientOptions(client, "app/B")))
      expect(error.message).toContain("does not name component app/B")
    }))
})
