import type { Logging } from "@effect-weaver/runtime"
import { Registry } from "@effect-weaver/runtime"
import { LogFile } from "@effect-weaver/runtime"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import * as Cli from "../src/Cli.js"
import * as Logs from "../src/Logs.js"
import { closed, run, start, tempDir, waitFor } from "./utils/cli.js"

const micros = (iso: string) => Date.parse(iso) * 1000
const hello = "5c9753e4-c476-4f93-97a0-0ea599184178"
const todo = "11111111-2222-4333-8444-555555555555"

const entry = (overrides: Partial<Logging.Entry>): Logging.Entry => ({
  app: "hello",
  version: hello,
  component: "hello/Reverser",
  node: "aaaaaaaa-0000-4000-8000-000000000001",
  timeMicros: micros("2024-01-02T15:04:05Z"),
  level: "info",
  source: "Reverser.ts:12",
  msg: "",
  attrs: [],
  ...overrides
})

const reversing = entry({ msg: "reversing", attrs: [["name", "Weaver"]], timeMicros: micros("2024-01-02T15:04:05Z") })
const started = entry({
  component: "main",
  node: "bbbbbbbb-0000-4000-8000-000000000002",
  msg: "weavelet started",
  attrs: [["serviceweaver/system", ""]],
  timeMicros: micros("2024-01-02T15:04:04Z")
})
const failed = entry({
  component: "main",
  node: "bbbbbbbb-0000-4000-8000-000000000002",
  level: "error",
  source: "",
  msg: "request failed",
  timeMicros: micros("2024-01-02T15:04:06Z")
})
const other = entry({ app: "todo", version: todo, component: "todo/Store", msg: "stored", timeMicros: 1 })

const writeFile = (dir: string, node: string, deploymentId: string, entries: ReadonlyArray<Logging.Entry>) =>
  Effect.promise(async () => {
    await Fs.mkdir(dir, { recursive: true })
    const name = LogFile.fileName({ app: entries[0]!.app, deploymentId, node, kind: "log" })
    await Fs.appendFile(Path.join(dir, name), entries.map((e) => LogFile.encode(e) + "\n").join(""))
  })

/** A log directory with two processes of hello (one of them printing a system entry) and one of todo. */
const fixture = Effect.gen(function*() {
  const base = yield* tempDir
  const dir = Path.join(base, "multi")
  yield* writeFile(dir, reversing.node, hello, [reversing])
  yield* writeFile(dir, started.node, hello, [started, failed])
  yield* writeFile(dir, other.node, todo, [other])
  return { dir, env: { SERVICEWEAVER_LOG_DIR: base, XDG_DATA_HOME: yield* tempDir } }
})

const lines = (text: string) => text.split("\n").filter((line) => line !== "")

describe("Logs.format", () => {
  it("prints Service Weaver's pretty lines or one JSON object per line", () => {
    const pretty = Logs.format([reversing, failed], { format: "pretty" })
    const time = (e: Logging.Entry) => {
      const d = new Date(e.timeMicros / 1000)
      const pad = (n: number) => String(n).padStart(2, "0")
      return `${pad(d.getMonth() + 1)}${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${
        pad(d.getSeconds())
      }.000000`
    }
    assert.strictEqual(
      pretty,
      `I${time(reversing)} hello.Reverser aaaaaaaa Reverser.ts:12 │ reversing name="Weaver"\n` +
        `E${time(failed)} main bbbbbbbb │ request failed`
    )
    const json = Logs.format([reversing, failed], { format: "json" })
    assert.deepStrictEqual(lines(json).map((line) => JSON.parse(line)), [reversing, failed])
  })
})

describe("Cli.usage (multi)", () => {
  it("lists the multi commands", () => {
    const text = Cli.usage(["multi", "bogus"]).split("\n")
    assert.strictEqual(text[0], `weaver multi: unknown command "bogus"`)
    assert.include(text, "  weaver multi logs [--follow] [--format=pretty|json] [--system] [query]")
    assert.include(text, "  weaver multi purge [--force]")
    assert.strictEqual(text.at(-1), `Run "weaver multi --help" for more information.`)
    assert.strictEqual(
      Cli.usage(["multi", "logs", "--bogus"]),
      `Usage:
  weaver multi logs [--follow] [--format=pretty|json] [--system] [query]
Run "weaver multi logs --help" for more information.`
    )
  })
})

