/**
 * The config of `weaver kube deploy`: a YAML file, as Service Weaver's Kube
 * deployer reads it, pointing at the application's weaver.toml
 * (`appConfig`) and saying how to run it on Kubernetes.
 *
 * ```yaml
 * appConfig: weaver.toml
 * repo: registry.example.com/team     # where the image is pushed (none: kept local)
 * namespace: default
 * listeners:
 *   - name: hello
 *     public: true                    # a LoadBalancer Service; otherwise ClusterIP
 *     serviceName: hello              # kept across versions (default: the listener's name)
 * resourceSpec:
 *   requests: { memory: 64Mi }
 * groups:
 *   - name: reverser
 *     components: [hello/Reverser]
 *     resourceSpec: { requests: { memory: 256Mi } }
 *     scalingSpec: { minReplicas: 2 }
 * ```
 *
 * Per-group `resourceSpec`, `scalingSpec` and `probeSpec` win over the
 * deployment's; `storageSpec` volumes are concatenated. Unknown keys, bad
 * resource quantities and wrong types are refused with a
 * {@link KubeConfigError} naming the file, the section and the key.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import * as Yaml from "yaml"

/**
 * A kube config that cannot be used: where (file, section, key) and why.
 *
 * @since 0.1.0
 * @category errors
 */
export class KubeConfigError extends Schema.TaggedError<KubeConfigError>()("KubeConfigError", {
  file: Schema.String,
  section: Schema.optional(Schema.String),
  key: Schema.optional(Schema.String),
  reason: Schema.String
}) {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    const where = [
      this.section === undefined ? undefined : `section "${this.section}"`,
      this.key === undefined ? undefined : `key "${this.key}"`
    ].filter((part) => part !== undefined).join(" ")
    return `${this.file}: ${where === "" ? "" : `${where}: `}${this.reason}`
  }
}

// Kubernetes' resource.Quantity grammar: a signed decimal number with an optional binary (Ki…Ei), decimal SI
// (n u m k M G T P E) or exponent (e3, E-2) suffix.
const quantityPattern = /^[+-]?(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?$/

/**
 * A Kubernetes resource quantity (`250m`, `64Mi`, `1.5`, `2e3`).
 *
 * @since 0.1.0
 * @category schemas
 */
export const Quantity = Schema.Union(
  Schema.String.pipe(Schema.filter((s) => quantityPattern.test(s), {
    message: (issue) =>
      `expected a resource quantity such as "250m", "64Mi" or "2", got ${JSON.stringify(issue.actual)}`
  })),
  Schema.Number.pipe(Schema.nonNegative())
)

const ResourceList = Schema.Record({ key: Schema.String, value: Quantity })

/**
 * Container resources: Kubernetes' `ResourceRequirements`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ResourceSpec = Schema.Struct({
  requests: Schema.optional(ResourceList),
  limits: Schema.optional(ResourceList)
})

// Kubernetes objects embedded as they are (a Probe, a Volume, an HPA MetricSpec): checked against the API's
// schemas by kubernetes-models when the manifests are built, and by the API server when applied.
const KubeObject = Schema.Record({ key: Schema.String, value: Schema.Unknown })

/**
 * Autoscaling: Kubernetes' HorizontalPodAutoscaler spec, without the target
 * (default: 1 to 10 replicas, 80 % average CPU).
 *
 * @since 0.1.0
 * @category schemas
 */
export const ScalingSpec = Schema.Struct({
  minReplicas: Schema.optional(Schema.Int.pipe(Schema.positive())),
  maxReplicas: Schema.optional(Schema.Int.pipe(Schema.positive())),
  metrics: Schema.optional(Schema.Array(KubeObject))
})

/**
 * Probes: Kubernetes' `Probe`s for the weavelet's container, replacing the
 * default ones (readiness and liveness on the pod's health port).
 *
 * @since 0.1.0
 * @category schemas
 */
export const ProbeSpec = Schema.Struct({
  readinessProbe: Schema.optional(KubeObject),
  livenessProbe: Schema.optional(KubeObject)
})

/**
 * Storage: Kubernetes `Volume`s of the pod and the `VolumeMount`s of its
 * container.
 *
 * @since 0.1.0
 * @category schemas
 */
export const StorageSpec = Schema.Struct({
  volumes: Schema.optional(Schema.Array(KubeObject)),
  volumeMounts: Schema.optional(Schema.Array(KubeObject))
})

// Kubernetes object names (RFC 1123 labels, as Services need).
const dnsLabel = /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/
const DnsLabel = Schema.String.pipe(Schema.filter((s) => dnsLabel.test(s), {
  message: (issue) =>
    `expected a DNS label (lower-case letters, digits and "-", at most 63, starting with a letter), got ${
      JSON.stringify(issue.actual)
    }`
}))

/**
 * A listener of the application, as users reach it.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ListenerSpec = Schema.Struct({
  name: Schema.String,
  /** Reachable from outside the cluster (a `LoadBalancer` Service); otherwise only from inside (`ClusterIP`). */
  public: Schema.optional(Schema.Boolean),
  /** The Service's name, the same for every version (default: the listener's name). */
  serviceName: Schema.optional(DnsLabel),
  /** The Service's port (default 80). */
  port: Schema.optional(Schema.Int.pipe(Schema.between(1, 65535)))
})

