/**
 * `weaver multi deploy` of examples/hello (2 groups × 2 replicas): time from
 * starting the command to the first successful HTTP answer through the
 * listener proxy (bar: ≤ 2 s), with the resident memory of every process.
 * Baseline, measured in the same run: `weaver single deploy` of the same app.
 * The multi deploy is the default (plain TCP between processes); one more
 * with `[multi] mtls = true` shows what mutual TLS adds.
 *
 * Measures what `npm run build` produces and a user runs: the bundled CLI
 * (`packages/cli/dist/weaver.mjs`, through the `weaver` launcher) deploying
 * the bundled binary (`examples/hello/dist/hello.mjs`, from `weaver bundle`).
 * One more deploy of the unbundled binary (`dist/main.js`) shows what the
 * bundle saves.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

const root = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "..")
const bin = Path.join(root, "packages/cli/bin/weaver.js")
const runs = 3
const bar = 2_000

const bundled = Path.join(root, "examples/hello/dist/hello.mjs")
for (const file of [Path.join(root, "packages/cli/dist/weaver.mjs"), bundled]) {
  if (!Fs.existsSync(file)) {
    process.stderr.write(`${file} is missing: run "npm run build" (npm run bench does)\n`)
    process.exit(1)
  }
}

const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "weaver-multi-bench-"))
const writeConfig = (name: string, binary: string, multi = "") => {
  const file = Path.join(dir, name)
  Fs.writeFileSync(
    file,
    `[serviceweaver]
name = "hello"
binary = "${binary}"

[single]
listeners.hello = { address = "127.0.0.1:0" }

[multi]
listeners.hello = { address = "127.0.0.1:0" }
${multi}`
  )
  return file
}
const config = writeConfig("weaver.toml", bundled)
const mtlsConfig = writeConfig("mtls.toml", bundled, "mtls = true\n")
const unbundledConfig = writeConfig("unbundled.toml", Path.join(root, "examples/hello/dist/main.js"))
const env = { ...process.env, XDG_DATA_HOME: Path.join(dir, "data"), SERVICEWEAVER_LOG_DIR: Path.join(dir, "logs") }

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const rssKiB = (pid: number): number => {
  const status = Fs.readFileSync(`/proc/${pid}/status`, "utf8")
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0)
}

/** One request, as a user's first curl: the proxy holds it until a replica serves the listener. */
const answer = async (url: string): Promise<string> => {
  const response = await fetch(url, { signal: AbortSignal.timeout(30_000) })
  const body = await response.text()
  return response.status === 200 && body.startsWith("Hello, ") ? "ok" : `${response.status} ${body}`
}

interface Run {
  readonly millis: number
  readonly rss: ReadonlyArray<{ readonly name: string; readonly pid: number; readonly kib: number }>
}

const registryEntry = () => {
  const registry = Path.join(dir, "data", "serviceweaver", "multi", "registry")
  const files = Fs.existsSync(registry) ? Fs.readdirSync(registry).filter((f) => f.endsWith(".json")) : []
  if (files.length === 0) return undefined
  try {
    return JSON.parse(Fs.readFileSync(Path.join(registry, files[0]!), "utf8")) as {
      readonly components: ReadonlyArray<{ readonly name: string; readonly pids: ReadonlyArray<number> }>
    }
  } catch {
    return undefined
  }
}

