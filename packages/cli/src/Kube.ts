/**
 * `weaver kube deploy|status|delete`, and {@link tool}: the same commands
 * as a program of your own that decides where the pods' logs, metrics and
 * traces go (Service Weaver's `tool.Run("customkube", Plugins{...})`).
 *
 * @since 0.1.0
 */
import { Babysitter, Deployer, Status as KubeStatus } from "@effect-weaver/deployer-kube"
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Bundle from "./Bundle.js"
import { age, box } from "./Status.js"

const bundle = (entry: string, out: string) => Effect.asVoid(Bundle.make({ entry, out, bundleOnUse: true }))

const namespaceOption = Options.text("namespace").pipe(
  Options.withAlias("n"),
  Options.withDescription("The Kubernetes namespace (default: all for status, `default` for delete)"),
  Options.optional
)

/**
 * Renders `weaver kube status`: the groups of every version with their
 * pods, and the listeners with the version each routes to.
 *
 * @since 0.1.0
 * @category combinators
 */
export const render = (status: KubeStatus.Status, now: number): string => {
  const groups = [...status.groups].sort((a, b) =>
    a.app < b.app
      ? -1
      : a.app > b.app
      ? 1
      : a.created < b.created
      ? -1
      : a.created > b.created
      ? 1
      : a.group < b.group
      ? -1
      : 1
  )
  return [
    box(
      "VERSIONS",
      ["APP", "VERSION", "NAMESPACE", "GROUP", "READY", "PODS", "AGE"],
      groups.map((g) => [
        g.app,
        g.version,
        g.namespace,
        g.group,
        `${g.ready}/${g.replicas}`,
        g.pods.map((p) => `${p.name} ${p.ip || "-"} ${p.ready ? "ready" : p.phase}`).join("\n") || "-",
        age(Date.parse(g.created), now)
      ])
    ),
    box(
      "LISTENERS",
      ["APP", "LISTENER", "SERVICE", "TYPE", "ADDRESS", "VERSION"],
      status.listeners.map((
        l
      ) => [l.app, l.listener, `${l.namespace}/${l.service}`, l.type, `${l.clusterIP}:${l.port}`, l.version])
    )
  ].join("\n")
}

const commands = (babysitter: string | undefined) => {
  const deploy = Command.make(
    "deploy",
    {
      apply: Options.boolean("apply").pipe(
        Options.withDescription("Apply the manifests with kubectl and wait until the new version serves")
      ),
      out: Options.directory("out").pipe(
        Options.withDescription("Where to write the manifests (default: the system's temporary directory)"),
        Options.optional
      ),
      config: Args.file({ name: "config.yaml", exists: "yes" }).pipe(Args.withDescription("The kube config"))
    },
    ({ apply, config, out }) =>
      Deployer.deploy({
        configFile: config,
        apply,
        bundle,
        babysitter,
        outDir: out._tag === "Some" ? out.value : undefined
      }).pipe(Effect.scoped, Effect.asVoid)
  ).pipe(Command.withDescription("Build a version's image and manifests, and with --apply run it on Kubernetes"))

  const status = Command.make(
    "status",
    { namespace: namespaceOption },
    ({ namespace }) =>
      KubeStatus.read({ namespace: namespace._tag === "Some" ? namespace.value : undefined }).pipe(
        Effect.flatMap((status) => Console.log(render(status, Date.now())))
      )
  ).pipe(Command.withDescription("Show the versions, groups, pods and listeners deployed with weaver kube"))

  const remove = Command.make(
    "delete",
    {
      namespace: namespaceOption,
      version: Args.text({ name: "version" }).pipe(Args.withDescription("The version to delete (8 hex digits)"))
    },
    ({ namespace, version }) =>
      Deployer.remove({ version, namespace: namespace._tag === "Some" ? namespace.value : undefined }).pipe(
        Effect.flatMap(Console.log)
      )
  ).pipe(Command.withDescription("Delete a version deployed with weaver kube deploy"))

  return [deploy, status, remove] as const
}

/**
 * `weaver kube`.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make("kube").pipe(
  Command.withDescription("Deploy and inspect applications on Kubernetes"),
  Command.withSubcommands(commands(undefined))
)

/**
 * A kube deployer of your own, with {@link Babysitter.Plugins} deciding
 * where telemetry goes: call it from a program's entry. Run as a command
 * (`node customkube.js deploy --apply config.yaml`, also `status` and
 * `delete`) it deploys with this very program as what pods run; started in
 * a pod, it is the babysitter with your plugins.
 *
 * @since 0.1.0
 * @category runtime
 */
export const tool = (options: { readonly name: string; readonly plugins?: Babysitter.Plugins | undefined }): void => {
  if (Babysitter.requested()) return Babysitter.run(options.plugins)
  const self = process.argv[1]!
  const cli = Command.run(
    Command.make(options.name).pipe(Command.withSubcommands(commands(self))),
    { name: options.name, version: "0.1.0" }
  )
  cli(process.argv).pipe(
    Effect.catchAll((error) =>
      Effect.zipRight(
        // @effect/cli prints argument errors itself.
        ValidationError.isValidationError(error) ? Effect.void : Console.error(`${options.name}: ${error.message}`),
        Effect.sync(() => process.exitCode = 1)
      )
    ),
    Effect.provide(NodeContext.layer),
    NodeRuntime.runMain
  )
}
