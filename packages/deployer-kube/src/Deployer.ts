/**
 * The Kubernetes deployer (`weaver kube deploy`), Service Weaver's Kube
 * deployer rebuilt on the runtime's deployer API:
 *
 * 1. reads the kube config (`KubeConfig`) and the application's weaver.toml,
 *    and asks the application's binary to check it (`ConfigCheck`), which
 *    also tells its components and listeners; a listener or component the
 *    application does not have is refused here, before anything is built;
 * 2. forms the colocation groups (the kube config's `groups`, then
 *    weaver.toml's `colocate`, then one group per component) and issues each
 *    its mutual TLS certificate from an authority made for this version;
 * 3. bundles the binary and the pod's babysitter into a container image
 *    built with podman or docker, and pushes it to `repo` when there is one;
 * 4. writes the manifests (`Manifests`) to a file and, with `apply`, applies
 *    them with kubectl: first everything but the listener Services, then,
 *    once every Deployment of the new version is available, the listener
 *    Services, which moves users to the new version (blue/green). Older
 *    versions keep running, unreachable from the new one, until deleted
 *    with {@link remove}.
 *
 * @since 0.1.0
 */
import { App, Certificates, ConfigCheck, WeaverConfig } from "@effect-weaver/runtime"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import { createRequire } from "node:module"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Exec from "./internal/exec.js"
import * as KubeConfig from "./KubeConfig.js"
import * as Manifests from "./Manifests.js"

/**
 * A deployment that could not be built or applied: what failed, with the
 * output of the tool that failed.
 *
 * @since 0.1.0
 * @category errors
 */
export class DeployError extends Data.TaggedError("KubeDeployError")<{ readonly reason: string }> {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return this.reason
  }
}

/**
 * Options of {@link deploy}.
 *
 * @since 0.1.0
 * @category models
 */
export interface DeployOptions {
  /** The kube config (YAML). */
  readonly configFile: string
  /** Apply the manifests with kubectl, and wait for the new version to be available. */
  readonly apply: boolean
  /**
   * Bundles a program into one self-contained file (`weaver bundle`): the
   * application's binary and the babysitter go into the image as bundles.
   */
  readonly bundle: (entry: string, out: string) => Effect.Effect<void, { readonly message: string }>
  /**
   * The program pods run ({@link Babysitter.run}); default: this package's
   * `pod` entry. A tool with telemetry plugins passes its own file.
   */
  readonly babysitter?: string | undefined
  /** Where the manifests are written (default: the system's temporary directory). */
  readonly outDir?: string | undefined
  /** The container tool (default: podman if installed, else docker). */
  readonly containerTool?: string | undefined
  /** The kubectl command (default `kubectl`). */
  readonly kubectl?: string | undefined
  /** How long `apply` waits for the new version's Deployments (default 300 s). */
  readonly timeoutSeconds?: number | undefined
  /** Receives progress lines (default: printed on stdout). */
  readonly log?: ((line: string) => Effect.Effect<void>) | undefined
}

/**
 * What a deployment made.
 *
 * @since 0.1.0
 * @category models
 */
export interface Deployed {
  readonly app: string
  readonly deploymentId: string
  readonly version: string
  readonly namespace: string
  readonly image: string
  /** The manifests file. */
  readonly file: string
  readonly groups: ReadonlyArray<
    { readonly name: string; readonly components: ReadonlyArray<string>; readonly deployment: string }
  >
  /** Each listener's Service, and (after `apply`) its cluster IP. */
  readonly listeners: ReadonlyArray<
    { readonly name: string; readonly service: string; readonly port: number; readonly clusterIP?: string | undefined }
  >
}

const dnsLabel = (text: string) => text.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "")

const shortHash = (text: string) => Crypto.createHash("sha256").update(text).digest("hex").slice(0, 6)

/**
 * The application's name as a DNS label (`[serviceweaver] name`, else the
 * config's directory).
 *
 * @since 0.1.0
 * @category constructors
 */
