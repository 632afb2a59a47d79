/**
 * `[single] workers`: the single runtime runs each colocation group in a worker thread of the application's own
 * process (the binary, evaluated again in the worker, serves the group), selected by config, not code.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

const root = Path.resolve(import.meta.dirname, "../../..")
const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "weaver-workers-"))
// The application's binary as users ship it: one bundle (weaver bundle), which a worker thread loads again.
const binary = Path.join(dir, "threads.mjs")
const bundled = ChildProcess.spawnSync(
  process.execPath,
  [
    Path.join(root, "packages/cli/bin/weaver.js"),
    "bundle",
    "--out",
    binary,
    Path.join(import.meta.dirname, "fixtures/threads.ts")
  ],
  { encoding: "utf8" }
)
afterAll(() => Fs.rmSync(dir, { recursive: true, force: true }))

const runWith = (toml: string) => {
  assert.strictEqual(bundled.status, 0, bundled.stderr)
  const config = Path.join(dir, `weaver-${Math.random().toString(36).slice(2)}.toml`)
  Fs.writeFileSync(config, toml)
  const log = `${config}.leader`
  const result = ChildProcess.spawnSync(
    process.execPath,
    [binary],
    { encoding: "utf8", env: { ...process.env, SERVICEWEAVER_CONFIG: config, LEADER_LOG: log }, timeout: 60_000 }
  )
  const line = result.stdout.split("\n").find((l) => l.startsWith("threads "))
  assert.isDefined(line, `no answer: ${result.stdout}${result.stderr}`)
  assert.strictEqual(result.status, 0, result.stderr)
  const { leader, ...threads } = JSON.parse(line!.slice("threads ".length)) as {
    main: number
    where: number
    other: number
    leader: number
  }
  // The singleton Leader was constructed once, in the thread that answered.
  assert.deepStrictEqual(Fs.readFileSync(log, "utf8"), `${leader}\n`)
  return { ...threads, leader }
}

describe("[single] workers", () => {
  it("off (the default): every component on the main thread", () => {
    assert.deepStrictEqual(runWith(`[serviceweaver]\nname = "threads"\n`), { main: 0, where: 0, other: 0, leader: 0 })
  }, 60_000)

  it("on: each group in a worker thread of its own, main on the main thread; the process exits with main", () => {
    const threads = runWith(`[serviceweaver]\nname = "threads"\n[single]\nworkers = true\n`)
    assert.strictEqual(threads.main, 0)
    assert.notStrictEqual(threads.where, 0)
    assert.notStrictEqual(threads.other, 0)
    assert.notStrictEqual(threads.where, threads.other)
    assert.notStrictEqual(threads.leader, 0)
    assert.notInclude([threads.where, threads.other], threads.leader)
  }, 60_000)

  it("on, with a colocation group: its components share a thread", () => {
    const threads = runWith(
      `[serviceweaver]\nname = "threads"\ncolocate = [["threads/Where", "threads/Other"]]\n[single]\nworkers = true\n`
    )
    assert.notStrictEqual(threads.where, 0)
    assert.strictEqual(threads.where, threads.other)
  }, 60_000)
})
