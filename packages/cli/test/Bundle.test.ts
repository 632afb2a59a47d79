/**
 * `weaver bundle`: bundles are written outside the repository, where no
 * `node_modules` is found by walking up, so a bundle that still imported one
 * of the app's packages by name would fail to start.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import { root, run, start, tempDir, waitFor } from "./utils/cli.js"

const node = (file: string) =>
  Effect.promise(() =>
    new Promise<{ readonly code: number | null; readonly stdout: string; readonly stderr: string }>((resolve) =>
      ChildProcess.execFile(
        process.execPath,
        [file],
        (error, stdout, stderr) => resolve({ code: error === null ? 0 : (error.code as number), stdout, stderr })
      )
    )
  )

describe("weaver bundle", () => {
  it.scopedLive(
    "bundles hello into one file that weaver multi deploy runs, logging .ts sources",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const out = Path.join(dir, "hello.mjs")
        const bundled = yield* run(["bundle", Path.join(root, "examples/hello/dist/main.js"), "--out", out], {})
        assert.strictEqual(bundled.code, 0, bundled.stderr)
        assert.match(bundled.stdout, /bundled .*main\.js and \d+ imported files into .*hello\.mjs \([\d.]+ MiB\)/)
        const map = JSON.parse(yield* Effect.promise(() => Fs.readFile(`${out}.map`, "utf8"))) as {
          readonly sources: ReadonlyArray<string>
        }
        assert.include(map.sources.join(" "), "examples/hello/src/Reverser.ts")
        assert.notInclude(map.sources.join(" "), "node_modules", "the map keeps only the app's own code")

        const env = { XDG_DATA_HOME: dir, SERVICEWEAVER_LOG_DIR: Path.join(dir, "logs") }
        const config = Path.join(dir, "weaver.toml")
        yield* Effect.promise(() =>
          Fs.writeFile(
            config,
            `[serviceweaver]\nname = "hello"\nbinary = "./hello.mjs"\n\n[multi]\nlisteners.hello = { address = "127.0.0.1:0" }\n`
          )
        )
        // The built CLI, as users run it: under tsx, the replicas' stack traces would not be source-mapped.
        const deploy = yield* start(["multi", "deploy", config], env, { built: true })
        const [, proxy] = yield* waitFor(deploy, /proxy for listener hello on (\S+)\n/, "25 seconds", "stderr")
        // Sent at once: the proxy holds it until a replica serves the listener.
        const response = yield* Effect.promise(() => fetch(`http://${proxy}/hello?name=Weaver`))
        assert.strictEqual(response.status, 200)
        assert.strictEqual(yield* Effect.promise(() => response.text()), "Hello, revaeW!\n")
        yield* waitFor(deploy, /hello\.Reverser \S+ Reverser\.ts:\d+ │ reverser ready/, "25 seconds", "stderr")
      }),
    { timeout: 90_000 }
  )

  it.scopedLive(
    "loads undici and ws from node_modules on first use, not with the bundle",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const entry = Path.join(root, "packages/cli/test/fixtures/uses-undici.mjs")
        const out = Path.join(dir, "uses-undici.mjs")
        const bundled = yield* run(["bundle", entry, "--out", out], {})
        assert.strictEqual(bundled.code, 0, bundled.stderr)
        const text = yield* Effect.promise(() => Fs.readFile(out, "utf8"))
        assert.notInclude(text, "class Pool extends PoolBase", "undici's code is not in the bundle")
        const ran = yield* node(out)
        assert.strictEqual(ran.code, 0, ran.stderr)
        assert.strictEqual(ran.stdout, "loaded before use: false\nfunction function\nloaded after use: true\n")
      }),
    { timeout: 60_000 }
  )

  it.scoped("names the file and import that cannot be resolved, and a missing entry", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const entry = Path.join(dir, "main.js")
      yield* Effect.promise(() => Fs.writeFile(entry, `import "./missing.js"\n`))
      const unresolved = yield* run(["bundle", entry], {})
      assert.strictEqual(unresolved.code, 1)
      assert.include(unresolved.stderr, `weaver: cannot bundle ${entry}:`)
      assert.include(unresolved.stderr, `Could not resolve "./missing.js"`)
      assert.include(unresolved.stderr, "main.js:1:7")

      const absent = yield* run(["bundle", Path.join(dir, "nope.js")], {})
      assert.strictEqual(absent.code, 1)
      assert.include(absent.stderr, `the entry ${Path.join(dir, "nope.js")} does not exist`)
    }), { timeout: 60_000 })
})
