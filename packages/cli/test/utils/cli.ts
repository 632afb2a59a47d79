import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

export const root = fileURLToPath(new URL("../../../../", import.meta.url))
export const bin = Path.join(root, "packages/cli/src/bin.ts")

const signalNumber = (signal: NodeJS.Signals | null) => signal === null ? 0 : Os.constants.signals[signal] ?? 0

export interface Child {
  readonly process: ChildProcess.ChildProcess
  readonly stdout: () => string
  readonly stderr: () => string
  /** Settles once the process has exited and its output is read: its exit code, or 128 + n for a signal. */
  readonly closed: Promise<number>
}

/**
 * Starts `weaver ...args` from source through tsx, or with `built` as users run it (the `weaver`
 * launcher of the built and bundled CLI); SIGKILLed with the scope if still running.
 */
export const start = (
  args: ReadonlyArray<string>,
  env: Readonly<Record<string, string>>,
  options?: { readonly built?: boolean }
): Effect.Effect<Child, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = ChildProcess.spawn(
        process.execPath,
        options?.built
          ? [Path.join(root, "packages/cli/bin/weaver.js"), ...args]
          : ["--conditions=@effect-weaver/source", "--import", "tsx", bin, ...args],
        { cwd: root, env: { ...process.env, NO_COLOR: "1", ...env }, stdio: ["ignore", "pipe", "pipe"] }
      )
      let stdout = ""
      let stderr = ""
      child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk))
      child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
      const closed = new Promise<number>((resolve) =>
        child.once("close", (code, signal) => resolve(code ?? 128 + signalNumber(signal)))
      )
      return { process: child, stdout: () => stdout, stderr: () => stderr, closed }
    }),
    (child) =>
      Effect.sync(() => {
        if (child.process.exitCode === null && child.process.signalCode === null) child.process.kill("SIGKILL")
      })
  )

const describeChild = (child: Child) => `\n--- stdout\n${child.stdout()}\n--- stderr\n${child.stderr()}`

/** Waits for the child to exit and its output to be read. */
export const closed = (child: Child, timeout: Duration.DurationInput = "25 seconds"): Effect.Effect<number, Error> =>
  Effect.promise(() => child.closed).pipe(
    Effect.timeoutFail({
      duration: timeout,
      onTimeout: () => new Error(`weaver did not exit within ${Duration.format(timeout)}${describeChild(child)}`)
    })
  )

/** Waits until stdout (or `stream`) matches `pattern`. */
export const waitFor = (
  child: Child,
  pattern: RegExp,
  timeout: Duration.DurationInput = "25 seconds",
  stream: "stdout" | "stderr" = "stdout"
): Effect.Effect<RegExpMatchArray, Error> =>
  Effect.async<RegExpMatchArray>((resume) => {
    const output = child.process[stream]!
    const check = () => {
      const match = child[stream]().match(pattern)
      if (match !== null) {
        output.off("data", check)
        resume(Effect.succeed(match))
      }
    }
    output.on("data", check)
    check()
    return Effect.sync(() => output.off("data", check))
  }).pipe(
    Effect.timeoutFail({
      duration: timeout,
      onTimeout: () => new Error(`no ${pattern} on ${stream} within ${Duration.format(timeout)}${describeChild(child)}`)
    })
  )

/** Runs `weaver ...args` to completion. */
export const run = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>>) =>
  Effect.scoped(
    Effect.gen(function*() {
      const child = yield* start(args, env)
      const code = yield* closed(child)
      return { code, stdout: child.stdout(), stderr: child.stderr() }
    })
  )

/** A temporary directory removed with the scope. */
export const tempDir: Effect.Effect<string, never, Scope.Scope> = Effect.acquireRelease(
  Effect.promise(() => Fs.mkdtemp(Path.join(Os.tmpdir(), "weaver-cli-test-"))),
  (dir) => Effect.promise(() => Fs.rm(dir, { recursive: true, force: true }))
)
