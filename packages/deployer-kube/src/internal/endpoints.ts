/**
 * The ready addresses of a Service, followed through the API server: list
 * its EndpointSlices, then watch them from that list's resource version; on
 * any error or end of the watch, list again.
 *
 * Written against the API directly (one list and one watch, over node:https
 * with the pod's service-account token) rather than with
 * `@kubernetes/client-node`: its current major needs Node 22, and the
 * previous one would add some fifteen packages to every pod for these two
 * requests.
 */
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import * as Fs from "node:fs"
import type * as Http from "node:http"
import * as Https from "node:https"
import * as Readline from "node:readline"

export class KubeApiError extends Data.TaggedError("KubeApiError")<{ readonly reason: string }> {
  override get message(): string {
    return this.reason
  }
}

export interface Api {
  readonly getJson: (path: string) => Effect.Effect<any, KubeApiError>
  readonly watch: (path: string) => Stream.Stream<any, KubeApiError>
}

const serviceAccount = "/var/run/secrets/kubernetes.io/serviceaccount"

/** The API server as a pod sees it: its Service address, the mounted token and CA. */
export const inCluster = (): Effect.Effect<Api, KubeApiError> =>
  Effect.try({
    try: () => {
      const host = process.env.KUBERNETES_SERVICE_HOST
      const port = process.env.KUBERNETES_SERVICE_PORT ?? "443"
      if (host === undefined) throw new Error("KUBERNETES_SERVICE_HOST is not set: not running in a pod")
      return {
        base: `https://${host.includes(":") ? `[${host}]` : host}:${port}`,
        ca: Fs.readFileSync(`${serviceAccount}/ca.crt`),
        token: () => Fs.readFileSync(`${serviceAccount}/token`, "utf8").trim()
      }
    },
    catch: (e) => new KubeApiError({ reason: `cannot reach the API server from this pod: ${(e as Error).message}` })
  }).pipe(Effect.map(make))

const make = (server: { base: string; ca: Buffer; token: () => string }): Api => {
  const request = (path: string) =>
    Effect.async<Http.IncomingMessage, KubeApiError>((resume, signal) => {
      const req = Https.request(`${server.base}${path}`, {
        ca: server.ca,
        // The token is re-read on every request: the kubelet rotates projected tokens.
        headers: { authorization: `Bearer ${server.token()}`, accept: "application/json" },
        signal
      }, (res) => {
        if (res.statusCode === 200) return resume(Effect.succeed(res))
        let body = ""
        res.setEncoding("utf8").on("data", (chunk: string) => body = (body + chunk).slice(0, 500))
        res.on("end", () => resume(Effect.fail(new KubeApiError({ reason: `GET ${path}: ${res.statusCode} ${body}` }))))
      })
      req.on("error", (e) => resume(Effect.fail(new KubeApiError({ reason: `GET ${path}: ${e.message}` }))))
      req.end()
    })
  return {
    getJson: (path) =>
      Effect.flatMap(request(path), (res) =>
        Effect.async<any, KubeApiError>((resume) => {
          const chunks: Array<Buffer> = []
          res.on("data", (chunk: Buffer) => chunks.push(chunk))
          res.on("error", (e) => resume(Effect.fail(new KubeApiError({ reason: `GET ${path}: ${e.message}` }))))
          res.on("end", () =>
            resume(Effect.try({
              try: () => JSON.parse(Buffer.concat(chunks).toString("utf8")),
              catch: () => new KubeApiError({ reason: `GET ${path}: the answer is not JSON` })
            })))
        })),
    watch: (path) =>
      Stream.unwrapScoped(Effect.map(
        Effect.acquireRelease(request(path), (res) => Effect.sync(() => res.destroy())),
        (res) =>
          Stream.fromAsyncIterable(
            Readline.createInterface({ input: res, crlfDelay: Infinity }),
            (e) => new KubeApiError({ reason: `watch ${path}: ${(e as Error).message}` })
          ).pipe(
            Stream.filter((line) => line.trim() !== ""),
            Stream.mapEffect((line) =>
              Effect.try({
                try: () => JSON.parse(line),
                catch: () => new KubeApiError({ reason: `watch ${path}: an event is not JSON` })
              })
            )
          )
      ))
  }
}

