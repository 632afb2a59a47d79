import { ConfigCheck, Registry } from "@effect-weaver/runtime"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import * as Cli from "../src/Cli.js"
import * as Status from "../src/Status.js"
import { closed, root, run, start, tempDir, waitFor } from "./utils/cli.js"

const deployment = (overrides: Partial<Registry.Deployment> = {}): Registry.Deployment => ({
  app: "hello",
  deploymentId: "5c9753e4-c476-4f93-97a0-0ea599184178",
  tool: "single",
  pid: 691625,
  startedAt: 1_000,
  components: [{ name: "main", pids: [691625] }, { name: "hello/Reverser", pids: [691625] }],
  listeners: [{ name: "hello", address: "127.0.0.1:12345", kind: "http" }],
  ...overrides
})

describe("Status.render", () => {
  it("draws Service Weaver's three tables", () => {
    assert.strictEqual(
      Status.render([deployment()], 2_500),
      `╭────────────────────────────────────────────────────╮
│ DEPLOYMENTS                                        │
├───────┬──────────────────────────────────────┬─────┤
│ APP   │ DEPLOYMENT                           │ AGE │
├───────┼──────────────────────────────────────┼─────┤
│ hello │ 5c9753e4-c476-4f93-97a0-0ea599184178 │ 1s  │
╰───────┴──────────────────────────────────────┴─────╯
╭────────────────────────────────────────────────────╮
│ COMPONENTS                                         │
├───────┬────────────┬────────────────┬──────────────┤
│ APP   │ DEPLOYMENT │ COMPONENT      │ REPLICA PIDS │
├───────┼────────────┼────────────────┼──────────────┤
│ hello │ 5c9753e4   │ main           │ 691625       │
│ hello │ 5c9753e4   │ hello.Reverser │ 691625       │
╰───────┴────────────┴────────────────┴──────────────╯
╭────────────────────────────────────────────────────────╮
│ LISTENERS                                              │
├───────┬────────────┬──────────┬──────┬─────────────────┤
│ APP   │ DEPLOYMENT │ LISTENER │ KIND │ ADDRESS         │
├───────┼────────────┼──────────┼──────┼─────────────────┤
│ hello │ 5c9753e4   │ hello    │ http │ 127.0.0.1:12345 │
╰───────┴────────────┴──────────┴──────┴─────────────────╯
`
    )
  })

  it("prints header-only tables when nothing is deployed", () => {
    assert.strictEqual(
      Status.render([], 0),
      `╭────────────────────────╮
│ DEPLOYMENTS            │
├─────┬────────────┬─────┤
│ APP │ DEPLOYMENT │ AGE │
╰─────┴────────────┴─────╯
╭─────────────────────────────────────────────╮
│ COMPONENTS                                  │
├─────┬────────────┬───────────┬──────────────┤
│ APP │ DEPLOYMENT │ COMPONENT │ REPLICA PIDS │
╰─────┴────────────┴───────────┴──────────────╯
╭──────────────────────────────────────────────╮
│ LISTENERS                                    │
├─────┬────────────┬──────────┬──────┬─────────┤
│ APP │ DEPLOYMENT │ LISTENER │ KIND │ ADDRESS │
╰─────┴────────────┴──────────┴──────┴─────────╯
`
    )
  })

  it("orders deployments by app then age, and lists replica pids sorted", () => {
    const text = Status.render([
      deployment({ app: "zoo", deploymentId: "zzzzzzzz-1", startedAt: 0 }),
      deployment({ deploymentId: "bbbbbbbb-2", startedAt: 500 }),
      deployment({
        deploymentId: "aaaaaaaa-3",
        startedAt: 100,
        components: [{ name: "shop/cart/Cart", pids: [30, 4, 200] }]
      })
    ], 3_600_000)
    const ids = [...text.matchAll(/│ (\w{8})-\d /g)].map((m) => m[1])
    assert.deepStrictEqual(ids, ["aaaaaaaa", "bbbbbbbb", "zzzzzzzz"])
    assert.include(text, "│ cart.Cart      │ 4 30 200     │")
    assert.include(text, "│ 59m │")
  })

  it("counts replicas given up on, and draws a table of failed deployments with their error", () => {
    const text = Status.render(
      [deployment({ components: [{ name: "hello/Reverser", pids: [12, 7], givenUp: 1 }] })],
      125_000,
      [deployment({
        deploymentId: "99999999-failed",
        failure: { reason: "every replica of main crash-looped and was given up on", at: 5_000 }
      })]
    )
    assert.include(text, "│ hello.Reverser │ 7 12 (1 given up) │")
    assert.include(
      text,
      `╭───────────────────────────────────────────────────────────────────────────────────────────╮
│ FAILED DEPLOYMENTS                                                                        │
├───────┬─────────────────┬────────┬────────────────────────────────────────────────────────┤
│ APP   │ DEPLOYMENT      │ FAILED │ ERROR                                                  │
├───────┼─────────────────┼────────┼────────────────────────────────────────────────────────┤
│ hello │ 99999999-failed │ 2m ago │ every replica of main crash-looped and was given up on │
╰───────┴─────────────────┴────────┴────────────────────────────────────────────────────────╯
`
    )
  })

  it("formats ages in the largest whole unit", () => {
    assert.deepStrictEqual(
      [0, 59_999, 60_000, 3_599_999, 3_600_000, 86_400_000 * 3].map((ms) => Status.age(0, ms)),
      ["0s", "59s", "1m", "59m", "1h", "3d"]
    )
  })
})

