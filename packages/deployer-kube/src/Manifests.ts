/**
 * The Kubernetes objects of one version of an application, built with the
 * typed models of `kubernetes-models` and checked against the API's schemas
 * before anything is written:
 *
 * | Object | Name | For |
 * | --- | --- | --- |
 * | ConfigMap | `<app>-config-<version>` | the weaver.toml, mounted in every pod |
 * | Role, RoleBinding | `<app>-endpoints-<version>` | pods read EndpointSlices (routing) |
 * | Secret, per group | `<app>-<group>-<version>-tls` | the group's mutual TLS credentials |
 * | Deployment, per group | `<app>-<group>-<version>` | the group's pods |
 * | Service, per group (headless) | `<app>-<group>-<version>` | its EndpointSlices: the replicas callers route to |
 * | HorizontalPodAutoscaler, per group | `<app>-<group>-<version>` | scaling (none for a singleton's group) |
 * | Service, per listener | `serviceName` (kept across versions) | users reach the listener |
 *
 * Every object carries the labels `serviceweaver/app` and
 * `serviceweaver/version`, so `kubectl delete all,configmaps,secrets,roles,rolebindings
 * -l serviceweaver/version=<version>` removes a version; a listener Service is
 * labelled with the version it routes to.
 *
 * @since 0.1.0
 */
import * as Either from "effect/Either"
import { Deployment } from "kubernetes-models/apps/v1/Deployment"
import { HorizontalPodAutoscaler as HpaV2 } from "kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler"
import { HorizontalPodAutoscaler as HpaV2beta2 } from "kubernetes-models/autoscaling/v2beta2/HorizontalPodAutoscaler"
import { Role } from "kubernetes-models/rbac.authorization.k8s.io/v1/Role"
import { RoleBinding } from "kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding"
import { ConfigMap } from "kubernetes-models/v1/ConfigMap"
import { Secret } from "kubernetes-models/v1/Secret"
import { Service } from "kubernetes-models/v1/Service"
import * as Yaml from "yaml"
import type * as KubeConfig from "./KubeConfig.js"

/**
 * The label keys of every object.
 *
 * @since 0.1.0
 * @category constants
 */
export const labels = {
  app: "serviceweaver/app",
  version: "serviceweaver/version",
  group: "serviceweaver/group",
  listener: "serviceweaver/listener"
} as const

/**
 * The ports of a pod: its weavelet serves components on `weavelet`, the
 * pod's health, readiness and metrics are on `health`, and listener `i` (in
 * the order of `Plan.listeners`) on `firstListener + i`.
 *
 * @since 0.1.0
 * @category constants
 */
export const ports = { weavelet: 10000, health: 10100, firstListener: 20000 } as const

/**
 * Where a pod finds the config and its credentials.
 *
 * @since 0.1.0
 * @category constants
 */
export const paths = {
  app: "/weaver/app.mjs",
  babysitter: "/weaver/babysitter.mjs",
  configDir: "/weaver/config",
  config: "/weaver/config/weaver.toml",
  tlsDir: "/weaver/tls",
  credentials: "/weaver/tls/credentials.json"
} as const

/**
 * A colocation group of the plan.
 *
 * @since 0.1.0
 * @category models
 */
export interface Group {
  /** The group's name in object names and labels (a DNS label). */
  readonly name: string
  /** Its components (`main` for the main component). */
  readonly components: ReadonlyArray<string>
  /** The name of its Deployment, Service and autoscaler. */
  readonly objectName: string
  /**
   * It holds a singleton: its Deployment runs exactly one pod (`replicas: 1`,
   * and the `Recreate` strategy, so that a rollout stops the old pod before
   * it starts the new one), with no autoscaler; `scalingSpec` is ignored.
   *
   * @since 0.2.0
   */
  readonly singleton?: boolean | undefined
  readonly resourceSpec?: KubeConfig.Spec["resourceSpec"]
  readonly scalingSpec: {
    readonly minReplicas: number
    readonly maxReplicas: number
    readonly metrics?: ReadonlyArray<unknown> | undefined
  }
  readonly probeSpec?: KubeConfig.Spec["probeSpec"]
  readonly storageSpec: { readonly volumes: ReadonlyArray<unknown>; readonly volumeMounts: ReadonlyArray<unknown> }
}

