/**
 * The `weaver` command tree: `weaver single deploy|status|metrics|profile|dashboard|purge`,
 * `weaver multi deploy|status|logs|metrics|profile|dashboard|purge`, `weaver kube deploy|status|delete`,
 * `weaver bundle` and `weaver version`,
 * on `@effect/cli`.
 *
 * @since 0.1.0
 */
import * as MultiDeployer from "@effect-weaver/deployer-multi/Deployer"
import * as SingleDeployer from "@effect-weaver/deployer-single/Deployer"
import * as Args from "@effect/cli/Args"
import type * as CliApp from "@effect/cli/CliApp"
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Bundle from "./Bundle.js"
import * as Dashboard from "./dashboard/Server.js"
import * as Kube from "./Kube.js"
import * as Logs from "./Logs.js"
import * as Metrics from "./Metrics.js"
import * as Profile from "./Profile.js"
import * as Purge from "./Purge.js"
import * as Status from "./Status.js"

/**
 * The version of this package, as `weaver version` prints it.
 *
 * @since 0.1.0
 * @category accessors
 */
export const version: string = (JSON.parse(
  Fs.readFileSync(new URL("../package.json", import.meta.url), "utf8")
) as { readonly version: string }).version

/**
 * What `weaver version` prints: `weaver <version> <platform>/<arch>`.
 *
 * @since 0.1.0
 * @category accessors
 */
export const versionLine = `weaver ${version} ${process.platform}/${process.arch}`

// @effect/cli takes an unknown flag in an argument's place for the argument itself.
const notAFlag = Args.mapEffect((arg: string) =>
  arg.startsWith("-") ? Effect.fail(HelpDoc.p(`Received unknown flag: '${arg}'`)) : Effect.succeed(arg)
)

const configArg = Args.file({ name: "weaver.toml" }).pipe(
  Args.withDescription("The application's config file"),
  notAFlag
)

const setExitCode = (code: number) =>
  Effect.sync(() => {
    process.exitCode = code
  })

const deploy = Command.make(
  "deploy",
  {
    config: configArg
  },
  ({ config }) =>
    // Once the app runs, a signal is forwarded to it and we wait for its exit code.
    Effect.uninterruptibleMask((restore) =>
      restore(SingleDeployer.prepare(config)).pipe(Effect.flatMap(SingleDeployer.spawn), Effect.flatMap(setExitCode))
    )
).pipe(Command.withDescription("Deploy a Service Weaver app in a single process"))

const status = Command.make("status", {}, () => Status.status("single")).pipe(
  Command.withDescription("Show the status of Service Weaver applications")
)

const purge = (tool: "single" | "multi") =>
  Command.make(
    "purge",
    {
      force: Options.boolean("force").pipe(Options.withDescription("Delete without asking for confirmation"))
    },
    ({ force }) => Purge.purge(tool, force)
  ).pipe(Command.withDescription(`Delete the logs and data of applications deployed with weaver ${tool}`))

const metricsCommand = (tool: "single" | "multi") =>
  Command.make(
    "metrics",
    {
      regex: Args.text({ name: "regex" }).pipe(
        Args.withDescription("Show only the metrics whose name matches this regular expression"),
        Args.optional
      )
    },
    ({ regex }) => Metrics.metrics(tool, regex._tag === "Some" ? regex.value : undefined)
  ).pipe(Command.withDescription("Show the metrics of Service Weaver applications, in Prometheus text format"))

const profileCommand = (tool: "single" | "multi") =>
  Command.make(
    "profile",
    {
      type: Options.text("type").pipe(
        Options.withDefault("cpu"),
        Options.withDescription("The kind of profile: cpu or heap")
      ),
      duration: Options.text("duration").pipe(
        Options.withDefault("30s"),
        Options.withDescription("How long to profile, as a Go duration: 30s, 1m, 500ms")
      ),
      deployment: Args.text({ name: "deployment" }).pipe(
        Args.withDescription("The deployment's id, or a unique prefix of it")
      )
    },
    (options) => Profile.profile(tool, options)
  ).pipe(Command.withDescription("Profile a running deployment and print the path of the pprof file written"))

