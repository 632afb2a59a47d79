/**
 * What the replicas of the Multi runner run: the app module and the weavelet
 * entry bundled into one ES module file with esbuild.
 *
 * The app module is often TypeScript (tests import `src/app.ts`), which
 * vitest compiles in the test process but Node cannot load in a child. Three
 * ways were weighed:
 * - `--import tsx` in the child (what the runner did first) needs tsx in the
 *   app, which an app need not have.
 * - A module loader shipped here (`module.register` with a transform) would
 *   re-implement what tsx does: `.js` specifiers that name `.ts` files,
 *   tsconfig paths, `.mts`/`.cts`, custom conditions, Node version quirks.
 * - A bundle needs none of that: esbuild resolves and compiles everything
 *   once, in this process, with the conditions this process resolved its own
 *   modules with, and the child runs plain JavaScript with no flags. It is
 *   the same kind of file `weaver multi deploy` runs (`weaver bundle`), so
 *   the replicas of a test start as fast as deployed ones.
 *
 * The bundle is the most robust, so the runner bundles. Its costs: esbuild
 * runs once per app module in each test process (a fraction of a second),
 * and code in the bundle sees the bundle's `import.meta.url`, not its own
 * file's (an app that reads files next to its modules must locate them some
 * other way, as it must under `weaver bundle`). The bundle is written under
 * the `node_modules` nearest the app module, so that the packages it leaves
 * out (native addons) resolve from it as they do from the app.
 *
 * @internal
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import type * as Esbuild from "esbuild"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Url from "node:url"

/** @internal */
export class AppBundleError extends Data.TaggedError("AppBundleError")<{ readonly reason: string }> {
  override get message(): string {
    return this.reason
  }
}

/** @internal */
export interface AppBundle {
  /** The `node` arguments that start a replica. */
  readonly args: ReadonlyArray<string>
  /** The URL of the bundle, the module the weavelet imports the app from. */
  readonly moduleUrl: string
}

// Packages that load native addons or ship executables by path: a bundle cannot carry them
// (the same list as `weaver bundle`'s).
const external = ["@datadog/pprof", "msgpackr-extract", "esbuild", "fsevents"]

// CommonJS dependencies call `require`, which an ES module lacks; the banner defines one.
const banner = `import { createRequire as __weaverCreateRequire } from "node:module";
const require = __weaverCreateRequire(import.meta.url);`

// When this module is the TypeScript source (this repository's own tests, which resolve packages with the
// `@effect-weaver/source` condition), the replicas are bundled from the sources too.
const here = Url.fileURLToPath(import.meta.url)
const conditions = /\.[cm]?ts$/.test(here) ? ["@effect-weaver/source"] : []

interface Built {
  readonly bundle: AppBundle
  /** The bundled files from outside `node_modules`, the app's own, checked for changes at every use. */
  readonly sources: ReadonlyArray<string>
  readonly startedAt: number
}

const bundles = new Map<string, Promise<Built>>()

/**
 * The bundle of the app module at `module` (a path or `file:` URL), shared
 * by the tests of this process until one of the app's own files changes
 * (vitest's watch mode reruns tests in the same process).
 *
 * @internal
 */
export const make = (
  module: string,
  /**
   * What the bundle starts: a replica process's weavelet, a worker thread's (`transport-worker`), or a thread of
   * a simulator's search (`Sim.search` with `workers`).
   */
  weavelet: Entry = "process"
): Effect.Effect<AppBundle, AppBundleError> =>
  Effect.tryPromise({
    try: async () => {
      const file = module.startsWith("file:") ? Url.fileURLToPath(module) : module
      const key = `${weavelet}:${file}`
      const cached = await bundles.get(key)?.catch(() => undefined)
      // Reused unless the app changed or the file is gone (removed as too old by another process).
      if (cached !== undefined && !changed(cached) && touch(cached.bundle.args[0]!)) return cached.bundle
      const building = build(file, weavelet)
      bundles.set(key, building)
      // A failed build is not kept: the next test tries again (the file may have been fixed).
      building.catch(() => bundles.get(key) === building && bundles.delete(key))
      return (await building).bundle
    },
    catch: (error) => error instanceof AppBundleError ? error : new AppBundleError({ reason: String(error) })
  })

const changed = (built: Built): boolean =>
  built.sources.some((source) => {
    try {
      return Fs.statSync(source).mtimeMs >= built.startedAt
    } catch {
      return true
    }
  })

