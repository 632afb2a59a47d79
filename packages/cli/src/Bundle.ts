/**
 * `weaver bundle`: an application's entry and everything it imports as one
 * ES module file, the Node counterpart of the binary Service Weaver deploys.
 *
 * Node 20 loads an ES module graph file by file, and an app on Effect is
 * about 1,200 files: importing them takes about a second in every process a
 * deployer starts. One bundled file loads in a fraction of that, which is
 * what lets `weaver multi deploy` answer its first request quickly. The
 * runtimes `Weaver.run` picks from (single process, weavelet) are imported
 * by `@effect-weaver/core` itself, so the bundle carries them. A bundle has a
 * source map that leads back through the compiled
 * JavaScript to the application's TypeScript sources, so stack traces and
 * log lines name its `.ts` files. The map leaves out the code from
 * `node_modules`, whose frames show bundle positions: Node decodes a whole
 * map on the first stack trace, and the full one costs every process about
 * half a second at start-up.
 *
 * @since 0.1.0
 */
import { decode, encode, type SourceMapSegment } from "@jridgewell/sourcemap-codec"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import type * as esbuild from "esbuild"
import * as Fs from "node:fs"
import { createRequire } from "node:module"
import * as Path from "node:path"

/**
 * The bundle could not be built: a missing entry, an import that does not
 * resolve, a syntax error. The reason carries esbuild's messages with their
 * file and line.
 *
 * @since 0.1.0
 * @category errors
 */
export class BundleError extends Data.TaggedError("BundleError")<{
  readonly reason: string
}> {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return this.reason
  }
}

/**
 * Packages left out of every bundle and imported from `node_modules` at run
 * time: they load native addons or ship executables by path, which a bundle
 * cannot carry; or, for @peculiar/x509 and the Reflect polyfill it needs,
 * only a deployer loads them, when it makes a deployment's certificates
 * (`Certificates.makeAuthority`), and half a megabyte of them would
 * otherwise be parsed at every start of every process.
 *
 * @since 0.1.0
 * @category constants
 */
export const alwaysExternal: ReadonlyArray<string> = [
  "@datadog/pprof",
  "msgpackr-extract",
  "esbuild",
  "fsevents",
  "@peculiar/x509",
  "reflect-metadata"
]

/**
 * CommonJS packages that Effect's Node platform imports when it loads but an
 * application seldom uses: undici (its HTTP client) and ws (WebSockets). They
 * are a third of a bundle and would be parsed and run at every start, so a
 * bundle loads them from `node_modules` the first time one of their exports
 * is read instead (or, with `bundleOnUse`, carries them but runs them only
 * then: for a program that does use them, such as the `weaver` CLI's proxy).
 *
 * @since 0.1.0
 * @category constants
 */
export const loadedOnUse: ReadonlyArray<string> = ["undici", "ws"]

/**
 * What {@link make} wrote.
 *
 * @since 0.1.0
 * @category models
 */
export interface Bundled {
  readonly out: string
  readonly bytes: number
  readonly inputs: number
  readonly warnings: ReadonlyArray<string>
}