const dashboardCommand = (tool: "single" | "multi") =>
  Command.make(
    "dashboard",
    {
      host: Options.text("host").pipe(
        Options.withDefault("127.0.0.1"),
        Options.withDescription("The address to listen on")
      ),
      port: Options.integer("port").pipe(
        Options.withDefault(0),
        Options.withDescription("The port; 0 picks a free one")
      )
    },
    (options) => Dashboard.serve(tool, options)
  ).pipe(Command.withDescription(`Serve a web dashboard of the applications deployed with weaver ${tool}`))

const single = Command.make("single").pipe(
  Command.withDescription("Deploy and inspect applications running in a single process"),
  Command.withSubcommands([
    deploy,
    status,
    metricsCommand("single"),
    profileCommand("single"),
    dashboardCommand("single"),
    purge("single")
  ])
)

const logs = Command.make(
  "logs",
  {
    query: Args.text({ name: "query" }).pipe(
      Args.withDescription(
        `A query selecting entries, e.g. 'app == "hello" && level == "error"', 'msg.contains("x")', ` +
          `'attrs["k"] == "v"', 'time > timestamp("2024-01-02T15:04:05Z")'. Fields: app, version, full_version, ` +
          `component, full_component, node, full_node, time, level, source, msg, attrs. Empty: every entry.`
      ),
      notAFlag,
      Args.withDefault("")
    ),
    follow: Options.boolean("follow").pipe(Options.withDescription("Keep printing new entries, like tail -f")),
    format: Options.choice("format", ["pretty", "json"] as const).pipe(
      Options.withDefault("pretty" as const),
      Options.withDescription("pretty: Service Weaver's log lines; json: one JSON object per line")
    ),
    system: Options.boolean("system").pipe(
      Options.withDescription("Also print the internal entries of weavelets and deployers")
    )
  },
  (options) => Logs.logs("multi", options)
).pipe(Command.withDescription("Print, follow and filter the logs of multiprocess deployments"))

const multiDeploy = Command.make(
  "deploy",
  {
    config: configArg
  },
  // Runs until interrupted (Ctrl-C, SIGTERM); every replica is stopped before the command returns.
  ({ config }) => MultiDeployer.deploy(config)
).pipe(Command.withDescription("Deploy a Service Weaver app across multiple processes"))

const multiStatus = Command.make("status", {}, () => Status.status("multi")).pipe(
  Command.withDescription("Show the status of Service Weaver applications deployed with weaver multi")
)

const multi = Command.make("multi").pipe(
  Command.withDescription("Deploy and inspect applications running in multiple processes"),
  Command.withSubcommands([
    multiDeploy,
    multiStatus,
    logs,
    metricsCommand("multi"),
    profileCommand("multi"),
    dashboardCommand("multi"),
    purge("multi")
  ])
)

const bundle = Command.make(
  "bundle",
  {
    entry: Args.file({ name: "entry" }).pipe(
      Args.withDescription("The application's compiled entry, e.g. dist/main.js"),
      notAFlag
    ),
    out: Options.file("out").pipe(
      Options.withDescription("The bundle to write (default: <entry>.bundle.mjs next to the entry)"),
      Options.optional
    ),
    external: Options.text("external").pipe(
      Options.withDescription("A package to import from node_modules at run time instead of bundling it"),
      Options.repeated
    ),
    bundleOnUse: Options.boolean("bundle-on-use").pipe(
      Options.withDescription(
        "Carry the packages otherwise loaded from node_modules on first use (undici, ws) in the bundle; " +
          "they still run only on first use"
      )
    )
  },
  ({ bundleOnUse, entry, external, out }) =>
    Bundle.make({ entry, out: out._tag === "Some" ? out.value : undefined, external, bundleOnUse }).pipe(
      Effect.flatMap((bundled) =>
        Console.log(
          [
            ...bundled.warnings,
            `bundled ${entry} and ${bundled.inputs - 1} imported files into ${
              Path.relative(process.cwd(), bundled.out)
            } (${(bundled.bytes / 2 ** 20).toFixed(1)} MiB)`
          ].join("\n")
        )
      )
    )
).pipe(
  Command.withDescription(
    "Bundle an application's entry into one file, to use as its binary in weaver.toml: it starts much faster"
  )
)

const versionCommand = Command.make("version", {}, () => Console.log(versionLine)).pipe(
  Command.withDescription("Show weaver version")
)