const deadPid = Effect.async<number>((resume) => {
  const child = ChildProcess.spawn(process.execPath, ["-e", ""], { stdio: "ignore" })
  child.once("exit", () => resume(Effect.succeed(child.pid!)))
})

/** Points the registry at `dir` for the scope. */
const withRegistryIn = (dir: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const previous = process.env.XDG_DATA_HOME
      process.env.XDG_DATA_HOME = dir
      return previous
    }),
    (previous) =>
      Effect.sync(() => {
        if (previous === undefined) delete process.env.XDG_DATA_HOME
        else process.env.XDG_DATA_HOME = previous
      })
  )

describe("Status.snapshot", () => {
  it.scoped("lists live deployments and drops entries whose process is gone", () =>
    Effect.gen(function*() {
      yield* withRegistryIn(yield* tempDir)
      const pid = yield* deadPid
      const dir = Registry.directory("single")
      yield* Effect.promise(() => Fs.mkdir(dir, { recursive: true }))
      const alive = deployment({ deploymentId: "11111111-alive", pid: process.pid })
      const dead = deployment({ deploymentId: "22222222-dead", pid })
      for (const d of [alive, dead]) {
        yield* Effect.promise(() =>
          Fs.writeFile(Path.join(dir, `${d.deploymentId}.registration.json`), JSON.stringify(d))
        )
      }
      const text = yield* Status.snapshot("single")
      assert.include(text, "11111111-alive")
      assert.notInclude(text, "22222222")
      const files = yield* Effect.promise(() => Fs.readdir(dir))
      assert.deepStrictEqual(files, ["11111111-alive.registration.json"])
    }))

  it.scoped("keeps a failed deployment whose process is gone and shows it as failed, not as live", () =>
    Effect.gen(function*() {
      yield* withRegistryIn(yield* tempDir)
      const pid = yield* deadPid
      const dir = Registry.directory("multi")
      yield* Effect.promise(() => Fs.mkdir(dir, { recursive: true }))
      const failed = deployment({
        tool: "multi",
        deploymentId: "33333333-failed",
        pid,
        failure: { reason: "every replica of main crash-looped", at: Date.now() }
      })
      yield* Effect.promise(() =>
        Fs.writeFile(Path.join(dir, `${failed.deploymentId}.registration.json`), JSON.stringify(failed))
      )
      const text = yield* Status.snapshot("multi")
      assert.match(text, /│ hello │ 33333333-failed │ \d+s ago │ every replica of main crash-looped │/)
      assert.notInclude(text.slice(0, text.indexOf("COMPONENTS")), "33333333")
      assert.deepStrictEqual(yield* Registry.list("multi"), [])
      assert.deepStrictEqual(yield* Effect.promise(() => Fs.readdir(dir)), ["33333333-failed.registration.json"])
    }))
})