describe("weaver multi logs (process)", () => {
  it.scoped(
    "prints the matching entries of every file in time order, without system entries",
    () =>
      Effect.gen(function*() {
        const { env } = yield* fixture
        const [all, query, json, system] = yield* Effect.all([
          run(["multi", "logs"], env),
          run(["multi", "logs", `app == "hello" && (level == "error" || attrs["name"] == "Weaver")`], env),
          run(["multi", "logs", "--format=json", `version == "5c9753e4"`], env),
          run(["multi", "logs", "--system", "--format", "json", `full_version == "${hello}"`], env)
        ], { concurrency: 2 })
        for (const result of [all, query, json, system]) assert.strictEqual(result.code, 0, result.stderr)
        assert.deepStrictEqual(lines(all.stdout), lines(Logs.format([other, reversing, failed], { format: "pretty" })))
        assert.deepStrictEqual(lines(query.stdout), lines(Logs.format([reversing, failed], { format: "pretty" })))
        assert.deepStrictEqual(lines(json.stdout).map((line) => JSON.parse(line)), [reversing, failed])
        assert.deepStrictEqual(lines(system.stdout).map((line) => JSON.parse(line)), [started, reversing, failed])
        assert.strictEqual(all.stderr + query.stderr + json.stderr + system.stderr, "")
      }),
    { timeout: 60_000 }
  )

  it.scoped("a bad query prints the error with a caret and exits 1", () =>
    Effect.gen(function*() {
      const { env } = yield* fixture
      const result = yield* run(["multi", "logs", `app == "hello" && mgs.contains("x")`], env)
      assert.strictEqual(result.code, 1)
      assert.strictEqual(result.stdout, "")
      const text = result.stderr.split("\n")
      const at = text.findIndex((line) => line.includes("invalid query at column 19: unknown field \"mgs\""))
      assert.isAtLeast(at, 0, result.stderr)
      assert.strictEqual(text[at + 1], `  app == "hello" && mgs.contains("x")`)
      assert.strictEqual(text[at + 2], `                    ^`)
    }), { timeout: 30_000 })

  it.scoped("--follow prints existing entries, then new ones, until interrupted", () =>
    Effect.gen(function*() {
      const { dir, env } = yield* fixture
      const child = yield* start(["multi", "logs", "--follow", `app == "hello"`], env)
      yield* waitFor(child, /request failed/)
      const later = entry({ msg: "appended later", timeMicros: micros("2024-01-02T15:05:00Z") })
      yield* writeFile(dir, reversing.node, hello, [later, { ...later, app: "todo", msg: "not hello" }])
      yield* writeFile(dir, "cccccccc-new-process", hello, [{ ...later, msg: "from a new file" }])
      yield* waitFor(child, /appended later[\s\S]*from a new file|from a new file[\s\S]*appended later/)
      child.process.kill("SIGINT")
      assert.strictEqual(yield* closed(child, "10 seconds"), 0)
      assert.notInclude(child.stdout(), "not hello")
      assert.strictEqual(lines(child.stdout()).length, 4)
    }), { timeout: 30_000 })
})

const exists = (path: string) => Effect.promise(() => Fs.access(path).then(() => true, () => false))

describe("weaver purge (process)", () => {
  it.scoped("multi purge --force deletes the multi logs and data, and keeps single's", () =>
    Effect.gen(function*() {
      const { dir, env } = yield* fixture
      const singleLogs = Path.join(env.SERVICEWEAVER_LOG_DIR, "single")
      yield* writeFile(singleLogs, "n", hello, [reversing])
      const registry = Path.join(env.XDG_DATA_HOME, "serviceweaver", "multi", "registry")
      yield* Effect.promise(() => Fs.mkdir(registry, { recursive: true }))
      yield* Effect.promise(() => Fs.writeFile(Path.join(registry, "x.registration.json"), "{}"))
      const singleRegistry = Path.join(env.XDG_DATA_HOME, "serviceweaver", "single", "registry")
      yield* Effect.promise(() => Fs.mkdir(singleRegistry, { recursive: true }))

      const result = yield* run(["multi", "purge", "--force"], env)
      assert.strictEqual(result.code, 0, result.stderr)
      assert.isFalse(yield* exists(dir))
      assert.isFalse(yield* exists(Path.dirname(registry)))
      assert.isTrue(yield* exists(singleLogs))
      assert.isTrue(yield* exists(singleRegistry))
      assert.include(result.stdout, `Deleted ${dir}`)
    }), { timeout: 30_000 })

  it.scoped(
    "purge without --force refuses when stdin is not a terminal, and while deployments run",
    () =>
      Effect.gen(function*() {
        const { dir, env } = yield* fixture
        const singleLogs = Path.join(env.SERVICEWEAVER_LOG_DIR, "single")
        yield* writeFile(singleLogs, "n", hello, [reversing])
        // A live deployment: its owner is this test process.
        const previous = process.env.XDG_DATA_HOME
        process.env.XDG_DATA_HOME = env.XDG_DATA_HOME
        const registry = Registry.directory("multi")
        if (previous === undefined) delete process.env.XDG_DATA_HOME
        else process.env.XDG_DATA_HOME = previous
        yield* Effect.promise(() => Fs.mkdir(registry, { recursive: true }))
        const live: Registry.Deployment = {
          app: "hello",
          deploymentId: hello,
          tool: "multi",
          pid: process.pid,
          startedAt: Date.now(),
          components: [],
          listeners: []
        }
        yield* Effect.promise(() =>
          Fs.writeFile(Path.join(registry, `${hello}.registration.json`), JSON.stringify(live))
        )

        const [single, multi] = yield* Effect.all([
          run(["single", "purge"], env),
          run(["multi", "purge"], env)
        ], { concurrency: 2 })
        assert.strictEqual(single.code, 1)
        assert.include(single.stderr, "standard input is not a terminal; pass --force")
        assert.isTrue(yield* exists(singleLogs))
        assert.strictEqual(multi.code, 1)
        assert.include(multi.stderr, `1 deployment(s) still running:\n  hello ${hello} (pid ${process.pid})`)
        assert.include(multi.stderr, "refusing to purge while deployments are running; stop them, or pass --force")
        assert.isTrue(yield* exists(dir))
        assert.isTrue(yield* exists(registry))

        const forced = yield* run(["multi", "purge", "--force"], env)
        assert.strictEqual(forced.code, 0, forced.stderr)
        assert.include(forced.stderr, "1 deployment(s) still running")
        assert.isFalse(yield* exists(dir))
        assert.isFalse(yield* exists(registry))
      }),
    { timeout: 30_000 }
  )
})
