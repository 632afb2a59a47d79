/**
 * One service of the baseline as a process: `node server.js <service>`,
 * its peers' addresses in `BOUTIQUE_PEERS` (JSON), bound on a free port of
 * 127.0.0.1, announced on stdout as `<service> listening on <host:port>`.
 *
 * @since 0.2.0
 */
import * as Grpc from "./Grpc.js"
import * as Services from "./Services.js"

const name = process.argv[2]
if (name === undefined || !(name in Grpc.services)) {
  process.stderr.write(`usage: server.js <service>, one of ${Object.keys(Grpc.services).join(", ")}; got ${name}\n`)
  process.exit(2)
}
const service = name as Grpc.ServiceName
const peers = JSON.parse(process.env.BOUTIQUE_PEERS ?? "{}") as Services.Peers
const { port, server } = await Grpc.serve(service, Services.implementation(service, peers))
process.stdout.write(`${service} listening on 127.0.0.1:${port}\n`)
const shutdown = () => server.tryShutdown(() => process.exit(0))
process.once("SIGTERM", shutdown)
process.once("SIGINT", shutdown)