/**
 * The default output of `weaver bundle <entry>`: `<entry's name>.bundle.mjs`
 * next to it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const defaultOut = (entry: string): string =>
  Path.join(Path.dirname(entry), `${Path.basename(entry).replace(/\.[cm]?[jt]sx?$/, "")}.bundle.mjs`)

// CommonJS dependencies in an ES module bundle call `require` (for Node built-ins among others),
// which ES modules do not have; the banner defines one, under a name no bundled module can clash with: when
// the entry is itself a bundle (`weaver kube deploy` bundles the binary weaver.toml names, often one already),
// its own banner's name is taken, so the next free one is used.
const banner = (entryText: string) => {
  let name = "__weaverCreateRequire"
  for (let n = 2; entryText.includes(name); n++) name = `__weaverCreateRequire${n}`
  return `import { createRequire as ${name} } from "node:module";
const require = ${name}(import.meta.url);`
}

/**
 * Bundles `entry` into the ES module `out` (with `out.map`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = Effect.fnUntraced(function*(options: {
  readonly entry: string
  readonly out?: string | undefined
  readonly external?: ReadonlyArray<string> | undefined
  readonly bundleOnUse?: boolean | undefined
}) {
  const entry = Path.resolve(options.entry)
  const out = Path.resolve(options.out ?? defaultOut(entry))
  if (!Fs.existsSync(entry)) {
    return yield* new BundleError({ reason: `the entry ${entry} does not exist; build it first (npm run build)` })
  }
  if (out === entry) return yield* new BundleError({ reason: `the bundle would overwrite its entry ${entry}` })
  // Loaded here, not with the CLI: every other command would pay for it at start-up.
  const esbuild = yield* Effect.promise(() => import("esbuild"))
  const result = yield* Effect.tryPromise({
    try: () =>
      esbuild.build({
        entryPoints: [entry],
        bundle: true,
        platform: "node",
        format: "esm",
        target: "node20",
        outfile: out,
        sourcemap: "linked",
        // Stack traces need positions only; the sources would triple the map's size and its parse time.
        sourcesContent: false,
        external: [...alwaysExternal, ...(options.external ?? [])],
        plugins: [onUse(loadedOnUse, Path.dirname(out), options.bundleOnUse === true)],
        banner: { js: banner(Fs.readFileSync(entry, "utf8")) },
        // A third less to parse at every start; identifiers keep their names for stack traces.
        minifyWhitespace: true,
        minifySyntax: true,
        metafile: true,
        logLevel: "silent"
      }),
    catch: (error) =>
      new BundleError({
        reason: `cannot bundle ${entry}:\n${
          isBuildFailure(error)
            ? esbuild.formatMessagesSync(error.errors, { kind: "error" }).join("").trimEnd()
            : String(error)
        }`
      })
  })
  yield* Effect.try({
    try: () => trimSourceMap(`${out}.map`),
    catch: (error) => new BundleError({ reason: `cannot rewrite the source map ${out}.map: ${String(error)}` })
  })
  return {
    out,
    bytes: Fs.statSync(out).size,
    inputs: Object.keys(result.metafile.inputs).length,
    warnings: esbuild.formatMessagesSync(result.warnings, { kind: "warning" })
  } satisfies Bundled
})

/**
 * Stands a module in for each of `packages` (see {@link loadedOnUse}) whose
 * exports are getters that require the package (a path relative to the
 * bundle, as resolved now) on first read: from `node_modules`, or with
 * `bundled` from the bundle, which runs a CommonJS module on its first
 * require. The export names are read from the package itself, here. A
 * package that cannot be loaded here is bundled as usual.
 */
const onUse = (packages: ReadonlyArray<string>, outDir: string, bundled: boolean): esbuild.Plugin => ({
  name: "weaver-load-on-use",
  setup(build) {
    const namespace = "weaver-load-on-use"
    const filter = new RegExp(`^(${packages.map((name) => name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|")})$`)
    if (!bundled) build.onResolve({ filter: /.*/, namespace }, (args) => ({ path: args.path, external: true }))
    build.onResolve({ filter }, (args) => {
      const require = createRequire(Path.join(args.resolveDir, "importer.js"))
      let file: string
      let names: ReadonlyArray<string>
      try {
        file = require.resolve(args.path)
        names = Object.keys(require(file) as object).filter((name) => name !== "default")
      } catch {
        return undefined
      }
      const relative = Path.relative(outDir, file).split(Path.sep).join("/")
      return {
        path: args.path,
        namespace,
        pluginData: { file: relative.startsWith(".") ? relative : `./${relative}`, names }
      }
    })
    build.onLoad({ filter: /.*/, namespace }, (args) => {
      const { file, names } = args.pluginData as { readonly file: string; readonly names: ReadonlyArray<string> }
      return {
        loader: "js",
        resolveDir: outDir,
        contents: `let loaded
const load = () => loaded ??= require(${JSON.stringify(file)})
for (const name of ${JSON.stringify(names)}) {
  Object.defineProperty(exports, name, { enumerable: true, get: () => load()[name] })
}
`
      }
    })
  }
})

const isBuildFailure = (error: unknown): error is esbuild.BuildFailure =>
  typeof error === "object" && error !== null && Array.isArray((error as esbuild.BuildFailure).errors)

/**
 * Drops the mappings into `node_modules` from a source map, the sources no
 * mapping uses any more, and the names.
 */
const trimSourceMap = (file: string): void => {
  const map = JSON.parse(Fs.readFileSync(file, "utf8")) as { sources: Array<string>; mappings: string }
  const renumbered = map.sources.map(() => -1)
  const sources: Array<string> = []
  const lines = decode(map.mappings).map((segments) =>
    segments.filter((segment) => {
      if (segment.length === 1 || map.sources[segment[1]]!.includes("node_modules/")) return false
      if (renumbered[segment[1]] === -1) renumbered[segment[1]] = sources.push(map.sources[segment[1]]!) - 1
      segment[1] = renumbered[segment[1]]!
      return true
    }).map(([column, source, line, sourceColumn]): SourceMapSegment => [column, source!, line!, sourceColumn!])
  )
  // Names (of identifiers, mostly in node_modules) are not used by stack traces.
  Fs.writeFileSync(file, JSON.stringify({ ...map, sources, names: [], mappings: encode(lines) }))
}
