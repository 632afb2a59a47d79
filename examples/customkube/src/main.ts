/**
 * customkube: `weaver kube` with plugins that decide where the pods' telemetry goes, as Service Weaver's
 * `tool.Run("customkube", Plugins{...})` example does:
 *
 *     node dist/main.js deploy --apply kube.yaml      (also: status, delete <version>)
 *
 * Deployed this way, every pod runs this very program (bundled into the image) as its babysitter, with these
 * plugins: log entries of level warn and above are printed in Service Weaver's text format, the rest dropped;
 * spans and metrics are posted as JSON to a collector of your own, the `telemetry` Service of the namespace
 * (reached through the address Kubernetes gives pods in `TELEMETRY_SERVICE_HOST`, so no cluster DNS is
 * needed). A collector that is down loses telemetry, never calls.
 */
import * as Kube from "@effect-weaver/cli/Kube"
import { Logging } from "@effect-weaver/runtime"
import { Effect } from "effect"

const collector = `http://${process.env.TELEMETRY_SERVICE_HOST ?? "telemetry"}:${
  process.env.TELEMETRY_SERVICE_PORT ?? "8080"
}`

const post = (path: string, body: unknown) =>
  Effect.tryPromise(() =>
    fetch(`${collector}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(5_000)
    })
  ).pipe(Effect.ignore)

Kube.tool({
  name: "customkube",
  plugins: {
    logs: (entry) =>
      entry.level === "warn" || entry.level === "error"
        ? Effect.sync(() => process.stdout.write(`${Logging.pretty(entry)}\n`))
        : Effect.void,
    traces: (spans) => post("/spans", spans),
    metrics: (snapshots) => post("/metrics", snapshots)
  }
})
