/**
 * The custom deployer, end to end: it deploys examples/hello (its built
 * binary, dist/hello.mjs) as one process per colocation group, answers on the
 * hello listener it prints, and stops every process when it is stopped.
 */
import { Registry } from "@effect-weaver/runtime"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schedule } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("../../../", import.meta.url))
const helloConfig = Path.join(root, "examples/hello/weaver.toml")
const helloBinary = Path.join(root, "examples/hello/dist/hello.mjs")
const main = fileURLToPath(new URL("../src/main.ts", import.meta.url))

/** The deployer as a process (through tsx), with its output; killed with the scope if still running. */
const startDeployer = (config: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      let output = ""
      const child = ChildProcess.spawn(
        process.execPath,
        ["--conditions=@effect-weaver/source", "--import", "tsx", main, config],
        { cwd: root, env: { ...process.env, NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] }
      )
      child.stdout.setEncoding("utf8").on("data", (chunk: string) => (output += chunk))
      child.stderr.setEncoding("utf8").on("data", (chunk: string) => (output += chunk))
      const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
      return { child, exited, output: () => output }
    }),
    ({ child, output }) =>
      Effect.sync(() => {
        // Only if the test failed half-way: nothing of the deployment may outlive it.
        for (const [, pid] of output().matchAll(/started group \S+ as pid (\d+)/g)) {
          if (Registry.isAlive(Number(pid))) process.kill(Number(pid), "SIGKILL")
        }
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
      })
  )

/** Polls the deployer's output for `pattern` every 100 ms for up to 60 s. */
const waitFor = (output: () => string, pattern: RegExp) =>
  Effect.suspend(() => {
    const match = pattern.exec(output())
    return match === null ? Effect.fail(new Error(`no ${pattern} in the output:\n${output()}`)) : Effect.succeed(match)
  }).pipe(Effect.retry(Schedule.spaced("100 millis").pipe(Schedule.upTo("60 seconds"))))

describe("the custom deployer", () => {
  it.scopedLive(
    "deploys hello, answers on its listener, and stops every process when stopped",
    () =>
      Effect.gen(function*() {
        assert.isTrue(Fs.existsSync(helloBinary), `${helloBinary} is missing: run "npm run build" first`)
        const deployer = yield* startDeployer(helloConfig)
        const [, address] = yield* waitFor(deployer.output, /listener hello of group main available on (\S+)\n/)

        const response = yield* Effect.promise(() =>
          fetch(`http://${address}/hello?name=Weaver`, { signal: AbortSignal.timeout(30_000) })
        )
        assert.strictEqual(response.status, 200, deployer.output())
        assert.strictEqual(yield* Effect.promise(() => response.text()), "Hello, revaeW!\n")

        // One process per group: main, and hello/Reverser that main activated; both ready, on loopback.
        yield* waitFor(deployer.output, /group hello\/Reverser \(pid \d+\) serves on 127\.0\.0\.1:\d+\n/)
        const pids = [...deployer.output().matchAll(/started group (\S+) as pid (\d+)/g)].map(([, group, pid]) => ({
          group,
          pid: Number(pid)
        }))
        assert.deepStrictEqual(pids.map((p) => p.group).sort(), ["hello/Reverser", "main"], deployer.output())
        // The weavelet's log entries reach the deployer's terminal.
        assert.include(deployer.output(), "reverser ready")

        deployer.child.kill("SIGTERM")
        const code = yield* Effect.promise(() => deployer.exited).pipe(Effect.timeout("20 seconds"))
        assert.strictEqual(code, 0, deployer.output())
        for (const { group, pid } of pids) assert.isFalse(Registry.isAlive(pid), `${group} (pid ${pid}) outlived it`)
      }),
    120_000
  )
})

describe("the custom deployer and a config the application refuses", () => {
  it.scopedLive(
    "prints the application's error, starts no process and exits with 1",
    () =>
      Effect.gen(function*() {
        const dir = yield* Effect.acquireRelease(
          Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "custom-deployer-test-"))),
          (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
        )
        const config = Path.join(dir, "weaver.toml")
        // hello declares the listener "hello" only: the deployer cannot tell, the application's binary can.
        Fs.writeFileSync(
          config,
          `[serviceweaver]\nname = "hello"\nbinary = "${helloBinary}"\n` +
            `[multi]\nlisteners.hi = { address = "127.0.0.1:0" }\n`
        )
        const deployer = yield* startDeployer(config)
        const code = yield* Effect.promise(() => deployer.exited).pipe(Effect.timeout("60 seconds"))
        assert.strictEqual(code, 1, deployer.output())
        assert.strictEqual(
          deployer.output(),
          `custom-deployer: ${config}: [multi] key "listeners.hi": unknown listener "hi" ` +
            `(the application declares: hello)\n`
        )
      }),
    90_000
  )
})