interface Slice {
  readonly metadata: { readonly name: string }
  readonly endpoints?: ReadonlyArray<
    { readonly addresses: ReadonlyArray<string>; readonly conditions?: { readonly ready?: boolean } }
  >
}

const readyAddresses = (slice: Slice, port: number): ReadonlyArray<string> =>
  (slice.endpoints ?? []).filter((e) => e.conditions?.ready !== false).flatMap((e) =>
    e.addresses.map((a) => a.includes(":") ? `[${a}]:${port}` : `${a}:${port}`)
  )

const union = (slices: ReadonlyMap<string, ReadonlyArray<string>>): ReadonlyArray<string> =>
  [...new Set([...slices.values()].flat())].sort()

/** EndpointSlices are `discovery.k8s.io/v1` from Kubernetes 1.21 on, `v1beta1` before (and up to 1.24). */
const discoveryVersion = (api: Api) =>
  api.getJson("/apis/discovery.k8s.io").pipe(
    Effect.map((group: { versions?: ReadonlyArray<{ version: string }> }) =>
      group.versions?.some((v) => v.version === "v1") ? "v1" : "v1beta1"
    )
  )

/**
 * The ready `address:port`s of the pods behind `service`, a new set on each
 * change. Runs until interrupted: a failed list or watch is retried every
 * second, and reported to `onError` once per failure.
 */
export const watchAddresses = (options: {
  readonly api: Api
  readonly namespace: string
  readonly service: string
  readonly port: number
  readonly onError: (error: KubeApiError) => Effect.Effect<void>
}): Stream.Stream<ReadonlyArray<string>> => {
  const { api, namespace, port, service } = options
  const selector = encodeURIComponent(`kubernetes.io/service-name=${service}`)
  const session = Effect.gen(function*() {
    const version = yield* discoveryVersion(api)
    const path = `/apis/discovery.k8s.io/${version}/namespaces/${namespace}/endpointslices?labelSelector=${selector}`
    const list = yield* api.getJson(path)
    const slices = new Map<string, ReadonlyArray<string>>(
      (list.items as ReadonlyArray<Slice>).map((slice) => [slice.metadata.name, readyAddresses(slice, port)])
    )
    const events = api.watch(
      `${path}&watch=1&allowWatchBookmarks=true&resourceVersion=${list.metadata.resourceVersion}`
    ).pipe(
      Stream.mapEffect((event: { type: string; object: any }) => {
        switch (event.type) {
          case "ADDED":
          case "MODIFIED":
            slices.set(event.object.metadata.name, readyAddresses(event.object, port))
            return Effect.succeed(true)
          case "DELETED":
            slices.delete(event.object.metadata.name)
            return Effect.succeed(true)
          case "BOOKMARK":
            return Effect.succeed(false)
          default:
            // ERROR (410 Gone: our resource version is too old) and anything unknown: list again.
            return Effect.fail(new KubeApiError({ reason: `watch ${path}: ${JSON.stringify(event.object)}` }))
        }
      }),
      Stream.filter((changed) => changed),
      Stream.map(() => union(slices))
    )
    // A watch the server ends (it does, after a timeout) is followed by a fresh list.
    return Stream.concat(Stream.succeed(union(slices)), events).pipe(
      Stream.concat(Stream.fail(new KubeApiError({ reason: `watch ${path} ended` })))
    )
  })
  return Stream.unwrap(session).pipe(
    Stream.tapError(options.onError),
    Stream.retry(Schedule.spaced(Duration.seconds(1))),
    Stream.changesWith((a, b) => a.length === b.length && a.every((x, i) => x === b[i])),
    Stream.orDie
  )
}
