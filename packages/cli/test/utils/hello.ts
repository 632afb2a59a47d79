import { Registry } from "@effect-weaver/runtime"
import { assert } from "@effect/vitest"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import { type Child, root, start, tempDir, waitFor } from "./cli.js"

/** A running `weaver single deploy` of examples/hello, with its own registry. */
export interface Hello {
  readonly env: Readonly<Record<string, string>>
  readonly deploy: Child
  /** The hello listener's `host:port`. */
  readonly address: string
  readonly deploymentId: string
}

/**
 * Deploys examples/hello (built) with `weaver single deploy` on a free port,
 * in a fresh XDG_DATA_HOME; every process of it is killed with the scope.
 */
export const deployHello: Effect.Effect<Hello, Error, Scope.Scope> = Effect.gen(function*() {
  const helloMain = Path.join(root, "examples/hello/dist/main.js")
  const built = yield* Effect.promise(() => Fs.access(helloMain).then(() => true, () => false))
  assert.isTrue(built, `${helloMain} is missing: run "npx tsc -b tsconfig.build.json" first`)
  const dir = yield* tempDir
  const env = { XDG_DATA_HOME: dir }
  const toml = (yield* Effect.promise(() => Fs.readFile(Path.join(root, "examples/hello/weaver.toml"), "utf8")))
    .replace(/^binary = .*$/m, `binary = ${JSON.stringify(helloMain)}`)
    .replaceAll("localhost:12345", "127.0.0.1:0")
  const config = Path.join(dir, "weaver.toml")
  yield* Effect.promise(() => Fs.writeFile(config, toml))
  const registry = Path.join(dir, "serviceweaver/single/registry")
  const deploy = yield* start(["single", "deploy", config], env)
  yield* Effect.addFinalizer(() =>
    Effect.promise(async () => {
      for (const name of await Fs.readdir(registry).catch(() => [])) {
        const text = await Fs.readFile(Path.join(registry, name), "utf8").catch(() => "{}")
        const pid = (JSON.parse(text) as { readonly pid?: number }).pid
        if (pid !== undefined && pid !== process.pid && Registry.isAlive(pid)) process.kill(pid, "SIGKILL")
      }
    })
  )
  const [, address] = yield* waitFor(deploy, /hello listener available on (\S+)\n/)
  const names = yield* Effect.promise(() => Fs.readdir(registry))
  const entry = names.find((n) => n.endsWith(".registration.json"))
  assert.isDefined(entry, `no registry entry in ${registry}`)
  return { env, deploy, address: address!, deploymentId: entry!.replace(".registration.json", "") }
})

/** GETs /hello?name=... `n` times and checks the answers. */
export const sendHellos = (address: string, n: number) =>
  Effect.forEach(Array.from({ length: n }, (_, i) => `n${i}`), (name) =>
    Effect.promise(async () => {
      const response = await fetch(`http://${address}/hello?name=${name}`)
      assert.strictEqual(response.status, 200)
      await response.text()
    }), { discard: true })

/**
 * Deploys examples/hello (from source) with `weaver multi deploy`, 2 replicas
 * of each group and the proxy on a free port, in a fresh XDG_DATA_HOME; waits
 * until the registry lists the listener's proxy, the status server and 2
 * replicas of each component, and a replica serves the listener. Every
 * process of it is killed with the scope.
 */
export const deployMultiHello: Effect.Effect<Hello, Error, Scope.Scope> = Effect.gen(function*() {
  const dir = yield* tempDir
  const env = { XDG_DATA_HOME: dir, SERVICEWEAVER_LOG_DIR: Path.join(dir, "logs") }
  const config = Path.join(dir, "weaver.toml")
  yield* Effect.promise(() =>
    Fs.writeFile(
      config,
      `[serviceweaver]
name = "hello"
binary = ${JSON.stringify(Path.join(root, "examples/hello/src/main.ts"))}

[multi]
listeners.hello = { address = "127.0.0.1:0" }
replicas = 2
`
    )
  )
  const registry = Path.join(dir, "serviceweaver/multi/registry")
  const entries = Effect.promise(async () => {
    const names = (await Fs.readdir(registry).catch(() => [])).filter((n) => n.endsWith(".registration.json"))
    return Promise.all(
      names.map((name) =>
        Fs.readFile(Path.join(registry, name), "utf8").then((text) => JSON.parse(text) as Registry.Deployment)
      )
    ).catch(() => [] as Array<Registry.Deployment>)
  })
  const deploy = yield* start(["multi", "deploy", config], env)
  yield* Effect.addFinalizer(() =>
    Effect.flatMap(entries, (list) =>
      Effect.sync(() => {
        for (const entry of list) {
          for (const pid of [entry.pid, ...entry.components.flatMap((c) => c.pids)]) {
            if (pid !== process.pid && Registry.isAlive(pid)) process.kill(pid, "SIGKILL")
          }
        }
      }))
  )
  // The proxy is bound up front; a replica prints this line once the proxy routes to it.
  yield* waitFor(deploy, /hello listener available on /, "90 seconds")
  const ready = (entry: Registry.Deployment | undefined) =>
    entry !== undefined && entry.statusAddress !== undefined && entry.listeners.some((l) => l.name === "hello") &&
    ["main", "hello/Reverser"].every((name) => entry.components.find((c) => c.name === name)?.pids.length === 2)
  const deadline = Date.now() + 90_000
  let entry: Registry.Deployment | undefined
  while (!ready(entry = (yield* entries)[0])) {
    if (Date.now() > deadline || deploy.process.exitCode !== null) {
      return yield* Effect.fail(
        new Error(
          `weaver multi deploy did not become ready: ${JSON.stringify(entry)}\n--- stdout\n${deploy.stdout()}\n` +
            `--- stderr\n${deploy.stderr()}`
        )
      )
    }
    yield* Effect.sleep("200 millis")
  }
  return {
    env,
    deploy,
    address: entry!.listeners.find((l) => l.name === "hello")!.address,
    deploymentId: entry!.deploymentId
  }
})
