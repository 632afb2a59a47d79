/**
 * Mutual TLS between the processes of a deployment: a certificate
 * authority a deployer makes at deploy time, a certificate per colocation
 * group naming the group and its components, and the TLS options with which
 * a weavelet serves and calls. As Service Weaver's multi and GKE deployers
 * do: a connection is accepted only from a peer whose certificate the
 * deployment's authority signed, and the server learns from the certificate,
 * not from anything the peer writes, which group is calling.
 *
 * Certificates are made with `@peculiar/x509` over `node:crypto`'s WebCrypto
 * (Node can verify certificates but not make them), loaded only by the
 * deployer that makes them: a weavelet, which only uses them, never loads
 * it. Keys are ECDSA P-256: small, and fast to sign a handshake with.
 *
 * @since 0.1.0
 */
import type * as X509 from "@peculiar/x509"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { webcrypto } from "node:crypto"
import type * as Tls from "node:tls"

/** `@peculiar/x509`, set up: it needs a Reflect metadata polyfill loaded first, and a WebCrypto. */
const loadX509 = async (): Promise<typeof X509> => {
  await import("reflect-metadata")
  const x509 = await import("@peculiar/x509")
  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0])
  return x509
}

const algorithm = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const
const groupPrefix = "weaver:group:"
const componentPrefix = "weaver:component:"

/**
 * What a process needs to take part in a deployment's mutual TLS: the
 * authority's certificate, which it trusts, and its own certificate and
 * private key (PEM). Handed to a weavelet over its control socket, never
 * through a file or the environment.
 *
 * @since 0.1.0
 * @category models
 */
export const Credentials = Schema.Struct({
  authority: Schema.String,
  certificate: Schema.String,
  key: Schema.Redacted(Schema.String)
})

/**
 * @since 0.1.0
 * @category models
 */
export type Credentials = typeof Credentials.Type

/**
 * Who a certificate names: a colocation group and the components it hosts.
 *
 * @since 0.1.0
 * @category models
 */
export interface Identity {
  readonly group: string
  readonly components: ReadonlyArray<string>
}

/**
 * A certificate could not be made.
 *
 * @since 0.1.0
 * @category errors
 */
export class CertificateError extends Data.TaggedError("CertificateError")<{
  readonly reason: string
  readonly cause?: unknown
}> {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return this.reason
  }
}

/**
 * A deployment's certificate authority. Its private key stays in the
 * memory of the deployer that made it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Authority {
  /** The authority's certificate (PEM), which every process of the deployment trusts. */
  readonly certificate: string
  /** Issues the certificate of a colocation group. */
  readonly issue: (identity: Identity) => Effect.Effect<Credentials, CertificateError>
}

const attempt = <A>(what: string, f: () => Promise<A>): Effect.Effect<A, CertificateError> =>
  Effect.tryPromise({ try: f, catch: (cause) => new CertificateError({ reason: `${what}: ${String(cause)}`, cause }) })

const serial = () =>
  webcrypto.getRandomValues(new Uint8Array(16)).reduce((s, b) => s + b.toString(16).padStart(2, "0"), "")
    // A positive serial: the top bit clear.
    .replace(/^./, (c) => (parseInt(c, 16) & 7).toString(16))

/** Certificates are valid from a minute ago (clock skew between hosts) for a year. */
const validity = () => {
  const now = Date.now()
  return { notBefore: new Date(now - 60_000), notAfter: new Date(now + 365 * 24 * 3600_000) }
}