export const appName = (config: WeaverConfig.WeaverConfig): string =>
  (dnsLabel(config.serviceweaver.name ?? Path.basename(config.dir)) || "app").replace(/^[^a-z]+/, "a-").slice(0, 20)

/**
 * The groups of a deployment, each with its name (a DNS label), in a stable
 * order (main first). Fails naming the kube config's section when a group
 * names a component the application does not have, or gives a group holding
 * one of `singletons` (`ConfigCheck.Accepted`'s) a `scalingSpec` of more
 * than one replica: such a group runs exactly one pod.
 *
 * @since 0.1.0
 * @category constructors
 */
export const formGroups = (
  kube: KubeConfig.KubeConfig,
  config: WeaverConfig.WeaverConfig,
  components: ReadonlyArray<string>,
  singletons: ReadonlyArray<string> = []
): Either.Either<
  ReadonlyArray<
    {
      readonly name: string
      readonly components: ReadonlyArray<string>
      readonly spec?: (typeof KubeConfig.GroupSpec.Type) | undefined
      /** The singletons it holds (see `ConfigCheck.singletonsIn`): when any, it runs one pod. */
      readonly singletons: ReadonlyArray<string>
    }
  >,
  KubeConfig.KubeConfigError
> => {
  const all = [App.mainName, ...components]
  const known = new Set(all)
  const groups: Array<{ name: string; components: Array<string>; spec?: typeof KubeConfig.GroupSpec.Type }> = []
  const placed = new Set<string>()
  for (const [i, spec] of (kube.spec.groups ?? []).entries()) {
    for (const component of spec.components) {
      if (!known.has(component)) {
        return Either.left(
          new KubeConfigError({
            file: kube.file,
            section: `groups[${i}]`,
            key: "components",
            reason: `the application has no component ${component} (it has: ${all.join(", ")})`
          })
        )
      }
      placed.add(component)
    }
    const held = ConfigCheck.singletonsIn({ singletons }, spec.components)
    const scaling = spec.scalingSpec
    if (held.length > 0 && scaling !== undefined) {
      for (const key of ["maxReplicas", "minReplicas"] as const) {
        const replicas = scaling[key]
        if (replicas !== undefined && replicas > 1) {
          return Either.left(
            new KubeConfigError({
              file: kube.file,
              section: `groups[${i}]`,
              key: `scalingSpec.${key}`,
              reason: `group ${spec.name} holds the singleton ${held.join(", ")}, which runs exactly one replica: ` +
                `${key} ${replicas} is not allowed (remove it, or set it to 1)`
            })
          )
        }
      }
    }
    groups.push({ name: spec.name, components: [...spec.components], spec })
  }
  const names = new Set(groups.map((g) => g.name))
  const nameFor = (members: ReadonlyArray<string>) => {
    if (members.includes(App.mainName)) return App.mainName
    const base = dnsLabel(members[0]!.split("/").pop()!).slice(0, 20) || "group"
    return names.has(base) ? `${base}-${shortHash(members.join(","))}` : base
  }
  for (const component of all) {
    if (placed.has(component)) continue
    const colocated = config.serviceweaver.colocate.find((entry) => entry.includes(component)) ?? [component]
    const members = colocated.filter((c) => known.has(c) && !placed.has(c))
    members.forEach((c) => placed.add(c))
    const name = nameFor(members)
    names.add(name)
    groups.push({ name, components: members })
  }
  return Either.right(
    groups
      .sort((a, b) => Number(b.components.includes(App.mainName)) - Number(a.components.includes(App.mainName)))
      .map((group) => ({ ...group, singletons: ConfigCheck.singletonsIn({ singletons }, group.components) }))
  )
}

const KubeConfigError = KubeConfig.KubeConfigError

const encodeCredentials = Schema.encodeSync(Schema.parseJson(Certificates.Credentials))

const say = (line: string) => Effect.sync(() => process.stdout.write(`${line}\n`))