describe("Cli.usage", () => {
  it("names an unknown subcommand and lists the commands under the deepest one named", () => {
    assert.strictEqual(
      Cli.usage(["single", "bogus"]),
      `weaver single: unknown command "bogus"
Usage:
  weaver single deploy <weaver.toml>
  weaver single status
  weaver single metrics [regex]
  weaver single profile [--type=cpu|heap] [--duration=30s] <deployment>
  weaver single dashboard [--host=127.0.0.1] [--port=0]
  weaver single purge [--force]
Run "weaver single --help" for more information.`
    )
    assert.strictEqual(
      Cli.usage(["single", "deploy", "--bogus"]),
      `Usage:
  weaver single deploy <weaver.toml>
Run "weaver single deploy --help" for more information.`
    )
  })
})

const helloToml = Path.join(root, "examples/hello/weaver.toml")
const helloMain = Path.join(root, "examples/hello/dist/main.js")

const writeConfig = (dir: string, text: string) =>
  Effect.promise(async () => {
    const file = Path.join(dir, "weaver.toml")
    await Fs.writeFile(file, text)
    return file
  })

const killRegistered = (dir: string) =>
  Effect.promise(async () => {
    const registry = Path.join(dir, "serviceweaver/single/registry")
    for (const name of await Fs.readdir(registry).catch(() => [])) {
      const text = await Fs.readFile(Path.join(registry, name), "utf8").catch(() => "{}")
      const pid = (JSON.parse(text) as { readonly pid?: number }).pid
      if (pid !== undefined && pid !== process.pid && Registry.isAlive(pid)) process.kill(pid, "SIGKILL")
    }
  })