/**
 * Makes a new certificate authority for the deployment named `name` (shown
 * in its certificate's subject).
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeAuthority = (name: string): Effect.Effect<Authority, CertificateError> =>
  Effect.gen(function*() {
    const X509 = yield* attempt("loading @peculiar/x509", loadX509)
    const keys = yield* attempt("generating the authority's key", () =>
      webcrypto.subtle.generateKey(algorithm, false, ["sign", "verify"]) as Promise<webcrypto.CryptoKeyPair>)
    const authority = yield* attempt("making the authority's certificate", () =>
      X509.X509CertificateGenerator.createSelfSigned({
        serialNumber: serial(),
        name: [{ CN: [`effect-weaver authority for ${name}`] }],
        ...validity(),
        keys,
        signingAlgorithm: algorithm,
        extensions: [
          new X509.BasicConstraintsExtension(true, 0, true),
          new X509.KeyUsagesExtension(X509.KeyUsageFlags.keyCertSign | X509.KeyUsageFlags.cRLSign, true)
        ]
      }))
    const certificate = authority.toString("pem")
    const issue = (identity: Identity) =>
      Effect.gen(function*() {
        const leafKeys = yield* attempt(`generating the key of group ${identity.group}`, () =>
          webcrypto.subtle.generateKey(algorithm, true, ["sign", "verify"]) as Promise<webcrypto.CryptoKeyPair>)
        const leaf = yield* attempt(`making the certificate of group ${identity.group}`, () =>
          X509.X509CertificateGenerator.create({
            serialNumber: serial(),
            subject: [{ CN: [identity.group] }],
            issuer: authority.subject,
            ...validity(),
            publicKey: leafKeys.publicKey,
            signingKey: keys.privateKey,
            signingAlgorithm: algorithm,
            extensions: [
              new X509.BasicConstraintsExtension(false, undefined, true),
              new X509.KeyUsagesExtension(X509.KeyUsageFlags.digitalSignature, true),
              new X509.ExtendedKeyUsageExtension([X509.ExtendedKeyUsage.serverAuth, X509.ExtendedKeyUsage.clientAuth]),
              new X509.SubjectAlternativeNameExtension([
                { type: "url", value: groupPrefix + identity.group },
                ...identity.components.map((component) => ({
                  type: "url" as const,
                  value: componentPrefix + component
                }))
              ])
            ]
          }))
        const pkcs8 = yield* attempt(`exporting the key of group ${identity.group}`, () =>
          webcrypto.subtle.exportKey("pkcs8", leafKeys.privateKey))
        return Credentials.make({
          authority: certificate,
          certificate: leaf.toString("pem"),
          key: Redacted.make(X509.PemConverter.encode(pkcs8, "PRIVATE KEY"))
        })
      })
    return { certificate, issue }
  })

/**
 * The identity a peer's certificate names, from its subject alternative
 * names (as `node:tls` reports them); `undefined` if it names no group.
 *
 * @since 0.1.0
 * @category getters
 */
export const identityOf = (certificate: Pick<Tls.PeerCertificate, "subjectaltname">): Identity | undefined => {
  let group: string | undefined
  const components: Array<string> = []
  for (const entry of (certificate.subjectaltname ?? "").split(", ")) {
    if (!entry.startsWith("URI:")) continue
    const uri = entry.slice(4)
    if (uri.startsWith(groupPrefix)) group = uri.slice(groupPrefix.length)
    else if (uri.startsWith(componentPrefix)) components.push(uri.slice(componentPrefix.length))
  }
  return group === undefined ? undefined : { group, components }
}

/**
 * The options of a TLS server that accepts only peers with a certificate of
 * the deployment's authority.
 *
 * @since 0.1.0
 * @category tls
 */
export const serverOptions = (credentials: Credentials): Tls.TlsOptions => ({
  ca: credentials.authority,
  cert: credentials.certificate,
  key: pemKey(credentials),
  requestCert: true,
  rejectUnauthorized: true,
  minVersion: "TLSv1.3"
})

/**
 * The options of a TLS client dialing a replica of `component`: it presents
 * its own certificate and accepts only a server whose certificate the
 * deployment's authority signed and that names `component` as one it hosts.
 *
 * @since 0.1.0
 * @category tls
 */
export const clientOptions = (credentials: Credentials, component: string): Tls.ConnectionOptions => ({
  ca: credentials.authority,
  cert: credentials.certificate,
  key: pemKey(credentials),
  rejectUnauthorized: true,
  minVersion: "TLSv1.3",
  // Certificates name groups and components, not hosts: the server must be one that hosts the component.
  checkServerIdentity: (_host, certificate) => {
    const identity = identityOf(certificate)
    if (identity === undefined || !identity.components.includes(component)) {
      return new Error(
        `the server's certificate does not name component ${component} (it names ${
          identity === undefined ? "no group" : `group ${identity.group}: ${identity.components.join(", ") || "none"}`
        })`
      )
    }
    return undefined
  }
})

const pemKey = (credentials: Credentials): string => Redacted.value(credentials.key)