const deployOnce = async (tool: "single" | "multi", configFile = config): Promise<Run> => {
  const start = performance.now()
  const child = ChildProcess.spawn(process.execPath, [bin, tool, "deploy", configFile], {
    cwd: root,
    env,
    stdio: ["ignore", "pipe", "pipe"]
  })
  let output = ""
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (output += chunk))
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (output += chunk))
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
  try {
    // The address is printed once the proxy (multi) or the listener (single) is bound; nothing else is polled,
    // so that the measurement does not take CPU from the processes it measures.
    let address: string | undefined
    while (address === undefined && performance.now() - start < 30_000) {
      address = tool === "multi"
        ? /proxy for listener hello on (\S+)/.exec(output)?.[1]
        : /hello listener available on (\S+)/.exec(output)?.[1]
      if (address === undefined) await sleep(2)
    }
    if (address === undefined) throw new Error(`${tool} deploy: no listener address within 30 s\n${output}`)
    const result = await answer(`http://${address}/hello?name=Weaver`)
    const millis = performance.now() - start
    if (result !== "ok") throw new Error(`${tool} deploy: the first request got ${result}\n${output}`)
    const rss = [{ name: "weaver (deployer)", pid: child.pid!, kib: rssKiB(child.pid!) }]
    if (tool === "multi") {
      for (let i = 0; i < 100; i++) {
        const entry = registryEntry()
        if (entry !== undefined && entry.components.length >= 2 && entry.components.every((c) => c.pids.length === 2)) {
          for (const component of entry.components) {
            for (const pid of component.pids) rss.push({ name: component.name, pid, kib: rssKiB(pid) })
          }
          break
        }
        await sleep(50)
      }
    } else {
      const pid = Number(
        /(\d+)/.exec(ChildProcess.execFileSync("pgrep", ["-P", String(child.pid)], { encoding: "utf8" }))?.[1]
      )
      if (pid > 0) rss.push({ name: "app (main + hello/Reverser)", pid, kib: rssKiB(pid) })
    }
    return { millis, rss }
  } finally {
    child.kill("SIGTERM")
    await Promise.race([exited, sleep(15_000)])
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
  }
}

const median = (values: ReadonlyArray<number>) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!

const main = async () => {
  const single: Array<Run> = []
  const multi: Array<Run> = []
  const mtls: Array<Run> = []
  for (let i = 0; i < runs; i++) {
    single.push(await deployOnce("single"))
    multi.push(await deployOnce("multi"))
    mtls.push(await deployOnce("multi", mtlsConfig))
  }
  const unbundled = await deployOnce("multi", unbundledConfig)
  const singleMs = median(single.map((r) => r.millis))
  const multiMs = median(multi.map((r) => r.millis))
  process.stdout.write(`time from "weaver <tool> deploy" to the first HTTP answer (median of ${runs}):\n`)
  process.stdout.write(
    `  single deploy (baseline)   ${singleMs.toFixed(0).padStart(6)} ms   runs: ${
      single.map((r) => r.millis.toFixed(0)).join(", ")
    }\n`
  )
  process.stdout.write(
    `  multi deploy (2×2 procs)   ${multiMs.toFixed(0).padStart(6)} ms   runs: ${
      multi.map((r) => r.millis.toFixed(0)).join(", ")
    }\n`
  )
  const mtlsMs = median(mtls.map((r) => r.millis))
  process.stdout.write(
    `  multi, mtls = true         ${mtlsMs.toFixed(0).padStart(6)} ms   runs: ${
      mtls.map((r) => r.millis.toFixed(0)).join(", ")
    } (mutual TLS costs ${(mtlsMs - multiMs).toFixed(0)} ms)\n`
  )
  process.stdout.write(`  multi / single             ${(multiMs / singleMs).toFixed(2).padStart(6)}×\n`)
  process.stdout.write(
    `  multi, unbundled binary    ${unbundled.millis.toFixed(0).padStart(6)} ms   (one run, for reference)\n`
  )
  process.stdout.write(`  bar: multi ≤ ${bar} ms       ${multiMs <= bar ? "PASS" : "FAIL"}\n`)
  process.stdout.write(
    `  (load average ${Os.loadavg().map((n) => n.toFixed(1)).join(" ")} on ${Os.cpus().length} cores)\n\n`
  )
  if (multiMs > bar) process.exitCode = 1
  const last = multi.at(-1)!
  process.stdout.write("resident memory after the first answer (multi, last run):\n")
  let total = 0
  for (const { kib, name, pid } of last.rss) {
    total += kib
    process.stdout.write(
      `  ${name.padEnd(28)} pid ${String(pid).padEnd(8)} ${(kib / 1024).toFixed(1).padStart(7)} MiB\n`
    )
  }
  process.stdout.write(`  ${"total".padEnd(41)} ${(total / 1024).toFixed(1).padStart(7)} MiB\n`)
  const singleTotal = single.at(-1)!.rss.reduce((n, r) => n + r.kib, 0)
  process.stdout.write(`  (single deploy total: ${(singleTotal / 1024).toFixed(1)} MiB)\n`)
}

main().then(
  () => Fs.rmSync(dir, { recursive: true, force: true }),
  (error) => {
    Fs.rmSync(dir, { recursive: true, force: true })
    process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`)
    process.exit(1)
  }
)
