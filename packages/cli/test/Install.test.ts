/**
 * An application outside this repository installs effect-weaver from packed
 * tarballs, as it would from the registry, and uses it: the types check, its
 * weavertest tests pass under Local, RPC, Multi and Worker (with no tsx installed),
 * and the built app answers HTTP under `npx weaver single deploy` and
 * `npx weaver multi deploy`.
 *
 * Needs the packages built (`npm test` builds first). Everything happens in
 * a fresh temporary directory with one `npm install`; nothing is reused from
 * an earlier run. Set WEAVER_INSTALL_KEEP=1 to keep the directory.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Http from "node:http"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("../../../", import.meta.url))
// Every package under packages/: a new one is packed and checked without being listed here.
const packages = Fs.readdirSync(Path.join(root, "packages")).filter((name) =>
  Fs.existsSync(Path.join(root, "packages", name, "package.json"))
)

interface PackageJson {
  readonly name: string
  readonly version: string
  readonly private?: boolean
  readonly dependencies?: Record<string, string>
  readonly devDependencies?: Record<string, string>
  readonly peerDependencies?: Record<string, string>
}

const readJson = <A>(file: string): A => JSON.parse(Fs.readFileSync(file, "utf8")) as A
const manifest = (name: string) => readJson<PackageJson>(Path.join(root, "packages", name, "package.json"))
const rootManifest = readJson<PackageJson>(Path.join(root, "package.json"))
const version = manifest("core").version

// The registry packages of the app, at the versions the packages ask for (their peers) and the repo uses.
const pin = (name: string): string => {
  for (const pkg of packages) {
    const wanted = manifest(pkg).peerDependencies?.[name]
    if (wanted !== undefined) return wanted
  }
  const wanted = rootManifest.devDependencies?.[name] ?? rootManifest.dependencies?.[name]
  if (wanted === undefined) throw new Error(`no version of ${name} in the packages or the root package.json`)
  return wanted
}

// The environment of every command: this process's, without what npm and vitest put there for the repo
// (npm_* settings, its node_modules/.bin on PATH, NODE_OPTIONS), so the app sees nothing of the repository.
const env = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => {
  const clean: NodeJS.ProcessEnv = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (/^(npm_|vitest|node_options$|node_env$|test$|init_cwd$)/i.test(key)) continue
    clean[key] = value
  }
  clean.PATH = (process.env.PATH ?? "").split(Path.delimiter).filter((dir) => !dir.includes("node_modules"))
    .join(Path.delimiter)
  return { ...clean, NO_COLOR: "1", ...extra }
}

interface Output {
  readonly stdout: string
  /** stdout and stderr, interleaved. */
  readonly output: string
}

/** Runs a command to completion; fails with its whole output unless it exits with 0. */
const exec = (
  command: string,
  args: ReadonlyArray<string>,
  options: { readonly cwd: string; readonly timeout: number; readonly env?: NodeJS.ProcessEnv }
): Promise<Output> =>
  new Promise((resolve, reject) => {
    const line = `${command} ${args.join(" ")}`
    const child = ChildProcess.spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? env(),
      stdio: ["ignore", "pipe", "pipe"],
      detached: true
    })
    let stdout = ""
    let output = ""
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk
      output += chunk
    })
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (output += chunk))
    const timer = setTimeout(() => {
      killGroup(child.pid, "SIGKILL")
      reject(new Error(`\`${line}\` (in ${options.cwd}) did not finish within ${options.timeout} ms:\n${output}`))
    }, options.timeout)
    child.once("error", (error) => {
      clearTimeout(timer)
      reject(new Error(`cannot run \`${line}\`: ${error.message}`))
    })
    child.once("close", (code) => {
      clearTimeout(timer)
      if (code === 0) resolve({ stdout, output })
      else reject(new Error(`\`${line}\` (in ${options.cwd}) exited with ${code}:\n${output}`))
    })
  })