const containerTool = (preferred: string | undefined) =>
  preferred !== undefined
    ? Effect.succeed(preferred)
    : Effect.flatMap(Exec.available("podman"), (podman) =>
      podman
        ? Effect.succeed("podman")
        : Effect.flatMap(Exec.available("docker"), (docker) =>
          docker
            ? Effect.succeed("docker")
            : Effect.fail(
              new DeployError({ reason: "neither podman nor docker is installed: one is needed to build the image" })
            )))

const fromExec = Effect.mapError((error: Exec.ExecError) => new DeployError({ reason: error.message }))

/**
 * Deploys a new version of the application of a kube config: see the
 * module's doc.
 *
 * @since 0.1.0
 * @category constructors
 */
export const deploy = Effect.fnUntraced(function*(options: DeployOptions) {
  const log = options.log ?? say
  const kubectl = options.kubectl ?? "kubectl"
  const kube = yield* KubeConfig.load(options.configFile)
  const config = yield* WeaverConfig.load(kube.appConfig)
  const binary = yield* ConfigCheck.binary(config)
  const accepted = yield* ConfigCheck.run({
    config,
    command: process.execPath,
    args: [binary, ...config.serviceweaver.args],
    env: { ...process.env, ...WeaverConfig.environment(config) }
  })

  // The kube config against what the application declares.
  for (const [i, listener] of (kube.spec.listeners ?? []).entries()) {
    if (!accepted.listeners.includes(listener.name)) {
      return yield* new KubeConfigError({
        file: kube.file,
        section: `listeners[${i}]`,
        key: "name",
        reason: `the application has no listener ${listener.name} (it has: ${accepted.listeners.join(", ") || "none"})`
      })
    }
  }
  const formed = yield* formGroups(kube, config, accepted.components, accepted.singletons)
  const app = appName(config)
  const deploymentId = Crypto.randomUUID()
  const version = deploymentId.replace(/-/g, "").slice(0, 8)
  const namespace = kube.spec.namespace ?? "default"
  const spec = kube.spec
  const groups: Array<Manifests.Group> = formed.map((g) => ({
    name: g.name,
    components: g.components,
    singleton: g.singletons.length > 0,
    objectName: `${app}-${g.name}-${version}`.slice(0, 63).replace(/-+$/, ""),
    resourceSpec: g.spec?.resourceSpec ?? spec.resourceSpec,
    scalingSpec: {
      minReplicas: g.spec?.scalingSpec?.minReplicas ?? spec.scalingSpec?.minReplicas ??
        KubeConfig.defaultScaling.minReplicas,
      maxReplicas: g.spec?.scalingSpec?.maxReplicas ?? spec.scalingSpec?.maxReplicas ??
        KubeConfig.defaultScaling.maxReplicas,
      metrics: g.spec?.scalingSpec?.metrics ?? spec.scalingSpec?.metrics
    },
    probeSpec: g.spec?.probeSpec ?? spec.probeSpec,
    storageSpec: {
      volumes: [...(spec.storageSpec?.volumes ?? []), ...(g.spec?.storageSpec?.volumes ?? [])],
      volumeMounts: [...(spec.storageSpec?.volumeMounts ?? []), ...(g.spec?.storageSpec?.volumeMounts ?? [])]
    }
  }))
  const groupOf = (component: string) => groups.find((g) => g.components.includes(component))!
  const owner = new Map(
    Object.entries(accepted.serves).flatMap(([component, names]) => names.map((n) => [n, component]))
  )
  const listeners: Array<Manifests.Listener> = [...accepted.listeners].sort().map((name, i) => {
    const options = spec.listeners?.find((l) => l.name === name)
    return {
      name,
      group: groupOf(owner.get(name) ?? App.mainName).name,
      serviceName: options?.serviceName ?? dnsLabel(name),
      public: options?.public ?? false,
      port: options?.port ?? 80,
      targetPort: Manifests.ports.firstListener + i
    }
  })

  // Mutual TLS: an authority for this version alone; its key is dropped when this returns.
  const authority = yield* Effect.mapError(
    Certificates.makeAuthority(`${app}-${version}`),
    (error) => new DeployError({ reason: error.message })
  )
  const credentials = new Map<string, string>()
  for (const group of groups) {
    const issued = yield* Effect.mapError(
      authority.issue({ group: group.name, components: group.components }),
      (error) => new DeployError({ reason: error.message })
    )
    credentials.set(group.name, encodeCredentials(issued))
  }

  const imageName = spec.image ?? `${app}:${version}`
  const image = spec.repo === undefined ? imageName : `${spec.repo.replace(/\/+$/, "")}/${imageName}`
  const autoscaling = options.apply
    ? yield* Exec.run(kubectl, ["api-versions"]).pipe(
      fromExec,
      Effect.map(({ stdout }) =>
        stdout.split("\n").includes("autoscaling/v2") ? "autoscaling/v2" as const : "autoscaling/v2beta2" as const
      )
    )
    : "autoscaling/v2" as const
  const plan: Manifests.Plan = {
    app,
    deploymentId,
    version,
    namespace,
    image,
    serviceAccount: spec.serviceAccount,
    useHostNetwork: spec.useHostNetwork ?? false,
    configText: Fs.readFileSync(kube.appConfig, "utf8"),
    args: config.serviceweaver.args,
    groups,
    listeners,
    credentials,
    autoscaling
  }
  const manifests = Manifests.make(plan)
  yield* Either.mapLeft(
    Manifests.validate(manifests),
    (invalid) =>
      new KubeConfigError({
        file: kube.file,
        reason: `the ${invalid.object} it makes is not valid Kubernetes: ${invalid.reason}`
      })
  )

  // The image: the binary and the babysitter, each one file, on a base image with Node.
  const tool = yield* containerTool(options.containerTool)
  const context = yield* Effect.acquireRelease(
    Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "weaver-kube-image-"))),
    (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
  )
  yield* log(`Building image ${image} (${tool})...`)
  // Resolved from this module's location, wherever it was bundled to (the weaver CLI is one bundle).
  const babysitter = options.babysitter ?? createRequire(import.meta.url).resolve("@effect-weaver/deployer-kube/pod")
  yield* options.bundle(binary, Path.join(context, "app.mjs")).pipe(
    Effect.mapError((error) => new DeployError({ reason: `bundling ${binary}: ${error.message}` }))
  )
  yield* options.bundle(babysitter, Path.join(context, "babysitter.mjs")).pipe(
    Effect.mapError((error) => new DeployError({ reason: `bundling the babysitter ${babysitter}: ${error.message}` }))
  )
  Fs.writeFileSync(
    Path.join(context, "Dockerfile"),
    [
      `FROM ${spec.baseImage ?? "node:20-slim"}`,
      `COPY app.mjs babysitter.mjs /weaver/`,
      `ENTRYPOINT ["node", "--enable-source-maps", "${Manifests.paths.babysitter}"]`,
      ""
    ].join("\n")
  )
  yield* fromExec(Exec.run(tool, ["build", "--quiet", "-t", image, context]))
  if (spec.repo !== undefined) {
    yield* log(`Uploading image to ${image}...`)
    yield* fromExec(Exec.run(tool, ["push", image]))
  }

  const outDir = options.outDir ?? Os.tmpdir()
  const file = Path.join(outDir, `kube_${version}.yaml`)
  const header = [
    `Kubernetes manifests of ${app}, version ${version} (deployment ${deploymentId}), made by weaver kube deploy.`,
    "They hold the mutual TLS keys of the version's groups (in Secrets): keep this file private.",
    "",
    `Apply:   kubectl apply -f ${file}`,
    `Delete:  weaver kube delete --namespace ${namespace} ${version}`,
    `Logs:    kubectl logs -n ${namespace} -l ${Manifests.labels.app}=${app},${Manifests.labels.version}=${version} --all-containers`
  ].join("\n")
  yield* Effect.try({
    try: () => {
      Fs.mkdirSync(outDir, { recursive: true })
      Fs.writeFileSync(file, Manifests.toYaml(manifests, header), { mode: 0o600 })
    },
    catch: (e) => new DeployError({ reason: `cannot write ${file}: ${(e as Error).message}` })
  })
  yield* log(`Kubernetes manifests of ${app} version ${version} written to ${file}`)
  const deployed: Deployed = {
    app,
    deploymentId,
    version,
    namespace,
    image,
    file,
    groups: groups.map((g) => ({ name: g.name, components: g.components, deployment: g.objectName })),
    listeners: listeners.map((l) => ({ name: l.name, service: l.serviceName, port: l.port }))
  }
  if (!options.apply) return deployed
  return yield* applyVersion(deployed, manifests, { kubectl, log, timeoutSeconds: options.timeoutSeconds ?? 300 })
})

