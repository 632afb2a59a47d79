/**
 * The `weaver` command tree: `weaver single deploy|status` and
 * `weaver version`, on `@effect/cli`.
 *
 * @since 0.1.0
 */
import * as Args from "@effect/cli/Args"
import type * as CliApp from "@effect/cli/CliApp"
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as ValidationError from "@effect/cli/ValidationError"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Deploy from "./Deploy.js"
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

const setExitCode = (code: number) =>
  Effect.sync(() => {
    process.exitCode = code
  })

const deploy = Command.make(
  "deploy",
  {
    config: Args.file({ name: "weaver.toml" }).pipe(
      Args.withDescription("The application's config file"),
      Args.mapEffect((path) =>
        path.startsWith("-") ? Effect.fail(HelpDoc.p(`Received unknown flag: '${path}'`)) : Effect.succeed(path)
      )
    )
  },
  ({ config }) =>
    // Once the app runs, a signal is forwarded to it and we wait for its exit code.
    Effect.uninterruptibleMask((restore) =>
      restore(Deploy.prepare(config)).pipe(Effect.flatMap(Deploy.spawn), Effect.flatMap(setExitCode))
    )
).pipe(Command.withDescription("Deploy a Service Weaver app in a single process"))

const status = Command.make("status", {}, () => Status.status("single")).pipe(
  Command.withDescription("Show the status of Service Weaver applications")
)

const single = Command.make("single").pipe(
  Command.withDescription("Deploy and inspect applications running in a single process"),
  Command.withSubcommands([deploy, status])
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
  Command.withSubcommands([single, versionCommand])
)

const usages: ReadonlyArray<{ readonly path: ReadonlyArray<string>; readonly line: string }> = [
  { path: ["single", "deploy"], line: "weaver single deploy <weaver.toml>" },
  { path: ["single", "status"], line: "weaver single status" },
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