const killGroup = (pid: number | undefined, signal: NodeJS.Signals): void => {
  if (pid === undefined) return
  try {
    process.kill(-pid, signal)
  } catch {
    // Gone already.
  }
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = Net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as Net.AddressInfo
      server.close(() => resolve(port))
    })
  })

const get = (url: string): Promise<{ readonly status: number; readonly body: string }> =>
  new Promise((resolve, reject) => {
    const request = Http.get(url, { timeout: 5_000 }, (response) => {
      let body = ""
      response.setEncoding("utf8").on("data", (chunk: string) => (body += chunk))
      response.once("end", () => resolve({ status: response.statusCode ?? 0, body }))
      response.once("error", reject)
    })
    request.once("timeout", () => request.destroy(new Error(`GET ${url} timed out`)))
    request.once("error", reject)
  })

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

let dir: string
let packs: string
let app: string
const packed = new Map<string, { readonly filename: string; readonly files: ReadonlyArray<string> }>()

const files: Record<string, string> = {
  "src/Reverser.ts": `import { Component } from "@effect-weaver/core"
import { Effect, Schema } from "effect"

export class Reverser extends Component.Tag("app/Reverser")<Reverser>()({
  reverse: Component.method({ payload: Schema.String, success: Schema.String })
}) {}

export const ReverserImpl = Component.implement(
  Reverser,
  Effect.succeed({ reverse: (s: string) => Effect.succeed([...s].reverse().join("")) })
)
`,
  "src/Greeter.ts": `import { Component } from "@effect-weaver/core"
import { Effect, Schema } from "effect"
import { Reverser } from "./Reverser.js"

export class Greeter extends Component.Tag("app/Greeter")<Greeter>()({
  greet: Component.method({ payload: Schema.String, success: Schema.String })
}) {}

export const GreeterImpl = Component.implement(
  Greeter,
  Effect.gen(function*() {
    const reverser = yield* Reverser
    return { greet: (name: string) => Effect.map(reverser.reverse(name), (reversed) => \`Hello, \${reversed}!\`) }
  })
)
`,
  "src/app.ts": `import { Weaver } from "@effect-weaver/core"
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect, Schema } from "effect"
import { Greeter, GreeterImpl } from "./Greeter.js"
import { ReverserImpl } from "./Reverser.js"

const Params = Schema.Struct({ name: Schema.String })

export const Main = Weaver.main(
  Effect.gen(function*() {
    const greeter = yield* Greeter
    yield* Weaver.serve(
      "hello",
      HttpRouter.empty.pipe(
        HttpRouter.get(
          "/hello",
          Effect.gen(function*() {
            const { name } = yield* HttpServerRequest.schemaSearchParams(Params)
            return HttpServerResponse.text(yield* greeter.greet(name))
          }).pipe(
            Effect.catchTag("ParseError", (e) => HttpServerResponse.text(e.message, { status: 400 })),
            Effect.catchTag("RemoteCallError", (e) => HttpServerResponse.text(e.message, { status: 503 }))
          )
        )
      )
    )
  }),
  { listeners: ["hello"] }
)

export const app = Weaver.app({ main: Main, components: [GreeterImpl, ReverserImpl] })
`,
  "src/main.ts": `import { Weaver } from "@effect-weaver/core"
import { NodeRuntime } from "@effect/platform-node"
import { app } from "./app.js"

Weaver.run(app).pipe(NodeRuntime.runMain)
`,
  "test/app.test.ts": `import { weavertest } from "@effect-weaver/weavertest"
import { assert } from "@effect/vitest"
import { Effect } from "effect"
import { app } from "../src/app.js"
import { Greeter } from "../src/Greeter.js"

for (const runner of weavertest.allRunners()) {
  runner.test("greets through two components", app, Effect.gen(function*() {
    const greeter = yield* Greeter
    assert.strictEqual(yield* greeter.greet("abc"), "Hello, cba!")
  }))
}
`,
  "tsconfig.json": JSON.stringify(
    {
      compilerOptions: {
        target: "ES2022",
        module: "NodeNext",
        moduleResolution: "NodeNext",
        lib: ["ES2022"],
        types: ["node"],
        strict: true,
        exactOptionalPropertyTypes: true,
        // The Effect family's own declarations need the DOM library; ours are checked through their use.
        skipLibCheck: true,
        noEmit: true
      },
      include: ["src", "test"]
    },
    null,
    2
  ),
  "tsconfig.build.json": JSON.stringify(
    {
      extends: "./tsconfig.json",
      compilerOptions: { noEmit: false, rootDir: "src", outDir: "dist" },
      include: ["src"]
    },
    null,
    2
  )
}