/**
 * A listener of the plan.
 *
 * @since 0.1.0
 * @category models
 */
export interface Listener {
  readonly name: string
  /** The group whose pods serve it. */
  readonly group: string
  readonly serviceName: string
  readonly public: boolean
  /** The Service's port. */
  readonly port: number
  /** The pod's port. */
  readonly targetPort: number
}

/**
 * Everything the manifests of one version say.
 *
 * @since 0.1.0
 * @category models
 */
export interface Plan {
  readonly app: string
  /** The deployment id (a UUID) and its short form, the version in names and labels. */
  readonly deploymentId: string
  readonly version: string
  readonly namespace: string
  readonly image: string
  readonly serviceAccount?: string | undefined
  readonly useHostNetwork: boolean
  readonly configText: string
  readonly args: ReadonlyArray<string>
  readonly groups: ReadonlyArray<Group>
  readonly listeners: ReadonlyArray<Listener>
  /** Each group's credentials (`Certificates.Credentials` as JSON), by group name. */
  readonly credentials: ReadonlyMap<string, string>
  /** `autoscaling/v2` where the cluster serves it, else `autoscaling/v2beta2` (Kubernetes before 1.23). */
  readonly autoscaling: "autoscaling/v2" | "autoscaling/v2beta2"
}

/**
 * What a pod is told about its group and the deployment, in the environment
 * variable {@link podEnv} (JSON).
 *
 * @since 0.1.0
 * @category models
 */
export interface PodConfig {
  readonly app: string
  readonly deploymentId: string
  readonly version: string
  readonly namespace: string
  readonly group: string
  readonly components: ReadonlyArray<string>
  /** The headless Service of each component's group, by component. */
  readonly services: Readonly<Record<string, string>>
  /** The listeners this group serves: pod port, Service and its port. */
  readonly listeners: ReadonlyArray<
    { readonly name: string; readonly port: number; readonly service: string; readonly servicePort: number }
  >
  readonly args: ReadonlyArray<string>
}

/**
 * The environment variable carrying a pod's {@link PodConfig}.
 *
 * @since 0.1.0
 * @category constants
 */
export const podEnv = "WEAVER_KUBE_POD"

/**
 * One generated object, with the comment that heads it in the YAML.
 *
 * @since 0.1.0
 * @category models
 */
export interface Manifest {
  readonly comment: string
  readonly object: {
    readonly kind?: string
    readonly metadata?: { readonly name?: string }
    validate(): void
    toJSON(): unknown
  }
}

/**
 * An object the models refused (a bad probe, volume or metric from the kube
 * config): which object and the first reason.
 *
 * @since 0.1.0
 * @category models
 */
export interface Invalid {
  readonly object: string
  readonly reason: string
}

const versionLabels = (plan: Plan) => ({ [labels.app]: plan.app, [labels.version]: plan.version })

/**
 * The {@link PodConfig} of a group.
 *
 * @since 0.1.0
 * @category constructors
 */
export const podConfig = (plan: Plan, group: Group): PodConfig => ({
  app: plan.app,
  deploymentId: plan.deploymentId,
  version: plan.version,
  namespace: plan.namespace,
  group: group.name,
  components: group.components,
  services: Object.fromEntries(plan.groups.flatMap((g) => g.components.map((c) => [c, g.objectName]))),
  listeners: plan.listeners.filter((l) => l.group === group.name).map((l) => ({
    name: l.name,
    port: l.targetPort,
    service: l.serviceName,
    servicePort: l.port
  })),
  args: plan.args
})

