import { Registry } from "@effect-weaver/core"
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