beforeAll(async () => {
  for (const name of packages) {
    for (const file of ["dist/index.js", "dist/index.d.ts", ...(name === "cli" ? ["dist/weaver.mjs"] : [])]) {
      if (!Fs.existsSync(Path.join(root, "packages", name, file))) {
        throw new Error(`packages/${name}/${file} is missing: run \`npm run build\` first`)
      }
    }
  }
  dir = Fs.realpathSync(Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-weaver-install-")))
  packs = Path.join(dir, "packs")
  app = Path.join(dir, "app")
  Fs.mkdirSync(packs)
  await Promise.all(packages.map(async (name) => {
    const { stdout } = await exec("npm", ["pack", "--json", "--pack-destination", packs], {
      cwd: Path.join(root, "packages", name),
      timeout: 120_000
    })
    const [result] = JSON.parse(stdout) as ReadonlyArray<{
      readonly name: string
      readonly filename: string
      readonly files: ReadonlyArray<{ readonly path: string }>
    }>
    packed.set(result!.name, { filename: result!.filename, files: result!.files.map((file) => file.path) })
  }))
  const tarball = (name: string) => `file:../packs/${packed.get(name)!.filename}`
  Fs.mkdirSync(app)
  for (const [file, text] of Object.entries(files)) {
    Fs.mkdirSync(Path.dirname(Path.join(app, file)), { recursive: true })
    Fs.writeFileSync(Path.join(app, file), text)
  }
  const direct = [
    "@effect-weaver/core",
    "@effect-weaver/cli",
    "@effect-weaver/weavertest"
  ]
  Fs.writeFileSync(
    Path.join(app, "package.json"),
    JSON.stringify(
      {
        name: "weaver-install-app",
        private: true,
        type: "module",
        dependencies: {
          "@effect-weaver/core": tarball("@effect-weaver/core"),
          "@effect/platform": pin("@effect/platform"),
          "@effect/platform-node": pin("@effect/platform-node"),
          effect: pin("effect")
        },
        devDependencies: {
          "@effect-weaver/cli": tarball("@effect-weaver/cli"),
          "@effect-weaver/weavertest": tarball("@effect-weaver/weavertest"),
          "@effect/vitest": pin("@effect/vitest"),
          "@types/node": pin("@types/node"),
          typescript: pin("typescript"),
          vitest: pin("vitest")
        },
        // The packages ask for each other by version, which the registry does not have (or is not ours):
        // every one of them comes from its tarball.
        overrides: Object.fromEntries(
          [...packed.keys()].map((name) => [name, direct.includes(name) ? `$${name}` : tarball(name)])
        )
      },
      null,
      2
    )
  )
  await exec("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund"], { cwd: app, timeout: 480_000 })
}, 600_000)

afterAll(async () => {
  if (dir !== undefined && process.env.WEAVER_INSTALL_KEEP === undefined) {
    await Fs.promises.rm(dir, { recursive: true, force: true })
  }
}, 300_000)