/**
 * A colocation group: components that run in the same pods.
 *
 * @since 0.1.0
 * @category schemas
 */
export const GroupSpec = Schema.Struct({
  name: DnsLabel,
  components: Schema.Array(Schema.String).pipe(
    Schema.minItems(1, { message: () => "expected at least one component (a group of none runs nothing)" })
  ),
  resourceSpec: Schema.optional(ResourceSpec),
  scalingSpec: Schema.optional(ScalingSpec),
  probeSpec: Schema.optional(ProbeSpec),
  storageSpec: Schema.optional(StorageSpec)
})

/**
 * The whole config file.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Spec = Schema.Struct({
  /** The application's weaver.toml, relative to this file. */
  appConfig: Schema.String,
  /** The image name (default `<app>:<version>`). */
  image: Schema.optional(Schema.String),
  /** The repository the image is pushed to; none: the image stays with the local container tool. */
  repo: Schema.optional(Schema.String),
  /** The image with Node the application's image is built on (default `node:20-slim`). */
  baseImage: Schema.optional(Schema.String),
  namespace: Schema.optional(DnsLabel),
  serviceAccount: Schema.optional(Schema.String),
  listeners: Schema.optional(Schema.Array(ListenerSpec)),
  groups: Schema.optional(Schema.Array(GroupSpec)),
  resourceSpec: Schema.optional(ResourceSpec),
  scalingSpec: Schema.optional(ScalingSpec),
  probeSpec: Schema.optional(ProbeSpec),
  storageSpec: Schema.optional(StorageSpec),
  useHostNetwork: Schema.optional(Schema.Boolean)
})

/**
 * @since 0.1.0
 * @category models
 */
export type Spec = typeof Spec.Type

/**
 * A decoded kube config with where it came from.
 *
 * @since 0.1.0
 * @category models
 */
export interface KubeConfig {
  readonly file: string
  /** The directory `appConfig` is resolved against. */
  readonly dir: string
  readonly spec: Spec
  /** The absolute path of the application's weaver.toml. */
  readonly appConfig: string
}

const sectionOf = (path: ReadonlyArray<PropertyKey>): { section?: string; key?: string } => {
  if (path.length === 0) return {}
  const [head, ...rest] = path.map(String)
  // `listeners[0]` and `groups[1]` are sections of their own, named by index.
  if ((head === "listeners" || head === "groups") && rest.length > 0) {
    const [index, ...key] = rest
    return { section: `${head}[${index}]`, ...(key.length > 0 ? { key: key.join(".") } : {}) }
  }
  return rest.length === 0 ? { key: head! } : { section: head!, key: rest.join(".") }
}

/**
 * Decodes the text of a kube config; `file` names it in errors.
 *
 * @since 0.1.0
 * @category constructors
 */
export const parse = (text: string, file: string, dir = Path.dirname(Path.resolve(file))): Either.Either<
  KubeConfig,
  KubeConfigError
