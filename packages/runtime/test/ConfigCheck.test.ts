/**
 * ConfigCheck's deployer side against binaries that answer by hand: the
 * answer read among other output, the application's error passed on under
 * the file name the deployer was given, and every way of not answering.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as ConfigCheck from "../src/ConfigCheck.js"
import * as WeaverConfig from "../src/WeaverConfig.js"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "weaver-config-check-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

/** A config naming `app.mjs` in `dir` whose text is `script`, loaded as a deployer loads it. */
const withBinary = (dir: string, script: string) =>
  Effect.gen(function*() {
    Fs.writeFileSync(Path.join(dir, "app.mjs"), script)
    Fs.writeFileSync(Path.join(dir, "weaver.toml"), `[serviceweaver]\nbinary = "app.mjs"\n`)
    const config = yield* WeaverConfig.load(Path.join(dir, "weaver.toml"))
    return { config, command: process.execPath, args: [Path.join(dir, "app.mjs")] }
  })

const answer = (result: unknown) => JSON.stringify(`${ConfigCheck.marker}${JSON.stringify(result)}\n`)

describe("ConfigCheck.run", () => {
  it.scopedLive("reads the answer among the binary's other output, with the config file in the environment", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const options = yield* withBinary(
        dir,
        `process.stdout.write("loading… ")
if (process.env.${ConfigCheck.env} !== ${JSON.stringify(Path.join(dir, "weaver.toml"))}) process.exit(9)
process.stdout.write(${answer({ _tag: "ConfigAccepted", components: ["a/B"], listeners: ["web"] })})
process.exit(0)
`
      )
      const accepted = yield* ConfigCheck.run(options)
      assert.deepStrictEqual(accepted, new ConfigCheck.Accepted({ components: ["a/B"], listeners: ["web"] }))
    }))

  it.scopedLive("fails with the application's error, naming the config file as the deployer named it", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const options = yield* withBinary(
        dir,
        `process.stdout.write(${
          answer({ _tag: "WeaverConfigError", file: "/abs/weaver.toml", section: "multi", key: "x", reason: "no" })
        })\nprocess.exit(1)\n`
      )
      const config = { ...options.config, file: "weaver.toml" }
      const error = yield* Effect.flip(ConfigCheck.run({ ...options, config }))
      assert.strictEqual(error._tag, "WeaverConfigError")
      assert.strictEqual(error.message, `weaver.toml: [multi] key "x": no`)
    }))

  it.scopedLive("fails with CheckError when the binary does not answer, quoting what it said", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const messageOf = (script: string) =>
        Effect.flatMap(withBinary(dir, script), (options) =>
          Effect.map(
            Effect.flip(ConfigCheck.run(options)),
            (error) => error.message.replace(`${options.config.file}: [serviceweaver] key "binary": `, "")
          ))
      const binary = Path.join(dir, "app.mjs")
      assert.strictEqual(
        yield* messageOf(`console.log("hi")\n`),
        `${binary} exited without answering the config check: the entry a deployer runs must call ` +
          `Weaver.run(app), which answers it when ${ConfigCheck.env} is set`
      )
      assert.strictEqual(
        yield* messageOf(`console.error("warming up")\nthrow new RangeError("no port")\n`),
        `${binary} exited with code 1 before answering the config check: RangeError: no port`
      )
      assert.strictEqual(
        yield* messageOf(`process.kill(process.pid, "SIGKILL")\n`),
        `${binary} was killed by SIGKILL before answering the config check`
      )
      assert.match(
        yield* messageOf(`process.stdout.write(${JSON.stringify(`${ConfigCheck.marker}{"_tag":"Nope"}\n`)})\n`),
        /answered the config check with a malformed result: /
      )
    }))

  it.scopedLive("kills a binary that does not answer in time", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const pidFile = Path.join(dir, "pid")
      const options = yield* withBinary(
        dir,
        `import * as Fs from "node:fs"\nFs.writeFileSync(${JSON.stringify(pidFile)}, String(process.pid))\n` +
          `setInterval(() => {}, 1000)\n`
      )
      const error = yield* Effect.flip(ConfigCheck.run({ ...options, timeout: "1 second" }))
      assert.strictEqual(error._tag, "ConfigCheckError")
      assert.include(error.message, "did not answer the config check within 1s")
      const pid = Number(Fs.readFileSync(pidFile, "utf8"))
      // Killed with SIGKILL: gone at once, or within moments.
      let alive = true
      for (let i = 0; i < 50 && alive; i++) {
        alive = Either.isRight(Either.try(() => process.kill(pid, 0)))
        if (alive) yield* Effect.sleep("20 millis")
      }
      assert.isFalse(alive, `the check process ${pid} is still running`)
    }))
})

describe("ConfigCheck.binary", () => {
  it.scoped("resolves the binary against the config's directory and refuses a missing key, file or a directory", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      Fs.writeFileSync(Path.join(dir, "app.mjs"), "")
      Fs.mkdirSync(Path.join(dir, "dist"))
      const messageOf = (toml: string) =>
        Effect.flatMap(
          WeaverConfig.parse(toml, "weaver.toml", dir),
          (config) => Effect.map(Effect.flip(ConfigCheck.binary(config)), (error) => error.message)
        )
      const config = yield* WeaverConfig.parse(`[serviceweaver]\nbinary = "app.mjs"\n`, "weaver.toml", dir)
      assert.strictEqual(yield* ConfigCheck.binary(config), Path.join(dir, "app.mjs"))
      assert.strictEqual(
        yield* messageOf(`[serviceweaver]\nbinary = "dist"\n`),
        `weaver.toml: [serviceweaver] key "binary": ${Path.join(dir, "dist")} is not a file`
      )
      assert.strictEqual(
        yield* messageOf(`[serviceweaver]\nbinary = "dist/main.js"\n`),
        `weaver.toml: [serviceweaver] key "binary": ${
          Path.join(dir, "dist/main.js")
        } does not exist; build it first (e.g. "npm run build")`
      )
      assert.include(yield* messageOf(`[serviceweaver]\nname = "x"\n`), `key "binary": missing required key`)
    }))
})

describe("singletons", () => {
  it("the answer lists them, and tells each group whether it runs one replica and what runs once with it", () => {
    const config = Either.getOrThrow(WeaverConfig.parse(`[serviceweaver]\ncolocate = [["a/Leader", "a/Audit"]]\n`))
    const accepted = Either.getOrThrow(ConfigCheck.validate(config, {
      components: new Map([["a/Leader", undefined], ["a/Audit", undefined], ["a/Cart", undefined]]),
      listeners: new Set(),
      singletons: ["main", "a/Leader"]
    }))
    assert.deepStrictEqual(accepted.singletons, ["main", "a/Leader"])
    assert.deepStrictEqual(ConfigCheck.singletonsIn(accepted, ["a/Leader", "a/Audit"]), ["a/Leader"])
    assert.deepStrictEqual(ConfigCheck.singletonsIn(accepted, ["a/Cart"]), [])
    assert.strictEqual(
      ConfigCheck.singletonNote(accepted, { name: "a/Leader", components: ["a/Leader", "a/Audit"] }),
      "group a/Leader runs exactly 1 replica: it holds the singleton a/Leader (a/Audit, co-located with it, runs once too)"
    )
    assert.strictEqual(
      ConfigCheck.singletonNote(accepted, { name: "main", components: ["main"] }),
      "group main runs exactly 1 replica: it holds the singleton main"
    )
    assert.isUndefined(ConfigCheck.singletonNote(accepted, { name: "a/Cart", components: ["a/Cart"] }))
  })
})
