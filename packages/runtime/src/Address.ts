/**
 * `host:port` addresses, as weaver.toml, the registry and the wire protocol
 * write them: IPv6 hosts in brackets (`[::1]:80`), an optional `tcp://`
 * prefix (Service Weaver's form of a replica address).
 *
 * @since 0.1.0
 */

/**
 * Splits an address into the host (brackets removed) and the port; an empty
 * host (`:8080`) becomes `emptyHost`.
 *
 * @since 0.1.0
 * @category parsing
 */
export const split = (address: string, emptyHost: string): { readonly host: string; readonly port: number } => {
  const colon = address.lastIndexOf(":")
  const host = address.slice(address.startsWith("tcp://") ? 6 : 0, colon).replace(/^\[(.*)\]$/, "$1")
  return { host: host === "" ? emptyHost : host, port: Number(address.slice(colon + 1)) }
}

/**
 * Formats a bound socket's address as `host:port`, bracketing IPv6 hosts.
 *
 * @since 0.1.0
 * @category formatting
 */
export const format = (info: { readonly address: string; readonly port: number }): string =>
  info.address.includes(":") ? `[${info.address}]:${info.port}` : `${info.address}:${info.port}`
