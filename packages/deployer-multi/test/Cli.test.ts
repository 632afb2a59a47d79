/**
 * `weaver multi deploy` as users run it (the built CLI): every bad config of
 * deployer-single's fixtures/badConfigs.ts is refused with the same line as
 * `weaver single deploy` prints, before any replica starts; a deployment
 * whose main replicas all crash-loop ends with an error, exit code 1 and a
 * failed entry in `weaver multi status`; and no replica outlives the command
 * killed with SIGKILL.
 */
import { Registry } from "@effect-weaver/runtime"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { root, weaver } from "../../deployer-single/test/fixtures/badConfigs.js"
import {
  answeringCheck,
  noProcessIn,
  refusesEveryBadConfig,
  runWeaver
} from "../../deployer-single/test/fixtures/cli.js"

describe.concurrent("weaver multi deploy refuses a bad config before starting anything", () => {
  refusesEveryBadConfig("multi")
})

const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "weaver-multi-cli-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

/** Polls `f` every 100 ms until it returns a value, for up to `seconds`. */
const waitUntil = <A>(what: string, seconds: number, f: () => A | undefined, output: () => string) =>
  Effect.suspend(() => {
    const value = f()
    return value === undefined ? Effect.fail("not yet" as const) : Effect.succeed(value)
  }).pipe(
    Effect.retry(Schedule.spaced("100 millis").pipe(Schedule.upTo(`${seconds} seconds`))),
    Effect.mapError(() => new Error(`no ${what} within ${seconds} s\n--- output\n${output()}`))
  )

/** The deployment's registry entry in `dir`'s data directory, if written. */
const entryIn = (dir: string): Registry.Deployment | undefined => {
  const registry = Path.join(dir, "data", "serviceweaver", "multi", "registry")
  const files = Fs.existsSync(registry) ? Fs.readdirSync(registry).filter((f) => f.endsWith(".json")) : []
  return files.length === 0
    ? undefined
    : JSON.parse(Fs.readFileSync(Path.join(registry, files[0]!), "utf8")) as Registry.Deployment
}

it.scopedLive(
  "a deployment whose main replicas all crash-loop stops with an error and shows as failed",
  () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      // Accepts any config when checked, and fails at once when run: every replica crash-loops from the start.
      Fs.writeFileSync(
        Path.join(dir, "app.mjs"),
        answeringCheck(`console.error("cannot open the database")\nprocess.exit(3)\n`)
      )
      Fs.writeFileSync(
        Path.join(dir, "weaver.toml"),
        `[serviceweaver]\nname = "crashy"\nbinary = "app.mjs"\n[multi]\nlisteners.web = { address = "127.0.0.1:0" }\n`
      )
      const result = yield* runWeaver(["multi", "deploy", "weaver.toml"], dir)
      assert.strictEqual(result.code, 1, result.stdout + result.stderr)
      const error = result.stderr.trim().split("\n").at(-1)!
      assert.match(
        error,
        /^weaver: every replica of main crash-looped and was given up on \(the last: exit code 3\); nothing is left to serve the listeners, so deployment [0-9a-f]{8} of crashy stops\. See "weaver multi logs" for the replicas' output\.$/
      )
      assert.include(result.stderr, "cannot open the database")
      yield* noProcessIn(dir)

      const entry = entryIn(dir)
      assert.isDefined(entry?.failure, "the failed deployment's registry entry is kept")
      assert.strictEqual(entry!.components.find((c) => c.name === "main")?.givenUp, 2)
      const status = yield* runWeaver(["multi", "status"], dir)
      assert.strictEqual(status.code, 0, status.stderr)
      assert.include(status.stdout, "FAILED DEPLOYMENTS")
      assert.match(status.stdout, new RegExp(`│ crashy │ ${entry!.deploymentId} │ \\d+s ago │ every replica of main`))
      // Not among the live deployments: the DEPLOYMENTS table, before COMPONENTS, does not list it.
      assert.notInclude(status.stdout.slice(0, status.stdout.indexOf("COMPONENTS")), "crashy")
    }),
  90_000
)

it.scopedLive("no replica outlives weaver multi deploy killed with SIGKILL", () =>
  Effect.gen(function*() {
    const dir = yield* tempDir
    Fs.writeFileSync(
      Path.join(dir, "weaver.toml"),
      `[serviceweaver]\nname = "hello"\nbinary = "${Path.join(root, "examples/hello/dist/hello.mjs")}"\n` +
        `[multi]\nlisteners.hello = { address = "127.0.0.1:0" }\n`
    )
    let output = ""
    const deployer = yield* Effect.acquireRelease(
      Effect.sync(() =>
        ChildProcess.spawn(process.execPath, [weaver, "multi", "deploy", "weaver.toml"], {
          cwd: dir,
          env: {
            ...process.env,
            NO_COLOR: "1",
            XDG_DATA_HOME: Path.join(dir, "data"),
            SERVICEWEAVER_LOG_DIR: Path.join(dir, "logs")
          },
          stdio: ["ignore", "pipe", "pipe"]
        })
      ),
      (child) => Effect.sync(() => child.exitCode === null && child.signalCode === null && child.kill("SIGKILL"))
    )
    deployer.stdout.setEncoding("utf8").on("data", (chunk: string) => (output += chunk))
    deployer.stderr.setEncoding("utf8").on("data", (chunk: string) => (output += chunk))
    const [, address] = yield* waitUntil(
      "proxy",
      60,
      () => /proxy for listener hello on (\S+)/.exec(output) ?? undefined,
      () => output
    )
    const answer = yield* Effect.promise(() =>
      fetch(`http://${address}/hello?name=x`, { signal: AbortSignal.timeout(30_000) }).then((r) => r.text())
    )
    assert.strictEqual(answer, "Hello, x!\n", output)
    const pids = yield* waitUntil("4 replicas", 60, () => {
      const pids = [...new Set((entryIn(dir)?.components ?? []).flatMap((c) => c.pids))]
      return pids.length === 4 ? pids : undefined
    }, () => output)
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        for (const pid of pids) if (Registry.isAlive(pid)) process.kill(pid, "SIGKILL")
      })
    )

    deployer.kill("SIGKILL")
    yield* waitUntil(
      `the exit of replicas ${pids.join(", ")}`,
      20,
      () => pids.every((pid) => !Registry.isAlive(pid)) ? true : undefined,
      () => output
    )
  }), 120_000)
