import type { Logging } from "@effect-weaver/runtime"
import { assert, describe, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Stream_ from "node:stream"
import * as LogFile from "../src/LogFile.js"

const tempDir = Effect.acquireRelease(
  Effect.promise(() => Fs.mkdtemp(Path.join(Os.tmpdir(), "weaver-logfile-test-"))),
  (dir) => Effect.promise(() => Fs.rm(dir, { recursive: true, force: true }))
)

const deploymentId = "5c9753e4-c476-4f93-97a0-0ea599184178"

const entry = (node: string, timeMicros: number, msg: string): Logging.Entry => ({
  app: "hello",
  version: deploymentId,
  component: "hello/Reverser",
  node,
  timeMicros,
  level: "info",
  source: "Reverser.ts:12",
  msg,
  attrs: [["i", String(timeMicros)]]
})

const files = (dir: string) => Effect.promise(() => Fs.readdir(dir).then((names) => names.sort()))
const size = (path: string) => Effect.promise(() => Fs.stat(path).then((s) => s.size))

describe("LogFile", () => {
  it("directory is $TMPDIR/serviceweaver/logs/<tool>, or under SERVICEWEAVER_LOG_DIR", () => {
    const previous = process.env.SERVICEWEAVER_LOG_DIR
    delete process.env.SERVICEWEAVER_LOG_DIR
    assert.strictEqual(LogFile.directory("multi"), Path.join(Os.tmpdir(), "serviceweaver", "logs", "multi"))
    process.env.SERVICEWEAVER_LOG_DIR = "/x/logs"
    assert.strictEqual(LogFile.directory("single"), "/x/logs/single")
    if (previous === undefined) delete process.env.SERVICEWEAVER_LOG_DIR
    else process.env.SERVICEWEAVER_LOG_DIR = previous
  })

  it("file names carry app, deployment, replica and kind, and parse back", () => {
    const info = { app: "a#b/c", deploymentId, node: "n1", kind: "log" }
    const name = LogFile.fileName(info)
    assert.strictEqual(name, `a_b_c#${deploymentId}#n1#log.jsonl`)
    assert.deepStrictEqual(LogFile.parseFileName(name), Option.some({ ...info, app: "a_b_c" }))
    assert.isTrue(Option.isNone(LogFile.parseFileName("notes.txt")))
    assert.isTrue(Option.isNone(LogFile.parseFileName("a#b#c.jsonl")))
  })

  it.scoped("writes in batches and reads two processes' entries back merged in time order", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const written = yield* Effect.scoped(Effect.gen(function*() {
        // A flush interval longer than the test: nothing may reach the file before the scope closes.
        const a = yield* LogFile.writer(dir, "hello", deploymentId, "node-a", { flushInterval: "1 hour" })
        const b = yield* LogFile.writer(dir, "hello", deploymentId, "node-b", { flushInterval: "1 hour" })
        for (let i = 0; i < 50; i++) {
          yield* (i % 2 === 0 ? a : b).write(entry(i % 2 === 0 ? "node-a" : "node-b", 1_000 + i, `m${i}`))
        }
        assert.strictEqual(yield* size(a.path), 0)
        assert.strictEqual(yield* size(b.path), 0)
        return [a.path, b.path]
      }))
      assert.deepStrictEqual(yield* files(dir), written.map((p) => Path.basename(p)).sort())
      assert.deepStrictEqual(written.map((p) => Path.basename(p)), [
        `hello#${deploymentId}#node-a#log.jsonl`,
        `hello#${deploymentId}#node-b#log.jsonl`
      ])
      const entries = yield* LogFile.readAll(dir)
      assert.deepStrictEqual(entries.map((e) => e.msg), Array.from({ length: 50 }, (_, i) => `m${i}`))
      assert.deepStrictEqual(entries[1], entry("node-b", 1_001, "m1"))
      const text = yield* Effect.promise(() => Fs.readFile(written[0]!, "utf8"))
      assert.strictEqual(text.split("\n").length, 26)
      assert.deepStrictEqual(JSON.parse(text.split("\n")[0]!), entry("node-a", 1_000, "m0"))
    }))

  it.live("flushes on its own within the flush interval, while the scope is open", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir
      const w = yield* LogFile.writer(dir, "hello", deploymentId, "node-a")
      yield* w.write(entry("node-a", 1, "soon"))
      const seen = yield* LogFile.readAll(dir).pipe(
        Effect.delay("25 millis"),
        Effect.repeat({ until: (entries) => entries.length === 1, times: 40 })
      )
      assert.deepStrictEqual(seen.map((e) => e.msg), ["soon"])
    })))

  it.scoped("readAll filters one deployment and returns nothing for a missing directory", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      yield* Effect.scoped(Effect.gen(function*() {
        const a = yield* LogFile.writer(dir, "hello", deploymentId, "n")
        const b = yield* LogFile.writer(dir, "hello", "other-deployment", "n")
        yield* a.write(entry("n", 2, "mine"))
        yield* b.write({ ...entry("n", 1, "theirs"), version: "other-deployment" })
      }))
      assert.deepStrictEqual((yield* LogFile.readAll(dir)).map((e) => e.msg), ["theirs", "mine"])
      assert.deepStrictEqual((yield* LogFile.readAll(dir, { deploymentId })).map((e) => e.msg), ["mine"])
      assert.deepStrictEqual(yield* LogFile.readAll(Path.join(dir, "absent")), [])
    }))

  it.scoped("skips malformed lines, an unfinished last line and files that are not logs", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const good = (i: number) => LogFile.encode(entry("n", i, `good${i}`))
      const { version: _, ...noVersion } = entry("n", 5, "no version")
      yield* Effect.promise(() =>
        Fs.writeFile(
          Path.join(dir, LogFile.fileName({ app: "hello", deploymentId, node: "n", kind: "log" })),
          [
            good(1),
            "not json at all",
            "",
            JSON.stringify(noVersion),
            JSON.stringify({ ...entry("n", 6, "bad attrs"), attrs: [["k"]] }),
            "[1,2,3]",
            good(2),
            `{"app":"hello","ver` // a write in progress
          ].join("\n")
        )
      )
      yield* Effect.promise(() => Fs.writeFile(Path.join(dir, "notes.txt"), good(3) + "\n"))
      assert.deepStrictEqual((yield* LogFile.readAll(dir)).map((e) => e.msg), ["good1", "good2"])
    }))

  it.live("follow emits existing entries, then lines appended and files created after it started", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir
      const path = Path.join(dir, LogFile.fileName({ app: "hello", deploymentId, node: "a", kind: "log" }))
      yield* Effect.promise(() => Fs.writeFile(path, LogFile.encode(entry("a", 1, "before")) + "\n"))
      const first = yield* Deferred.make<void>()
      const fiber = yield* LogFile.follow(dir, { interval: "20 millis" }).pipe(
        Stream.tap(() => Deferred.succeed(first, undefined)),
        Stream.take(4),
        Stream.runCollect,
        Effect.timeout("5 seconds"),
        Effect.fork
      )
      yield* Deferred.await(first)
      // Half a line, then the rest: follow must wait for the newline.
      const line = LogFile.encode(entry("a", 2, "appended")) + "\n"
      yield* Effect.promise(() => Fs.appendFile(path, line.slice(0, 20)))
      yield* Effect.sleep("60 millis")
      yield* Effect.promise(() => Fs.appendFile(path, line.slice(20) + "garbage\n"))
      yield* Effect.scoped(Effect.gen(function*() {
        const b = yield* LogFile.writer(dir, "hello", deploymentId, "b")
        yield* b.write(entry("b", 3, "new file"))
      }))
      yield* Effect.promise(() => Fs.appendFile(path, LogFile.encode(entry("a", 4, "again")) + "\n"))
      const seen = yield* Fiber.join(fiber)
      assert.deepStrictEqual(Chunk.toArray(seen).map((e) => e.msg), ["before", "appended", "new file", "again"])
    })))

  it.scoped("logger turns Effect logs into entries with origin, level and annotations", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const origin = { app: "hello", deploymentId, replicaId: "r-1" }
      yield* Effect.logWarning("careful", 42).pipe(
        Effect.annotateLogs("user", "ada"),
        Effect.zipRight(Effect.logDebug("details")),
        Effect.provide(Layer.mergeAll(LogFile.layer(dir, origin)))
      )
      const entries = yield* LogFile.readAll(dir)
      assert.strictEqual(entries.length, 1, "debug logs are below the default minimum level")
      const [warning] = entries
      assert.deepInclude(warning, {
        app: "hello",
        version: deploymentId,
        node: "r-1",
        component: "main",
        level: "warn",
        msg: "careful 42",
        attrs: [["user", "ada"]]
      })
      assert.approximately(warning!.timeMicros, Date.now() * 1000, 10_000_000)
      assert.deepStrictEqual(yield* files(dir), [`hello#${deploymentId}#r-1#log.jsonl`])
    }))

  it.live("capture records each output line as a stdout entry of the process's group", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir
      const origin = { app: "hello", deploymentId, node: "r-2", component: "hello/Reverser" }
      yield* Effect.scoped(Effect.gen(function*() {
        const w = yield* LogFile.writer(dir, "hello", deploymentId, "r-2", { kind: "stdout" })
        const output = new Stream_.PassThrough()
        output.end("first line\nsecond line\nno newline")
        yield* LogFile.capture(output, origin, "stdout", w).pipe(Effect.timeout("5 seconds"))
      }))
      const entries = yield* LogFile.readAll(dir)
      assert.deepStrictEqual(entries.map((e) => e.msg), ["first line", "second line", "no newline"])
      assert.deepInclude(entries[0], {
        app: "hello",
        version: deploymentId,
        node: "r-2",
        component: "hello/Reverser",
        level: "stdout",
        source: "",
        attrs: []
      })
      assert.deepStrictEqual(yield* files(dir), [`hello#${deploymentId}#r-2#stdout.jsonl`])
    })))
})
