/**
 * Deploys the boutique as a user does, for the deployed-app tests and the
 * benchmark: `weaver single deploy` or `weaver multi deploy` (the built CLI)
 * of one of the example's configs, on a free port and in a fresh data
 * directory.
 *
 * @since 0.2.0
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import * as Launcher from "../baseline/Launcher.js"
import * as Processes from "./Processes.js"

/**
 * The example's directory.
 *
 * @since 0.2.0
 * @category paths
 */
export const exampleDir = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "..")

const repoRoot = Path.resolve(exampleDir, "../..")

/**
 * A running deployment: the address of its storefront, its processes and
 * how to stop it.
 *
 * @since 0.2.0
 * @category models
 */
export interface Deployment {
  readonly name: string
  readonly address: string
  /** Every process of the deployment now (the deployer's included). */
  readonly pids: () => ReadonlyArray<number>
  /** What a process of the deployment runs: a service, a colocation group, the deployer. */
  readonly label: (pid: number) => string
  readonly output: () => string
  readonly stop: () => Promise<void>
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Waits until `GET /` answers 200, or fails after `timeoutMillis`.
 *
 * @since 0.2.0
 * @category deploying
 */
export const waitReady = async (address: string, what: string, output: () => string, timeoutMillis = 60_000) => {
  const deadline = Date.now() + timeoutMillis
  let last = ""
  while (Date.now() < deadline) {
    try {
      const response = await fetch(`http://${address}/`, { signal: AbortSignal.timeout(10_000) })
      last = `${response.status} ${await response.text()}`
      if (response.status === 200) return
    } catch (error) {
      last = String(error)
    }
    await sleep(200)
  }
  throw new Error(`${what}: GET / did not answer 200 within ${timeoutMillis} ms (last: ${last})\n${output()}`)
}

/**
 * Deploys the built boutique (`dist/boutique.mjs`) with the built CLI:
 * `tool` is `single` or `multi`, `config` a file of the example
 * (`weaver.toml` or `weaver-colocated.toml`); `mtls`, when given, is
 * written as `[multi] mtls` (mutual TLS between the processes of a multi
 * deployment; off by default). Resolves once the storefront answers.
 *
 * @since 0.2.0
 * @category deploying
 */
export const deployWeaver = async (
  tool: "single" | "multi",
  config: string,
  options: { readonly mtls?: boolean } = {}
): Promise<Deployment> => {
  const binary = Path.join(exampleDir, "dist/boutique.mjs")
  const cli = Path.join(repoRoot, "packages/cli/bin/weaver.js")
  for (const file of [binary, Path.join(repoRoot, "packages/cli/dist/weaver.mjs")]) {
    if (!Fs.existsSync(file)) throw new Error(`${file} is missing: run "npm run build" first`)
  }
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "boutique-deploy-"))
  const text = Fs.readFileSync(Path.join(exampleDir, config), "utf8")
    .replace(/^binary = .*$/m, `binary = ${JSON.stringify(binary)}`)
    .replaceAll("localhost:12345", "127.0.0.1:0")
    .replace(/^\[multi\]\n/m, options.mtls === undefined ? "[multi]\n" : `[multi]\nmtls = ${options.mtls}\n`)
  const file = Path.join(dir, config)
  Fs.writeFileSync(file, text)
  const child = ChildProcess.spawn(process.execPath, [cli, tool, "deploy", file], {
    cwd: exampleDir,
    env: { ...process.env, NO_COLOR: "1", XDG_DATA_HOME: dir, SERVICEWEAVER_LOG_DIR: Path.join(dir, "logs") },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let output = ""
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (output += chunk))
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (output += chunk))
  const stop = async () => {
    await Processes.stop(child)
    Fs.rmSync(dir, { recursive: true, force: true })
  }
  const name = `weaver ${tool} deploy ${config}${options.mtls === undefined ? "" : ` (mtls = ${options.mtls})`}`
  try {
    const pattern = tool === "multi" ? /proxy for listener boutique on (\S+)/ : /boutique listener available on (\S+)/
    const deadline = Date.now() + 60_000
    let address: string | undefined
    while ((address = pattern.exec(output)?.[1]) === undefined) {
      if (Date.now() > deadline || child.exitCode !== null) {
        throw new Error(`${name}: no storefront address (exit ${child.exitCode})\n${output}`)
      }
      await sleep(50)
    }
    await waitReady(address, name, () => output)
    const registry = Path.join(dir, "serviceweaver", "multi", "registry")
    const groups = new Map<number, string>()
    const label = (pid: number) => {
      if (pid === child.pid) {
        return tool === "multi"
          ? "weaver multi deploy (deployer, listener proxy)"
          : "weaver single deploy"
      }
      if (tool === "single") return "the app (every component)"
      if (!groups.has(pid)) {
        for (const file of Fs.existsSync(registry) ? Fs.readdirSync(registry) : []) {
          if (!file.endsWith(".registration.json")) continue
          const entry = JSON.parse(Fs.readFileSync(Path.join(registry, file), "utf8")) as {
            readonly components: ReadonlyArray<{ readonly name: string; readonly pids: ReadonlyArray<number> }>
          }
          for (const component of entry.components) {
            for (const p of component.pids) groups.set(p, [groups.get(p), component.name].filter(Boolean).join(" + "))
          }
        }
      }
      return groups.get(pid) ?? "?"
    }
    return { name, address, pids: () => Processes.tree(child.pid!), label, output: () => output, stop }
  } catch (error) {
    await stop()
    throw error
  }
}

/**
 * Starts the gRPC baseline (built) and resolves once its storefront answers.
 *
 * @since 0.2.0
 * @category deploying
 */
export const deployBaseline = async (): Promise<Deployment> => {
  const baseline = await Launcher.launch()
  const name = "baseline (gRPC microservices)"
  try {
    await waitReady(baseline.address, name, baseline.output)
  } catch (error) {
    await baseline.stop()
    throw error
  }
  return { name, ...baseline }
}