describe("an app outside the repository", () => {
  it("gets publishable packages: built JS and types, sources, no tests or build state", () => {
    for (const name of packages) {
      const pkg = manifest(name)
      assert.notStrictEqual(pkg.private, true, `${pkg.name} is private`)
      assert.strictEqual(pkg.version, version, `${pkg.name}'s version`)
      for (const [dep, wanted] of Object.entries({ ...pkg.dependencies, ...pkg.peerDependencies })) {
        if (dep.startsWith("@effect-weaver/")) assert.strictEqual(wanted, version, `${pkg.name} → ${dep}`)
      }
      const files = [...(packed.get(pkg.name)?.files ?? [])]
      const stray = files.filter((file) =>
        !/^(dist|src)\/.+\.(js|mjs|ts|map)$/.test(file) &&
        !["package.json", "README.md", "bin/weaver.js"].includes(file)
      )
      assert.deepStrictEqual(stray, [], `${pkg.name} packs stray files`)
      const tests = files.filter((file) => /(^|\/)(test|tests|__tests__)\/|\.test\.|tsbuildinfo/.test(file))
      assert.deepStrictEqual(tests, [], `${pkg.name} packs tests or build state`)
      assert.includeMembers(files, ["package.json", "dist/index.js", "dist/index.d.ts"], pkg.name)
    }
    assert.includeMembers([...packed.get("@effect-weaver/cli")!.files], ["bin/weaver.js", "dist/weaver.mjs"])
  })

  it("installs every package from its tarball, one copy of effect, and no tsx", () => {
    const lock = readJson<{ packages: Record<string, { readonly resolved?: string; readonly version?: string }> }>(
      Path.join(app, "package-lock.json")
    )
    for (const name of packed.keys()) {
      const entries = Object.entries(lock.packages).filter(([path]) => path.endsWith(`node_modules/${name}`))
      assert.deepStrictEqual(
        entries.map(([path, entry]) => [path, entry.resolved]),
        [[`node_modules/${name}`, `file:../packs/${packed.get(name)!.filename}`]],
        `${name} in the app's package-lock.json`
      )
    }
    for (const shared of ["effect", "@effect/platform", "@effect/platform-node"]) {
      const copies = Object.keys(lock.packages).filter((path) => path.endsWith(`node_modules/${shared}`))
      assert.deepStrictEqual(copies, [`node_modules/${shared}`], `copies of ${shared}`)
    }
    assert.isFalse(Fs.existsSync(Path.join(app, "node_modules", "tsx")), "tsx is installed in the app")
  })

  it("type-checks against the packed declarations", async () => {
    await exec("npx", ["tsc", "-p", "tsconfig.json"], { cwd: app, timeout: 240_000 })
  }, 300_000)

  it("runs its weavertest tests under Local, RPC, Multi and Worker", async () => {
    const { output } = await exec("npx", ["vitest", "run", "--reporter=verbose"], { cwd: app, timeout: 240_000 })
    for (const runner of ["Local", "RPC", "Multi", "Worker"]) {
      assert.match(output, new RegExp(`✓ .*${runner}/greets through two components`), output)
    }
    assert.match(output, /Tests\s+4 passed \(4\)/, output)
  }, 300_000)

  describe("built", () => {
    let ports: { readonly single: number; readonly multi: number }
    const config = (binary: string) =>
      `[serviceweaver]
name = "installapp"
binary = "${binary}"

[single]
listeners.hello = { address = "127.0.0.1:${ports.single}" }

[multi]
listeners.hello = { address = "127.0.0.1:${ports.multi}" }
`

    beforeAll(async () => {
      await exec("npx", ["tsc", "-p", "tsconfig.build.json"], { cwd: app, timeout: 240_000 })
      // The compiled entry as is, and bundled.
      await exec("npx", ["weaver", "bundle", "dist/main.js", "--out", "dist/app.mjs"], { cwd: app, timeout: 120_000 })
      ports = { single: await freePort(), multi: await freePort() }
      Fs.writeFileSync(Path.join(app, "weaver.toml"), config("./dist/main.js"))
      Fs.writeFileSync(Path.join(app, "weaver-bundle.toml"), config("./dist/app.mjs"))
    }, 300_000)

    const deploy = async (tool: "single" | "multi", configFile = "weaver.toml") => {
      const port = ports[tool]
      const line = `npx weaver ${tool} deploy ${configFile}`
      // Its own process group: npx runs weaver through a shell and does not pass SIGTERM on, so the signal
      // goes to the group, as a terminal's Ctrl-C does. Weaver then stops the app's processes and waits.
      const child = ChildProcess.spawn("npx", ["weaver", tool, "deploy", configFile], {
        cwd: app,
        env: env({ XDG_DATA_HOME: Path.join(dir, "data"), SERVICEWEAVER_LOG_DIR: Path.join(dir, "logs") }),
        stdio: ["ignore", "pipe", "pipe"],
        detached: true
      })
      let output = ""
      child.stdout.setEncoding("utf8").on("data", (chunk: string) => (output += chunk))
      child.stderr.setEncoding("utf8").on("data", (chunk: string) => (output += chunk))
      let exited = false
      const closed = new Promise<number | null>((resolve) =>
        child.once("close", (code) => {
          exited = true
          resolve(code)
        })
      )
      const fail = (reason: string): never => {
        throw new Error(`\`${line}\` (in ${app}): ${reason}\n--- output\n${output}`)
      }
      const pids = new Set<number>()
      try {
        const url = `http://127.0.0.1:${port}/hello?name=abc`
        let answer: { readonly status: number; readonly body: string } | undefined
        for (const deadline = Date.now() + 90_000; answer === undefined;) {
          if (exited) fail("exited before answering")
          if (Date.now() > deadline) fail(`no answer from ${url} within 90 s`)
          answer = await get(url).catch(() => undefined)
          if (answer === undefined) await sleep(250)
        }
        assert.deepStrictEqual(answer, { status: 200, body: "Hello, cba!" }, output)
        // The app's processes, from the deployment registry, to check that they all stop.
        const registry = Path.join(dir, "data", "serviceweaver", tool, "registry")
        for (const file of Fs.existsSync(registry) ? Fs.readdirSync(registry) : []) {
          if (!file.endsWith(".json")) continue
          const entry = readJson<{ pid: number; components: Array<{ pids: Array<number> }> }>(Path.join(registry, file))
          for (const pid of [entry.pid, ...entry.components.flatMap((component) => component.pids)]) pids.add(pid)
        }
      } finally {
        killGroup(child.pid, "SIGTERM")
        const stopped = await Promise.race([closed.then(() => true), sleep(30_000).then(() => false)])
        if (!stopped) {
          killGroup(child.pid, "SIGKILL")
          for (const pid of pids) killGroup(pid, "SIGKILL")
          fail("did not exit within 30 s of SIGTERM")
        }
      }
      assert.isAbove(pids.size, 0, `no deployment in the registry\n${output}`)
      for (const deadline = Date.now() + 10_000; [...pids].some(alive) && Date.now() < deadline;) await sleep(100)
      assert.deepStrictEqual([...pids].filter(alive), [], `processes left running after SIGTERM\n${output}`)
      const after = await get(`http://127.0.0.1:${port}/hello?name=abc`).then(() => "answered", () => "refused")
      assert.strictEqual(after, "refused", `the listener still answers after the deployer exited\n${output}`)
    }

    it("answers HTTP under npx weaver single deploy, and stops on SIGTERM", () => deploy("single"), 180_000)

    it("answers HTTP under npx weaver multi deploy, and stops on SIGTERM", () => deploy("multi"), 180_000)

    it(
      "answers HTTP under npx weaver multi deploy as a bundle made by npx weaver bundle",
      () => deploy("multi", "weaver-bundle.toml"),
      180_000
    )
  })
})