const httpProbe = (path: string, period: number, failures: number, initialDelay = 0) => ({
  httpGet: { path, port: ports.health },
  initialDelaySeconds: initialDelay,
  periodSeconds: period,
  failureThreshold: failures,
  timeoutSeconds: 1
})

/**
 * The manifests of a plan, in the order they are applied: what pods mount
 * and read first, then per group its Secret, Deployment, Service and
 * autoscaler, then the listener Services.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (plan: Plan): ReadonlyArray<Manifest> => {
  const namespace = plan.namespace
  const common = versionLabels(plan)
  const configMapName = `${plan.app}-config-${plan.version}`
  const readerName = `${plan.app}-endpoints-${plan.version}`
  const manifests: Array<Manifest> = [
    {
      comment: `The application's config (weaver.toml), mounted at ${paths.configDir}`,
      object: new ConfigMap({
        metadata: { name: configMapName, namespace, labels: common },
        data: { "weaver.toml": plan.configText }
      })
    },
    {
      comment: "Lets the pods read EndpointSlices: each weavelet routes calls to the ready pods of other groups",
      object: new Role({
        metadata: { name: readerName, namespace, labels: common },
        rules: [{ apiGroups: ["discovery.k8s.io"], resources: ["endpointslices"], verbs: ["get", "list", "watch"] }]
      })
    },
    {
      comment: `Binds it to the pods' service account (${plan.serviceAccount ?? "default"})`,
      object: new RoleBinding({
        metadata: { name: readerName, namespace, labels: common },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: readerName },
        subjects: [{ kind: "ServiceAccount", name: plan.serviceAccount ?? "default", namespace }]
      })
    }
  ]
  for (const group of plan.groups) {
    const groupLabels = { ...common, [labels.group]: group.name }
    const tlsName = `${group.objectName}-tls`
    const listeners = plan.listeners.filter((l) => l.group === group.name)
    manifests.push({
      comment: `Mutual TLS credentials of group ${group.name}, issued by this version's authority`,
      object: new Secret({
        metadata: { name: tlsName, namespace, labels: groupLabels },
        type: "Opaque",
        stringData: { "credentials.json": plan.credentials.get(group.name) ?? "" }
      })
    })
    manifests.push({
      comment: `Deployment for group ${group.name} (${group.components.join(", ")})${
        group.singleton ? ": it holds a singleton, so exactly one pod, replaced by stopping it first (Recreate)" : ""
      }`,
      object: new Deployment({
        metadata: { name: group.objectName, namespace, labels: groupLabels },
        spec: {
          replicas: group.singleton ? 1 : group.scalingSpec.minReplicas,
          // A rolling update would run the new pod beside the old one: a singleton's stops first.
          ...(group.singleton ? { strategy: { type: "Recreate" } } : {}),
          selector: { matchLabels: groupLabels },
          template: {
            metadata: {
              labels: groupLabels,
              annotations: {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": String(ports.health),
                "prometheus.io/path": "/metrics"
              }
            },
            spec: {
              ...(plan.serviceAccount === undefined ? {} : { serviceAccountName: plan.serviceAccount }),
              ...(plan.useHostNetwork ? { hostNetwork: true } : {}),
              terminationGracePeriodSeconds: 30,
              containers: [{
                name: "weavelet",
                image: plan.image,
                imagePullPolicy: "IfNotPresent",
                env: [
                  { name: "POD_IP", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
                  { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
                  { name: podEnv, value: JSON.stringify(podConfig(plan, group)) }
                ],
                ports: [
                  { name: "weavelet", containerPort: ports.weavelet },
                  { name: "health", containerPort: ports.health },
                  ...listeners.map((l) => ({ containerPort: l.targetPort }))
                ],
                ...(group.resourceSpec === undefined ? {} : { resources: group.resourceSpec as any }),
                readinessProbe: (group.probeSpec?.readinessProbe as any) ?? httpProbe("/readyz", 1, 1),
                livenessProbe: (group.probeSpec?.livenessProbe as any) ?? httpProbe("/livez", 5, 3, 10),
                volumeMounts: [
                  { name: "config", mountPath: paths.configDir, readOnly: true },
                  { name: "tls", mountPath: paths.tlsDir, readOnly: true },
                  ...(group.storageSpec.volumeMounts as Array<any>)
                ]
              }],
              volumes: [
                { name: "config", configMap: { name: configMapName } },
                { name: "tls", secret: { secretName: tlsName, defaultMode: 0o400 } },
                ...(group.storageSpec.volumes as Array<any>)
              ]
            }
          }
        }
      })
    })
    manifests.push({
      comment: `Headless Service of group ${group.name}: its EndpointSlices list the ready pods callers route to`,
      object: new Service({
        metadata: { name: group.objectName, namespace, labels: groupLabels },
        spec: {
          clusterIP: "None",
          selector: groupLabels,
          ports: [{ name: "weavelet", port: ports.weavelet, targetPort: ports.weavelet }]
        }
      })
    })
    if (group.singleton) continue
    const hpa = {
      metadata: { name: group.objectName, namespace, labels: groupLabels },
      spec: {
        scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name: group.objectName },
        minReplicas: group.scalingSpec.minReplicas,
        maxReplicas: group.scalingSpec.maxReplicas,
        metrics: (group.scalingSpec.metrics as Array<any> | undefined) ?? [{
          type: "Resource",
          resource: { name: "cpu", target: { type: "Utilization", averageUtilization: 80 } }
        }]
      }
    }
    manifests.push({
      comment: `Autoscaler for group ${group.name}`,
      object: plan.autoscaling === "autoscaling/v2" ? new HpaV2(hpa) : new HpaV2beta2(hpa)
    })
  }
  for (const listener of plan.listeners) {
    const group = plan.groups.find((g) => g.name === listener.group)!
    manifests.push({
      comment: `Listener ${listener.name}: ${
        listener.public ? "public" : "private"
      }, routed to version ${plan.version}`,
      object: new Service({
        metadata: { name: listener.serviceName, namespace, labels: { ...common, [labels.listener]: listener.name } },
        spec: {
          type: listener.public ? "LoadBalancer" : "ClusterIP",
          selector: { ...common, [labels.group]: group.name },
          // Named for no protocol: a listener may speak any (Weaver.listener), and meshes such as Istio take a port
          // named "http" for HTTP/1 traffic.
          ports: [{ name: "listener", port: listener.port, targetPort: listener.targetPort }]
        }
      })
    })
  }
  return manifests
}

/**
 * Checks every manifest against the Kubernetes API's schemas; the first
 * refusal, naming the object.
 *
 * @since 0.1.0
 * @category constructors
 */
export const validate = (manifests: ReadonlyArray<Manifest>): Either.Either<void, Invalid> => {
  for (const manifest of manifests) {
    try {
      manifest.object.validate()
    } catch (error) {
      // kubernetes-models reports with an exception; this is where we turn it into a value.
      return Either.left({
        object: `${manifest.object.kind}/${manifest.object.metadata?.name}`,
        reason: error instanceof Error ? error.message : String(error)
      })
    }
  }
  return Either.right(undefined)
}

/**
 * The manifests as one multi-document YAML file, each headed by its comment.
 *
 * @since 0.1.0
 * @category encoding
 */
export const toYaml = (manifests: ReadonlyArray<Manifest>, header: string): string =>
  [
    header.split("\n").map((line) => `# ${line}`.trimEnd()).join("\n") + "\n",
    ...manifests.map((m) => `# ${m.comment}\n${Yaml.stringify(m.object.toJSON(), { lineWidth: 0 })}`)
  ].join("---\n")