> => {
  const doc = Yaml.parseDocument(text, { uniqueKeys: true })
  if (doc.errors.length > 0) {
    const error = doc.errors[0]!
    const at = error.linePos?.[0]
    return Either.left(
      new KubeConfigError({
        file: at === undefined ? file : `${file}:${at.line}:${at.col}`,
        reason: `malformed YAML: ${error.message.split("\n")[0]}`
      })
    )
  }
  const value: unknown = doc.toJS() ?? {}
  return Schema.decodeUnknownEither(Spec, { errors: "first", onExcessProperty: "error" })(value).pipe(
    Either.mapLeft((error) => {
      const [issue] = ParseResult.ArrayFormatter.formatErrorSync(error)
      const reason = issue === undefined
        ? error.message
        : issue._tag === "Unexpected"
        ? "unknown key"
        : issue._tag === "Missing"
        ? "missing required key"
        : issue.message
      return new KubeConfigError({ file, ...sectionOf(issue?.path ?? []), reason })
    }),
    Either.flatMap((spec) => check(spec, file)),
    Either.map((spec) => ({ file, dir, spec, appConfig: Path.resolve(dir, spec.appConfig) }))
  )
}

// What the schema cannot say: names that must be unique, bounds that must be ordered.
const check = (spec: Spec, file: string): Either.Either<Spec, KubeConfigError> => {
  const fail = (section: string | undefined, key: string | undefined, reason: string) =>
    Either.left(new KubeConfigError({ file, ...(section ? { section } : {}), ...(key ? { key } : {}), reason }))
  const listeners = new Map<string, number>()
  const services = new Map<string, number>()
  for (const [i, listener] of (spec.listeners ?? []).entries()) {
    if (listeners.has(listener.name)) {
      return fail(
        `listeners[${i}]`,
        "name",
        `listener ${listener.name} is also listeners[${listeners.get(listener.name)}]`
      )
    }
    listeners.set(listener.name, i)
    const service = listener.serviceName ?? listener.name
    if (services.has(service)) {
      return fail(
        `listeners[${i}]`,
        "serviceName",
        `Service ${service} is also that of listeners[${services.get(service)}]`
      )
    }
    services.set(service, i)
  }
  const groups = new Map<string, number>()
  const members = new Map<string, number>()
  for (const [i, group] of (spec.groups ?? []).entries()) {
    if (groups.has(group.name)) {
      return fail(`groups[${i}]`, "name", `group ${group.name} is also groups[${groups.get(group.name)}]`)
    }
    groups.set(group.name, i)
    for (const component of group.components) {
      if (members.has(component)) {
        return fail(`groups[${i}]`, "components", `component ${component} is also in groups[${members.get(component)}]`)
      }
      members.set(component, i)
    }
  }
  const scaling = [
    [undefined, spec.scalingSpec] as const,
    ...(spec.groups ?? []).map((group, i) => [`groups[${i}]`, group.scalingSpec] as const)
  ]
  for (const [section, s] of scaling) {
    const min = s?.minReplicas ?? spec.scalingSpec?.minReplicas ?? defaultScaling.minReplicas
    const max = s?.maxReplicas ?? spec.scalingSpec?.maxReplicas ?? defaultScaling.maxReplicas
    if (min > max) return fail(section, "scalingSpec.maxReplicas", `maxReplicas (${max}) is below minReplicas (${min})`)
  }
  return Either.right(spec)
}

/**
 * The autoscaling of a group whose config says nothing (Service Weaver's
 * defaults).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultScaling = { minReplicas: 1, maxReplicas: 10, cpuUtilization: 80 } as const

/**
 * Reads and decodes a kube config file.
 *
 * @since 0.1.0
 * @category constructors
 */
export const load = (file: string): Effect.Effect<KubeConfig, KubeConfigError> =>
  Effect.tryPromise({
    try: () => Fs.readFile(file, "utf8"),
    catch: (e) =>
      new KubeConfigError({
        file,
        reason: `cannot read config file: ${(e as NodeJS.ErrnoException).code ?? String(e)}`
      })
  }).pipe(Effect.flatMap((text) => parse(text, file)))
