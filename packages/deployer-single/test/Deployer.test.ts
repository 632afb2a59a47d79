/**
 * The single-process deployer without the CLI: the checks made before
 * anything starts, what the application's process gets (config, env, args),
 * its exit code, and the `Deployer` service stopping it with its scope.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Deployer from "../src/Deployer.js"
import { answeringCheck } from "./fixtures/cli.js"

const tempDir = Effect.acquireRelease(
  Effect.promise(() => Fs.mkdtemp(Path.join(Os.tmpdir(), "weaver-single-test-"))),
  (dir) => Effect.promise(() => Fs.rm(dir, { recursive: true, force: true }))
)

const write = (file: string, text: string) => Effect.promise(() => Fs.writeFile(file, text))

const read = (file: string) => Effect.promise(() => Fs.readFile(file, "utf8"))

/** Writes `weaver.toml` in `dir`; its path. */
const writeConfig = (dir: string, text: string) =>
  Effect.as(write(Path.join(dir, "weaver.toml"), text), Path.join(dir, "weaver.toml"))

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe("Deployer.prepare", () => {
  it.scoped("reports config mistakes with file, section and key, and a missing binary, before starting anything", () =>
    Effect.gen(function*() {
      const unknownKey = yield* writeConfig(
        yield* tempDir,
        `[serviceweaver]\nname = "hello"\nbinary = "./main.js"\nbinray = "./main.js"\n`
      )
      const noBinary = yield* writeConfig(yield* tempDir, `[serviceweaver]\nname = "hello"\n`)
      const noFile = yield* writeConfig(yield* tempDir, `[serviceweaver]\nbinary = "./dist/main.js"\n`)
      const [bad, missing, absent] = yield* Effect.all(
        [unknownKey, noBinary, noFile].map((config) => Effect.flip(Deployer.prepare(config)))
      )
      assert.include(bad.message, `${unknownKey}: [serviceweaver] key "binray": unknown key`)
      assert.include(missing.message, `${noBinary}: [serviceweaver] key "binary": missing required key`)
      assert.strictEqual(absent._tag, "WeaverConfigError")
      assert.strictEqual(
        absent.message,
        `${noFile}: [serviceweaver] key "binary": ${
          Path.join(Path.dirname(noFile), "dist/main.js")
        } does not exist; build it first (e.g. "npm run build")`
      )
    }))

  it.scopedLive("refuses a config the application refuses, with the application's error, running nothing", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const ran = Path.join(dir, "ran")
      // Answers the check as Weaver.run would for an app without a listener "web"; writes `ran` if run for real.
      yield* write(
        Path.join(dir, "app.mjs"),
        `import * as Fs from "node:fs"
if (process.env.WEAVER_CHECK_CONFIG) {
  const error = { _tag: "WeaverConfigError", file: process.env.WEAVER_CHECK_CONFIG, section: "single", key: "listeners.web", reason: "unknown listener" }
  process.stdout.write("some output of the app\\n\\u001eweaver:check " + JSON.stringify(error) + "\\n")
  process.exit(1)
}
Fs.writeFileSync(${JSON.stringify(ran)}, "")
`
      )
      const config = yield* writeConfig(dir, `[serviceweaver]\nbinary = "app.mjs"\n`)
      const error = yield* Effect.flip(Deployer.deploy(config))
      assert.strictEqual(error._tag, "WeaverConfigError")
      assert.strictEqual(error.message, `${config}: [single] key "listeners.web": unknown listener`)
      assert.isFalse(yield* Effect.promise(() => Fs.access(ran).then(() => true, () => false)))
    }))

  it.scoped("launches node with source maps, the binary resolved against the config and its args", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      yield* write(Path.join(dir, "app.mjs"), answeringCheck(""))
      const config = yield* writeConfig(
        dir,
        `[serviceweaver]\nbinary = "app.mjs"\nargs = ["--flag", "x y"]\nenv = ["GREETING=a=b"]\n`
      )
      const launch = yield* Deployer.prepare(config)
      assert.deepStrictEqual(launch, {
        binary: Path.join(dir, "app.mjs"),
        args: ["--enable-source-maps", Path.join(dir, "app.mjs"), "--flag", "x y"],
        env: { GREETING: "a=b", SERVICEWEAVER_CONFIG: config }
      })
    }))
})

describe("Deployer.deploy", () => {
  it.scopedLive("passes config, env and args to the binary, and succeeds with its exit code", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const out = Path.join(dir, "out.json")
      yield* write(
        Path.join(dir, "app.mjs"),
        answeringCheck(`import * as Fs from "node:fs"
Fs.writeFileSync(process.env.OUT, JSON.stringify({ config: process.env.SERVICEWEAVER_CONFIG, greeting: process.env.GREETING, args: process.argv.slice(2) }))
process.exit(7)
`)
      )
      const config = yield* writeConfig(
        dir,
        `[serviceweaver]\nbinary = "app.mjs"\nargs = ["--flag", "x y"]\nenv = ["GREETING=a=b", "OUT=${out}"]\n`
      )
      assert.strictEqual(yield* Deployer.deploy(config), 7)
      assert.deepStrictEqual(JSON.parse(yield* read(out)), { config, greeting: "a=b", args: ["--flag", "x y"] })
    }))

  it.scopedLive("succeeds with 128 + the signal number when the application is killed by a signal", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      yield* write(Path.join(dir, "app.mjs"), answeringCheck(`process.kill(process.pid, "SIGKILL")\n`))
      const config = yield* writeConfig(dir, `[serviceweaver]\nbinary = "app.mjs"\n`)
      assert.strictEqual(yield* Deployer.deploy(config), 128 + Os.constants.signals.SIGKILL)
    }))
})

describe("Deployer.layer", () => {
  it.scopedLive("is a service: the running application, stopped with SIGTERM when the layer's scope closes", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const out = Path.join(dir, "out.txt")
      yield* write(
        Path.join(dir, "app.mjs"),
        answeringCheck(`import * as Fs from "node:fs"
process.on("SIGTERM", () => {
  Fs.writeFileSync(process.env.OUT, "stopped")
  process.exit(0)
})
Fs.writeFileSync(process.env.OUT, "running")
setInterval(() => {}, 1000)
`)
      )
      const config = yield* writeConfig(dir, `[serviceweaver]\nbinary = "app.mjs"\nenv = ["OUT=${out}"]\n`)
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(Deployer.layer(config), scope)
      const deployer = yield* Deployer.Deployer.pipe(Effect.provide(context))
      assert.strictEqual(deployer.launch.binary, Path.join(dir, "app.mjs"))
      assert.isTrue(alive(deployer.pid))
      // Running: it wrote its first line.
      const written = Effect.tryPromise(() => Fs.readFile(out, "utf8")).pipe(Effect.orElseSucceed(() => ""))
      while ((yield* written) !== "running") yield* Effect.sleep("20 millis")
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(yield* deployer.exited, 0)
      assert.strictEqual(yield* read(out), "stopped")
      assert.isFalse(alive(deployer.pid))
    }))
})