describe("weaver (process)", () => {
  it.scoped("version prints the version, platform and architecture", () =>
    Effect.gen(function*() {
      const result = yield* run(["version"], { XDG_DATA_HOME: yield* tempDir })
      assert.strictEqual(result.code, 0)
      assert.strictEqual(result.stdout, `weaver ${Cli.version} ${process.platform}/${process.arch}\n`)
      assert.match(Cli.version, /^\d+\.\d+\.\d+/)
    }))

  it.scoped("single --help lists deploy and status", () =>
    Effect.gen(function*() {
      const result = yield* run(["single", "--help"], { XDG_DATA_HOME: yield* tempDir })
      assert.strictEqual(result.code, 0)
      const text = result.stdout.replace(/\x1b\[[0-9;]*m/g, "")
      assert.match(text, /COMMANDS\s+- deploy <weaver\.toml> +Deploy a Service Weaver app/)
      assert.match(text, /- status +Show the status of Service Weaver applications/)
    }))

  it.scoped("single deploy without a config prints usage and fails", () =>
    Effect.gen(function*() {
      const result = yield* run(["single", "deploy"], { XDG_DATA_HOME: yield* tempDir })
      assert.strictEqual(result.code, 1)
      assert.include(result.stderr, "Missing argument <weaver.toml>")
      assert.include(result.stderr, "Usage:\n  weaver single deploy <weaver.toml>")
    }))

  it.scoped("an unknown subcommand or flag prints usage and fails", () =>
    Effect.gen(function*() {
      const env = { XDG_DATA_HOME: yield* tempDir }
      const [bogus, flag] = yield* Effect.all([
        run(["single", "bogus"], env),
        run(["single", "status", "--bogus"], env)
      ], { concurrency: 2 })
      assert.strictEqual(bogus.code, 1)
      assert.include(bogus.stderr, `weaver single: unknown command "bogus"`)
      assert.include(bogus.stderr, "  weaver single status")
      assert.strictEqual(flag.code, 1)
      assert.include(flag.stderr, "'--bogus'")
      assert.include(flag.stderr, "Usage:\n  weaver single status")
    }))

  // What the single deployer checks and passes to the application is tested in packages/deployer-single;
  // here, how the command reports it.
  it.scoped("single deploy prints a config mistake, runs nothing and exits with 1", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const unknownKey = yield* writeConfig(
        dir,
        `[serviceweaver]\nname = "hello"\nbinary = "./main.js"\nbinray = "./main.js"\n`
      )
      const bad = yield* run(["single", "deploy", unknownKey], { XDG_DATA_HOME: dir })
      assert.strictEqual(bad.code, 1)
      assert.include(bad.stderr, `weaver: ${unknownKey}: [serviceweaver] key "binray": unknown key`)
      assert.strictEqual(bad.stdout, "")
    }))

  it.scoped("single deploy runs the binary with this terminal's output and exits with its code", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      // Answers the config check by hand (as Weaver.run would), then prints what it was given.
      const accepted = `${ConfigCheck.marker}{"_tag":"ConfigAccepted","components":[],"listeners":[]}\n`
      yield* Effect.promise(() =>
        Fs.writeFile(
          Path.join(dir, "app.mjs"),
          `if (process.env.${ConfigCheck.env}) {\n  process.stdout.write(${
            JSON.stringify(accepted)
          })\n  process.exit(0)\n}\n` +
            `console.log(JSON.stringify({ config: process.env.SERVICEWEAVER_CONFIG, args: process.argv.slice(2) }))\nprocess.exit(7)\n`
        )
      )
      const config = yield* writeConfig(dir, `[serviceweaver]\nbinary = "app.mjs"\nargs = ["--flag", "x y"]\n`)
      const relative = Path.relative(root, config)
      const result = yield* run(["single", "deploy", relative], { XDG_DATA_HOME: dir })
      assert.strictEqual(result.code, 7, result.stderr)
      assert.deepStrictEqual(JSON.parse(result.stdout), { config, args: ["--flag", "x y"] })
    }))

  it.scoped(
    "single deploy runs hello; status shows it; SIGTERM stops it and unregisters it",
    () =>
      Effect.gen(function*() {
        const built = yield* Effect.promise(() => Fs.access(helloMain).then(() => true, () => false))
        assert.isTrue(built, `${helloMain} is missing: run "npx tsc -b tsconfig.build.json" first`)
        const dir = yield* tempDir
        const env = { XDG_DATA_HOME: dir }
        const toml = (yield* Effect.promise(() => Fs.readFile(helloToml, "utf8")))
          .replace(/^binary = .*$/m, `binary = ${JSON.stringify(helloMain)}`)
          .replaceAll("localhost:12345", "localhost:0")
        const config = yield* writeConfig(dir, toml)
        // The app runs in its own process group: if the test fails midway, kill it by the pid it registered.
        yield* Effect.addFinalizer(() => killRegistered(dir))

        const deploy = yield* start(["single", "deploy", config], env)
        const [, address] = yield* waitFor(deploy, /hello listener available on (\S+)\n/)
        const [, deploymentId] = yield* waitFor(deploy, /deployment : (\S+)/)
        const response = yield* Effect.promise(() => fetch(`http://${address}/hello?name=Weaver`))
        assert.strictEqual(response.status, 200)
        assert.strictEqual(yield* Effect.promise(() => response.text()), "Hello, revaeW!\n")

        const status = yield* run(["single", "status"], env)
        assert.strictEqual(status.code, 0, status.stderr)
        const short = deploymentId!.slice(0, 8)
        assert.match(status.stdout, new RegExp(`│ hello │ ${deploymentId} │ \\d+s +│`))
        const pids = ["main", "hello.Reverser"].map((component) => {
          const row = status.stdout.match(
            new RegExp(`│ hello │ ${short} +│ ${component.replace(".", "\\.")} +│ (\\d+) +│`)
          )
          assert.isNotNull(row, `no ${component} row in\n${status.stdout}`)
          return Number(row![1])
        })
        assert.strictEqual(pids[0], pids[1])
        assert.notStrictEqual(pids[0], deploy.process.pid)
        assert.match(
          status.stdout,
          new RegExp(`│ hello │ ${short} +│ hello +│ http +│ ${address!.replace(/\./g, "\\.")} +│`)
        )
        const appPid = pids[0]!
        yield* Effect.addFinalizer(() => Effect.sync(() => Registry.isAlive(appPid) && process.kill(appPid, "SIGKILL")))

        deploy.process.kill("SIGTERM")
        const code = yield* closed(deploy, "15 seconds")
        assert.strictEqual(code, 0)
        assert.isFalse(Registry.isAlive(appPid), "the application was not stopped")
        const entries = yield* Effect.promise(() =>
          Fs.readdir(Path.join(dir, "serviceweaver/single/registry")).catch(() => [])
        )
        assert.deepStrictEqual(entries, [])
      }),
    { timeout: 60_000 }
  )
})
