/**
 * `weaver single deploy` as users run it (the built CLI): every bad config of
 * fixtures/badConfigs.ts is refused with one line naming the file, the
 * section and the key, before anything runs; README.md's table lists each
 * case with its error; and an application outlives no deployer, even one
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
import { badConfigs, root, weaver } from "./fixtures/badConfigs.js"
import { refusesEveryBadConfig } from "./fixtures/cli.js"

describe.concurrent("weaver single deploy refuses a bad config before starting anything", () => {
  refusesEveryBadConfig("single")
})

it("README.md lists every bad config case with its error", () => {
  const readme = Fs.readFileSync(Path.join(root, "README.md"), "utf8")
  for (const badConfig of badConfigs) {
    const row = readme.split("\n").find((line) => line.startsWith(`| ${badConfig.name} |`))
    assert.isDefined(row, `no row "${badConfig.name}" in README.md's table of bad configs`)
    assert.include(row, `\`${badConfig.error}\``, `README.md's row "${badConfig.name}" does not show its error`)
  }
})

/** Polls `f` every 100 ms until it returns a value, for up to `seconds`. */
const waitUntil = <A>(what: string, seconds: number, f: () => A | undefined, output: () => string) =>
  Effect.suspend(() => {
    const value = f()
    return value === undefined ? Effect.fail("not yet" as const) : Effect.succeed(value)
  }).pipe(
    Effect.retry(Schedule.spaced("100 millis").pipe(Schedule.upTo(`${seconds} seconds`))),
    Effect.mapError(() => new Error(`no ${what} within ${seconds} s\n--- output\n${output()}`))
  )

it.scopedLive("no application outlives weaver single deploy killed with SIGKILL", () =>
  Effect.gen(function*() {
    const dir = yield* Effect.acquireRelease(
      Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "weaver-single-kill-"))),
      (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
    )
    Fs.writeFileSync(
      Path.join(dir, "weaver.toml"),
      `[serviceweaver]\nbinary = "${Path.join(root, "examples/hello/dist/hello.mjs")}"\n` +
        `[single]\nlisteners.hello = { address = "127.0.0.1:0" }\n`
    )
    let output = ""
    const deployer = yield* Effect.acquireRelease(
      Effect.sync(() =>
        ChildProcess.spawn(process.execPath, [weaver, "single", "deploy", "weaver.toml"], {
          cwd: dir,
          env: { ...process.env, NO_COLOR: "1", XDG_DATA_HOME: Path.join(dir, "data") },
          stdio: ["ignore", "pipe", "pipe"]
        })
      ),
      (child) => Effect.sync(() => child.exitCode === null && child.signalCode === null && child.kill("SIGKILL"))
    )
    deployer.stdout.setEncoding("utf8").on("data", (chunk: string) => (output += chunk))
    deployer.stderr.setEncoding("utf8").on("data", (chunk: string) => (output += chunk))
    const [, address] = yield* waitUntil(
      "listener",
      60,
      () => /hello listener available on (\S+)/.exec(output) ?? undefined,
      () => output
    )
    // The application registers itself in `weaver single status` with its own pid.
    const registry = Path.join(dir, "data", "serviceweaver", "single", "registry")
    const appPid = yield* waitUntil("registry entry", 10, () => {
      const files = Fs.existsSync(registry) ? Fs.readdirSync(registry).filter((f) => f.endsWith(".json")) : []
      return files.length === 0
        ? undefined
        : (JSON.parse(Fs.readFileSync(Path.join(registry, files[0]!), "utf8")) as Registry.Deployment).pid
    }, () => output)
    yield* Effect.addFinalizer(() => Effect.sync(() => Registry.isAlive(appPid) && process.kill(appPid, "SIGKILL")))
    assert.notStrictEqual(appPid, deployer.pid)
    const answer = yield* Effect.promise(() => fetch(`http://${address}/hello?name=x`).then((r) => r.text()))
    assert.strictEqual(answer, "Hello, x!\n")

    deployer.kill("SIGKILL")
    yield* waitUntil(`the exit of the application (pid ${appPid})`, 10, () =>
      Registry.isAlive(appPid) ? undefined : true, () =>
      output)
    assert.include(output, `the deployer (pid ${deployer.pid}) is gone; the application stops`)
  }), 90_000)
