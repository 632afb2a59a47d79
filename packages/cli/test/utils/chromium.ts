import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import { createRequire } from "node:module"
import * as Os from "node:os"
import * as Path from "node:path"
import { type Browser, chromium } from "playwright-core"

/**
 * The Chromium that browser tests drive: the system's when there is one (`/usr/bin/chromium`, or
 * `chromium` on PATH), else the build that the `@sparticuz/chromium` dev dependency carries inside its
 * npm package. So `npm ci` alone is enough: no apt step, no browser download, no install script.
 */
export class Chromium extends Context.Tag("@effect-weaver/cli/test/Chromium")<Chromium, {
  readonly executablePath: string
  /** A new headless browser with a fresh profile, closed with the scope. */
  readonly launch: Effect.Effect<Browser, never, Scope.Scope>
}>() {}

/**
 * On this workplace's closed network, Chromium's background connections are refused; these flags keep
 * it from trying. Playwright adds `--headless` and a fresh `--user-data-dir` (a new temporary profile
 * per launch, removed on close).
 */
const args = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync"
]

const isExecutable = (path: string) => {
  try {
    Fs.accessSync(path, Fs.constants.X_OK)
    return Fs.statSync(path).isFile()
  } catch {
    return false
  }
}

const systemChromium = (): string | undefined =>
  ["/usr/bin", ...(process.env.PATH ?? "").split(Path.delimiter).filter((dir) => dir !== "")]
    .map((dir) => Path.join(dir, "chromium"))
    .find(isExecutable)

/**
 * Unpacks the packaged Chromium (about 200 MB from its brotli archives, a few seconds) into a fresh
 * directory, removed with the scope. `@sparticuz/chromium` unpacks into `os.tmpdir()`, and reuses
 * whatever it finds there, so it runs in a child process whose TMPDIR is that directory: no shared
 * /tmp/chromium, half-written by an interrupted run or another test run.
 */
const unpack: Effect.Effect<string, Error, Scope.Scope> = Effect.gen(function*() {
  if (process.arch !== "x64") {
    return yield* Effect.fail(
      new Error(
        `no Chromium for the browser tests: @sparticuz/chromium ships an x64 build only (this is ${process.arch}); ` +
          `install the system's ("apt-get install chromium")`
      )
    )
  }
  const dir = yield* Effect.acquireRelease(
    Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-weaver-chromium-"))),
    (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
  )
  const entry = createRequire(import.meta.url).resolve("@sparticuz/chromium")
  const script = "require(process.argv[1]).default.executablePath().then((path) => process.stdout.write(path))"
  const executablePath = yield* Effect.async<string, Error>((resume) => {
    const child = ChildProcess.execFile(
      process.execPath,
      ["-e", script, entry],
      { env: { ...process.env, TMPDIR: dir }, timeout: 120_000 },
      (error, stdout, stderr) =>
        resume(
          error === null
            ? Effect.succeed(stdout)
            : Effect.fail(new Error(`unpacking @sparticuz/chromium failed: ${error.message}\n${stderr}`))
        )
    )
    return Effect.sync(() => child.kill("SIGKILL"))
  })
  if (Path.dirname(executablePath) !== dir || !isExecutable(executablePath)) {
    return yield* Effect.fail(new Error(`@sparticuz/chromium unpacked to ${executablePath}, not into ${dir}`))
  }
  return executablePath
})

/**
 * The browser's language. Under the C locale (LANG=C.UTF-8 on these machines) the packaged build reports
 * `navigator.language` as "en-US@posix", which is not a BCP 47 tag: `new Intl.NumberFormat(navigator.language)`
 * (uPlot, on load) throws "Invalid language tag". A browser a person runs has a real language.
 */
const env = { ...process.env, LANG: "en_US.UTF-8", LC_ALL: "en_US.UTF-8" }

/** Finds or unpacks Chromium once, for every test that uses the layer. */
export const layer: Layer.Layer<Chromium, Error> = Layer.scoped(
  Chromium,
  Effect.gen(function*() {
    const executablePath = systemChromium() ?? (yield* unpack)
    const launch = Effect.acquireRelease(
      Effect.promise(() => chromium.launch({ executablePath, headless: true, args, env })),
      (browser) => Effect.promise(() => browser.close())
    )
    return { executablePath, launch }
  })
)