/** @internal */
export type Entry = "process" | "worker" | "sim"

const entries: Record<Entry, string> = {
  process: `import { main } from "@effect-weaver/transport-multiprocess/Weavelet"`,
  worker: `import { main } from "@effect-weaver/transport-worker/Worker"`,
  // Relative: the simulator's thread is internal to this package (resolved from this directory, see resolveDir).
  sim: `import { main } from "./simWorker.js"`
}

const build = async (file: string, weavelet: Entry): Promise<Built> => {
  const startedAt = Date.now()
  const esbuild = await import("esbuild")
  const appPath = JSON.stringify(file)
  let contents: Uint8Array
  let inputs: ReadonlyArray<string>
  try {
    const result = await esbuild.build({
      // The app's exports (what the weavelet looks for), and the weavelet started once this module has been
      // evaluated: it imports the app from this very module, by its URL, which must not be mid-evaluation.
      stdin: {
        contents: [
          `export * from ${appPath}`,
          `import * as app from ${appPath}`,
          `export default app.default`,
          entries[weavelet],
          `setImmediate(main)`
        ].join("\n"),
        // The weavelet is resolved from this package, which depends on it; the app by its absolute path.
        resolveDir: Path.dirname(here),
        sourcefile: "weavertest-replica.js"
      },
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      conditions,
      outfile: "replica.mjs",
      write: false,
      external,
      banner: { js: banner },
      metafile: true,
      logLevel: "silent"
    })
    contents = result.outputFiles[0]!.contents
    inputs = Object.keys(result.metafile.inputs)
  } catch (error) {
    const errors = (error as { errors?: Array<Esbuild.Message> }).errors
    throw new AppBundleError({
      reason: `weavertest: cannot bundle the ${weavelet === "sim" ? "workload" : "app"} module ${file} for ${
        weavelet === "sim" ? "the simulator's worker threads" : "the Multi runner's processes"
      }:\n${
        Array.isArray(errors)
          ? esbuild.formatMessagesSync(errors, { kind: "error" }).join("").trimEnd()
          : String(error)
      }`
    })
  }
  const out = write(cacheDir(Path.dirname(file)), contents)
  return {
    bundle: { args: [out], moduleUrl: Url.pathToFileURL(out).href },
    sources: inputs.filter((input) => !/node_modules\/|^<|:/.test(input))
      .map((input) => Path.resolve(input)),
    startedAt
  }
}

/** `node_modules/.cache/weavertest` in the `node_modules` nearest `dir`, or a temporary directory. */
const cacheDir = (dir: string): string => {
  for (let current = dir;; current = Path.dirname(current)) {
    const modules = Path.join(current, "node_modules")
    if (Fs.existsSync(modules)) {
      const cache = Path.join(modules, ".cache", "weavertest")
      Fs.mkdirSync(cache, { recursive: true })
      return cache
    }
    if (Path.dirname(current) === current) {
      const cache = Path.join(Os.tmpdir(), "weavertest")
      Fs.mkdirSync(cache, { recursive: true })
      return cache
    }
  }
}

// Every use marks a bundle as recent, so only bundles of earlier versions of the app get this old.
const maxAge = 60 * 60 * 1000

const touch = (file: string): boolean => {
  const now = new Date()
  try {
    Fs.utimesSync(file, now, now)
    return true
  } catch {
    return false
  }
}

/**
 * Writes a bundle under its content's hash, so that test processes (vitest
 * runs one per test file, and they may be killed without running exit
 * handlers) share one file per version of the app instead of leaving one
 * each; a bundle no process has written or used for an hour is removed.
 */
const write = (dir: string, contents: Uint8Array): string => {
  const hash = Crypto.createHash("sha256").update(contents).digest("hex").slice(0, 16)
  const out = Path.join(dir, `app-${hash}.mjs`)
  if (!touch(out)) {
    // Renamed into place, so that a concurrent test process never runs a half-written file.
    const temporary = `${out}.${process.pid}.tmp`
    Fs.writeFileSync(temporary, contents)
    Fs.renameSync(temporary, out)
  }
  for (const name of Fs.readdirSync(dir)) {
    const path = Path.join(dir, name)
    try {
      if (path !== out && Date.now() - Fs.statSync(path).mtimeMs > maxAge) Fs.rmSync(path, { force: true })
    } catch {
      // Removed by another process meanwhile.
    }
  }
  return out
}
