/**
 * Runs a tool of the machine (podman or docker, kubectl) to completion.
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"

export class ExecError extends Data.TaggedError("ExecError")<{
  readonly command: string
  readonly reason: string
}> {
  override get message(): string {
    return `${this.command}: ${this.reason}`
  }
}

export interface Output {
  readonly stdout: string
  readonly stderr: string
}

const tail = (text: string) => {
  const lines = text.trimEnd().split("\n")
  return lines.slice(-15).join("\n")
}

/** Runs `command args`, with `input` on its stdin; fails with the tail of its stderr when it exits non-zero. */
export const run = (
  command: string,
  args: ReadonlyArray<string>,
  options?: { readonly input?: string | undefined; readonly env?: NodeJS.ProcessEnv | undefined }
): Effect.Effect<Output, ExecError> =>
  Effect.async<Output, ExecError>((resume, signal) => {
    const shown = [command, ...args].join(" ")
    const child = ChildProcess.execFile(command, args, {
      signal,
      maxBuffer: 64 * 1024 * 1024,
      env: options?.env ?? process.env
    }, (error, stdout, stderr) => {
      if (error === null) return resume(Effect.succeed({ stdout, stderr }))
      const code = (error as NodeJS.ErrnoException).code
      resume(Effect.fail(
        new ExecError({
          command: shown,
          reason: code === "ENOENT"
            ? `${command} is not installed (not found on PATH)`
            : `exited with ${error.code ?? error.signal}${stderr.trim() === "" ? "" : `:\n${tail(stderr)}`}`
        })
      ))
    })
    if (options?.input !== undefined) child.stdin?.end(options.input)
  })

/** Whether `command` is on PATH. */
export const available = (command: string): Effect.Effect<boolean> =>
  Effect.as(run(command, ["--version"]), true).pipe(Effect.orElseSucceed(() => false))
