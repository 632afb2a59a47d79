/**
 * What `weaver kube status` shows: the versions of every application
 * deployed with `weaver kube deploy`, their groups with pods, and the
 * listeners, read from the API server (kubectl).
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Exec from "./internal/exec.js"
import * as Manifests from "./Manifests.js"

/**
 * A version's group: its Deployment and pods.
 *
 * @since 0.1.0
 * @category models
 */
export interface Group {
  readonly app: string
  readonly version: string
  readonly namespace: string
  readonly group: string
  readonly deployment: string
  readonly ready: number
  readonly replicas: number
  readonly pods: ReadonlyArray<
    { readonly name: string; readonly ip: string; readonly ready: boolean; readonly phase: string }
  >
  readonly created: string
}

/**
 * A listener Service and the version it routes to.
 *
 * @since 0.1.0
 * @category models
 */
export interface Listener {
  readonly app: string
  readonly namespace: string
  readonly listener: string
  readonly service: string
  readonly type: string
  readonly clusterIP: string
  readonly port: number
  readonly version: string
}

/**
 * The status of every version in the cluster (all namespaces, or one).
 *
 * @since 0.1.0
 * @category models
 */
export interface Status {
  readonly groups: ReadonlyArray<Group>
  readonly listeners: ReadonlyArray<Listener>
}

/**
 * Reads the status from the cluster kubectl is configured for.
 *
 * @since 0.1.0
 * @category constructors
 */
export const read = Effect.fnUntraced(function*(options?: {
  readonly namespace?: string | undefined
  readonly kubectl?: string | undefined
}) {
  const scope = options?.namespace === undefined ? ["--all-namespaces"] : ["-n", options.namespace]
  const { stdout } = yield* Exec.run(options?.kubectl ?? "kubectl", [
    "get",
    "deployments,pods,services",
    ...scope,
    "-l",
    Manifests.labels.app,
    "-o",
    "json"
  ])
  const items = (JSON.parse(stdout) as { items: ReadonlyArray<any> }).items
  const label = (item: any, key: string): string => item.metadata?.labels?.[key] ?? ""
  const pods = items.filter((i) => i.kind === "Pod")
  const groups: Array<Group> = items.filter((i) => i.kind === "Deployment").map((d) => ({
    app: label(d, Manifests.labels.app),
    version: label(d, Manifests.labels.version),
    namespace: d.metadata.namespace,
    group: label(d, Manifests.labels.group),
    deployment: d.metadata.name,
    ready: d.status?.readyReplicas ?? 0,
    replicas: d.spec?.replicas ?? 0,
    created: d.metadata.creationTimestamp,
    pods: pods.filter((p) =>
      p.metadata.namespace === d.metadata.namespace &&
      label(p, Manifests.labels.version) === label(d, Manifests.labels.version) &&
      label(p, Manifests.labels.group) === label(d, Manifests.labels.group)
    ).map((p) => ({
      name: p.metadata.name,
      ip: p.status?.podIP ?? "",
      phase: p.metadata.deletionTimestamp === undefined ? p.status?.phase ?? "" : "Terminating",
      ready: (p.status?.conditions ?? []).some((c: any) => c.type === "Ready" && c.status === "True")
    }))
  }))
  const listeners: Array<Listener> = items.filter((i) =>
    i.kind === "Service" && label(i, Manifests.labels.listener) !== ""
  )
    .map((s) => ({
      app: label(s, Manifests.labels.app),
      namespace: s.metadata.namespace,
      listener: label(s, Manifests.labels.listener),
      service: s.metadata.name,
      type: s.spec.type,
      clusterIP: s.spec.clusterIP,
      port: s.spec.ports?.[0]?.port ?? 0,
      version: label(s, Manifests.labels.version)
    }))
  return { groups, listeners } satisfies Status
})
