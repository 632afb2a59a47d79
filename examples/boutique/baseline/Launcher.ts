/**
 * Starts the baseline: one process per service and one for the storefront,
 * all on free ports of 127.0.0.1, each given its peers' addresses; stops
 * them by pid. Run directly (`node dist/baseline/Launcher.js [port]`) it
 * starts the baseline and stops it on SIGINT or SIGTERM.
 *
 * @since 0.2.0
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import * as Processes from "../harness/Processes.js"
import * as Grpc from "./Grpc.js"
import * as Services from "./Services.js"

/** The example's directory, from this module's place in source (baseline/) or built (dist/baseline/). */
const exampleDir = (() => {
  let dir = Path.dirname(fileURLToPath(import.meta.url))
  while (!Fs.existsSync(Path.join(dir, "package.json"))) dir = Path.dirname(dir)
  return dir
})()

/**
 * A running baseline.
 *
 * @since 0.2.0
 * @category models
 */
export interface Baseline {
  /** The storefront's `host:port`. */
  readonly address: string
  /** Every process of the baseline. */
  readonly pids: () => ReadonlyArray<number>
  /** The service (or `frontend`) a process of the baseline serves. */
  readonly label: (pid: number) => string
  readonly output: () => string
  readonly stop: () => Promise<void>
}

/**
 * Starts the baseline from its built files (`npm run build`): the services
 * that call no other first, then those that call them, then the storefront
 * (on `port`, 0 for any). Resolves once the storefront listens.
 *
 * @since 0.2.0
 * @category launching
 */
export const launch = async (options: { readonly port?: number } = {}): Promise<Baseline> => {
  const built = Path.join(exampleDir, "dist/baseline")
  for (const file of ["server.js", "frontend.js"]) {
    if (!Fs.existsSync(Path.join(built, file))) {
      throw new Error(`${Path.join(built, file)} is missing: run "npm run build" first`)
    }
  }
  const children: Array<ChildProcess.ChildProcess> = []
  const labels = new Map<number, string>()
  let output = ""
  const start = (name: string, args: ReadonlyArray<string>, env: Record<string, string>, pattern: RegExp) => {
    const child = ChildProcess.spawn(process.execPath, args, {
      cwd: exampleDir,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    children.push(child)
    if (child.pid !== undefined) labels.set(child.pid, name)
    let mine = ""
    return new Promise<string>((resolve, reject) => {
      const onData = (chunk: string) => {
        mine += chunk
        output += `[${name}] ${chunk}`
        const address = pattern.exec(mine)?.[1]
        if (address !== undefined) resolve(address)
      }
      child.stdout!.setEncoding("utf8").on("data", onData)
      child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (output += `[${name}] ${chunk}`))
      child.once(
        "exit",
        (code, signal) => reject(new Error(`${name} exited (${signal ?? code}) before listening\n${output}`))
      )
    })
  }
  const stop = async () => {
    await Promise.all(children.map((child) => Processes.stop(child, 5_000)))
  }
  try {
    const peers: Services.Peers = {}
    const startService = async (name: Grpc.ServiceName) => {
      const wanted = Object.fromEntries(Services.dependencies[name].map((d) => [d, peers[d]]))
      peers[name] = await start(
        name,
        [Path.join(built, "server.js"), name],
        { BOUTIQUE_PEERS: JSON.stringify(wanted) },
        new RegExp(`${name} listening on (\\S+)\\n`)
      )
    }
    const names = Object.keys(Grpc.services) as Array<Grpc.ServiceName>
    await Promise.all(names.filter((n) => Services.dependencies[n].length === 0).map(startService))
    await Promise.all(names.filter((n) => Services.dependencies[n].length > 0).map(startService))
    const address = await start(
      "frontend",
      [Path.join(built, "frontend.js")],
      { BOUTIQUE_PEERS: JSON.stringify(peers), BOUTIQUE_PORT: String(options.port ?? 0) },
      /frontend listening on (\S+)\n/
    )
    return {
      address,
      pids: () => children.flatMap((child) => child.pid === undefined ? [] : Processes.tree(child.pid)),
      label: (pid) => labels.get(pid) ?? "?",
      output: () => output,
      stop
    }
  } catch (error) {
    await stop()
    throw error
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === Path.resolve(process.argv[1])) {
  const port = Number(process.argv[2] ?? 12346)
  const baseline = await launch({ port })
  process.stdout.write(`baseline storefront on http://${baseline.address} (pids ${baseline.pids().join(" ")})\n`)
  const shutdown = () => void baseline.stop().then(() => process.exit(0))
  process.once("SIGINT", shutdown)
  process.once("SIGTERM", shutdown)
}