/**
 * The `weaver` command.
 *
 * @since 0.1.0
 * @category runtime
 */
export const command = Command.make("weaver").pipe(
  Command.withDescription("Deploy and manage Service Weaver applications"),
  Command.withSubcommands([single, multi, Kube.command, bundle, versionCommand])
)

const usages: ReadonlyArray<{ readonly path: ReadonlyArray<string>; readonly line: string }> = [
  { path: ["single", "deploy"], line: "weaver single deploy <weaver.toml>" },
  { path: ["single", "status"], line: "weaver single status" },
  { path: ["single", "metrics"], line: "weaver single metrics [regex]" },
  { path: ["single", "profile"], line: "weaver single profile [--type=cpu|heap] [--duration=30s] <deployment>" },
  { path: ["single", "dashboard"], line: "weaver single dashboard [--host=127.0.0.1] [--port=0]" },
  { path: ["single", "purge"], line: "weaver single purge [--force]" },
  { path: ["multi", "deploy"], line: "weaver multi deploy <weaver.toml>" },
  { path: ["multi", "status"], line: "weaver multi status" },
  { path: ["multi", "logs"], line: "weaver multi logs [--follow] [--format=pretty|json] [--system] [query]" },
  { path: ["multi", "metrics"], line: "weaver multi metrics [regex]" },
  { path: ["multi", "profile"], line: "weaver multi profile [--type=cpu|heap] [--duration=30s] <deployment>" },
  { path: ["multi", "dashboard"], line: "weaver multi dashboard [--host=127.0.0.1] [--port=0]" },
  { path: ["multi", "purge"], line: "weaver multi purge [--force]" },
  { path: ["kube", "deploy"], line: "weaver kube deploy [--apply] [--out=<dir>] <config.yaml>" },
  { path: ["kube", "status"], line: "weaver kube status [--namespace=<namespace>]" },
  { path: ["kube", "delete"], line: "weaver kube delete [--namespace=<namespace>] <version>" },
  { path: ["bundle"], line: "weaver bundle [--out=<file>] [--external=<package>]... [--bundle-on-use] <entry>" },
  { path: ["version"], line: "weaver version" }
]

const startsWith = (path: ReadonlyArray<string>, prefix: ReadonlyArray<string>) =>
  prefix.every((word, i) => path[i] === word)

/**
 * The usage text printed after a command-line mistake, for the deepest
 * command named in `args` (the arguments after `weaver`), with a line naming
 * an unknown subcommand.
 *
 * @since 0.1.0
 * @category combinators
 */
export const usage = (args: ReadonlyArray<string>): string => {
  const words = args.filter((arg) => !arg.startsWith("-"))
  const path: Array<string> = []
  for (const word of words) {
    if (!usages.some((u) => startsWith(u.path, [...path, word]))) break
    path.push(word)
  }
  const lines = usages.filter((u) => startsWith(u.path, path))
  const name = ["weaver", ...path].join(" ")
  const isLeaf = lines.length === 1 && lines[0]!.path.length === path.length
  const unknown = words[path.length]
  return [
    ...(!isLeaf && unknown !== undefined ? [`${name}: unknown command "${unknown}"`] : []),
    "Usage:",
    ...lines.map((u) => `  ${u.line}`),
    `Run "${name} --help" for more information.`
  ].join("\n")
}

const cli = Command.run(command, { name: "weaver", version })

/**
 * Runs the `weaver` command on `argv` (`process.argv`: the node binary and
 * script come first). Mistakes are reported on standard error and set the
 * process exit code to 1: @effect/cli prints argument errors itself, and
 * config and deploy errors print their message. `weaver single deploy` sets
 * the exit code of the application it ran.
 *
 * @since 0.1.0
 * @category runtime
 */
export const run = (argv: ReadonlyArray<string>): Effect.Effect<void, never, CliApp.CliApp.Environment> =>
  cli(argv).pipe(
    Effect.catchAll((error) =>
      ValidationError.isValidationError(error)
        ? Effect.zipRight(Console.error(usage(argv.slice(2))), setExitCode(1))
        : Effect.zipRight(Console.error(`weaver: ${error.message}`), setExitCode(1))
    )
  )
