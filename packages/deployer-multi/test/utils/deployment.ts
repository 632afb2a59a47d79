/**
 * Runs `weaver multi deploy` of an example as a separate deployer process
 * (test/fixtures/deploy.ts through tsx), with its registry and log files in
 * a private temporary directory, and reads its registry entry.
 */
import { Registry } from "@effect-weaver/runtime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

export const root = fileURLToPath(new URL("../../../../", import.meta.url))
const deployScript = fileURLToPath(new URL("../fixtures/deploy.ts", import.meta.url))

export interface Deployment {
  readonly dir: string
  readonly deployer: ChildProcess.ChildProcess
  readonly output: () => string
}

/** The deployment's registry entry, if written. */
export const entry = (deployment: Deployment): Registry.Deployment | undefined => {
  const dir = Path.join(deployment.dir, "data", "serviceweaver", "multi", "registry")
  const files = Fs.existsSync(dir) ? Fs.readdirSync(dir).filter((f) => f.endsWith(".registration.json")) : []
  if (files.length === 0) return undefined
  return JSON.parse(Fs.readFileSync(Path.join(dir, files[0]!), "utf8")) as Registry.Deployment
}

/** Every pid the registry lists for the deployment's replicas. */
export const replicaPids = (deployment: Deployment): ReadonlyArray<number> => [
  ...new Set((entry(deployment)?.components ?? []).flatMap((c) => c.pids))
]

/** Polls `f` every 100 ms until it returns a value, failing after `timeout`. */
export const waitUntil = <A>(
  what: string,
  deployment: Deployment,
  f: () => A | undefined,
  timeout: Duration.DurationInput = "60 seconds"
): Effect.Effect<A, Error> =>
  Effect.suspend(() => {
    const value = f()
    return value === undefined ? Effect.fail("not yet" as const) : Effect.succeed(value)
  }).pipe(
    Effect.retry(Schedule.spaced("100 millis").pipe(Schedule.upTo(timeout))),
    Effect.mapError(() =>
      new Error(`timed out after ${Duration.format(timeout)} waiting for ${what}\n--- deployer\n${deployment.output()}`)
    )
  )

/** One HTTP GET; the status and body, or the error message. */
export const get = (url: string): Effect.Effect<{ readonly status: number; readonly body: string }> =>
  Effect.promise(() =>
    fetch(url, { signal: AbortSignal.timeout(30_000) }).then(
      async (response) => ({ status: response.status, body: await response.text() }),
      (error: Error) => ({ status: 0, body: `${error.message}: ${String(error.cause)}` })
    )
  )

/** The proxy address of listener `name`, once exported. */
export const proxyAddress = (deployment: Deployment, name: string) =>
  waitUntil(
    `the proxy of listener ${name}`,
    deployment,
    () => entry(deployment)?.listeners.find((l) => l.name === name)?.address
  )

/**
 * Starts a deployer for `toml` (a weaver.toml text; relative paths resolve
 * against the repository root). Closing the scope stops it with SIGTERM (then
 * SIGKILL), kills any replica the registry still lists, and removes the
 * temporary directory.
 */
export const deploy = (toml: string): Effect.Effect<Deployment, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "weaver-multi-test-"))
      const config = Path.join(dir, "weaver.toml")
      Fs.writeFileSync(config, toml)
      let output = ""
      const deployer = ChildProcess.spawn(
        process.execPath,
        ["--conditions=@effect-weaver/source", "--import", "tsx", deployScript, config],
        {
          cwd: root,
          env: {
            ...process.env,
            NO_COLOR: "1",
            XDG_DATA_HOME: Path.join(dir, "data"),
            SERVICEWEAVER_LOG_DIR: Path.join(dir, "logs")
          },
          stdio: ["ignore", "pipe", "pipe"]
        }
      )
      deployer.stdout!.setEncoding("utf8").on("data", (chunk: string) => (output += chunk))
      deployer.stderr!.setEncoding("utf8").on("data", (chunk: string) => (output += chunk))
      return { dir, deployer, output: () => output } satisfies Deployment
    }),
    (deployment) =>
      Effect.gen(function*() {
        const pids = replicaPids(deployment)
        const { deployer } = deployment
        if (deployer.exitCode === null && deployer.signalCode === null) {
          const exited = new Promise<void>((resolve) => deployer.once("exit", () => resolve()))
          deployer.kill("SIGTERM")
          yield* Effect.promise(() => exited).pipe(
            Effect.timeout("15 seconds"),
            Effect.catchAll(() => Effect.sync(() => deployer.kill("SIGKILL")))
          )
        }
        for (const pid of pids) {
          if (Registry.isAlive(pid)) process.kill(pid, "SIGKILL")
        }
        Fs.rmSync(deployment.dir, { recursive: true, force: true })
      })
  )

/** A weaver.toml deploying examples/hello with its proxy on a free port. */
export const helloToml = `
[serviceweaver]
name = "hello"
binary = "${Path.join(root, "examples/hello/src/main.ts")}"

[multi]
listeners.hello = { address = "127.0.0.1:0" }
replicas = 2
`

/** GETs `url` until the proxy has a replica to send it to (anything but a 502), for up to `timeout`. */
export const firstAnswer = (
  deployment: Deployment,
  url: string,
  timeout: Duration.DurationInput = "90 seconds"
): Effect.Effect<{ readonly status: number; readonly body: string }, Error> =>
  get(url).pipe(
    Effect.filterOrFail((answer) => answer.status !== 502 && answer.status !== 0, (answer) => answer),
    Effect.retry(Schedule.spaced("100 millis").pipe(Schedule.upTo(timeout))),
    Effect.mapError((answer) =>
      new Error(
        `no answer from ${url} within ${Duration.format(timeout)}: ${answer.body}\n--- deployer\n${deployment.output()}`
      )
    )
  )