const applyVersion = Effect.fnUntraced(function*(
  deployed: Deployed,
  manifests: ReadonlyArray<Manifests.Manifest>,
  options: {
    readonly kubectl: string
    readonly log: (line: string) => Effect.Effect<void>
    readonly timeoutSeconds: number
  }
) {
  const { kubectl, log } = options
  const isListener = (m: Manifests.Manifest) =>
    m.object.kind === "Service" && deployed.listeners.some((l) => l.service === m.object.metadata?.name)
  const apply = (part: ReadonlyArray<Manifests.Manifest>) =>
    Exec.run(kubectl, ["apply", "-f", "-"], { input: Manifests.toYaml(part, "weaver kube deploy") }).pipe(
      fromExec,
      Effect.tap(({ stdout }) => log(stdout.trimEnd()))
    )
  yield* apply(manifests.filter((m) => !isListener(m)))
  yield* log(`Waiting for version ${deployed.version} to be available...`)
  for (const group of deployed.groups) {
    yield* fromExec(Exec.run(kubectl, [
      "rollout",
      "status",
      "-n",
      deployed.namespace,
      `deployment/${group.deployment}`,
      `--timeout=${options.timeoutSeconds}s`
    ]))
  }
  // Every group is ready: move the listeners to this version.
  const listenerManifests = manifests.filter(isListener)
  if (listenerManifests.length > 0) yield* apply(listenerManifests)
  const listeners = yield* Effect.forEach(
    deployed.listeners,
    (listener) =>
      Exec.run(kubectl, [
        "get",
        "service",
        "-n",
        deployed.namespace,
        listener.service,
        "-o",
        "jsonpath={.spec.clusterIP}"
      ]).pipe(
        fromExec,
        Effect.map(({ stdout }) => ({ ...listener, clusterIP: stdout.trim() }))
      )
  )
  for (const listener of listeners) {
    yield* log(
      `Listener ${listener.name} of version ${deployed.version}: Service ${listener.service}, ` +
        `http://${listener.clusterIP}:${listener.port} (inside the cluster: http://${listener.service}.${deployed.namespace}.svc:${listener.port})`
    )
  }
  return { ...deployed, listeners }
})

const versionKinds = "deployments,services,horizontalpodautoscalers,configmaps,secrets,roles,rolebindings"

/**
 * Deletes a version (its short id, as `weaver kube deploy` and
 * `weaver kube status` print it): every object labelled with it, listener
 * Services included if they still route to it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const remove = Effect.fnUntraced(function*(options: {
  readonly version: string
  readonly namespace?: string | undefined
  readonly kubectl?: string | undefined
}) {
  if (!/^[0-9a-f]{8}$/.test(options.version)) {
    return yield* new DeployError({
      reason: `"${options.version}" is not a version (8 hex digits, as weaver kube status shows)`
    })
  }
  const { stdout } = yield* Exec.run(options.kubectl ?? "kubectl", [
    "delete",
    versionKinds,
    "-n",
    options.namespace ?? "default",
    "-l",
    `${Manifests.labels.version}=${options.version}`,
    "--wait=true"
  ]).pipe(fromExec)
  if (stdout.trim() === "") {
    return yield* new DeployError({
      reason: `no version ${options.version} in namespace ${options.namespace ?? "default"}`
    })
  }
  return stdout.trimEnd()
})
