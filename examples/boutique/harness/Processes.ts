/**
 * Processes of a deployment, found and measured through `/proc` (Linux):
 * every descendant of a process we started, the CPU time they used, and
 * stopping them by pid.
 *
 * @since 0.2.0
 */
import type * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"

const clockTicks = 100 // USER_HZ: /proc/<pid>/stat counts CPU time in 1/100 s on Linux.

/** The fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses). */
const statFields = (pid: number): ReadonlyArray<string> | undefined => {
  try {
    const text = Fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    return text.slice(text.lastIndexOf(")") + 2).split(" ")
  } catch {
    return undefined
  }
}

/**
 * `pid` and every process below it, as the process table has them now.
 *
 * @since 0.2.0
 * @category processes
 */
export const tree = (pid: number): ReadonlyArray<number> => {
  const children = new Map<number, Array<number>>()
  for (const name of Fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue
    const parent = Number(statFields(Number(name))?.[1])
    if (!Number.isInteger(parent)) continue
    const list = children.get(parent) ?? []
    list.push(Number(name))
    children.set(parent, list)
  }
  const out: Array<number> = []
  const visit = (p: number) => {
    out.push(p)
    for (const c of children.get(p) ?? []) visit(c)
  }
  visit(pid)
  return out
}

/**
 * The CPU seconds (user + system) each process has used so far; a process
 * that has exited is missing.
 *
 * @since 0.2.0
 * @category measuring
 */
export const cpuSeconds = (pids: ReadonlyArray<number>): ReadonlyMap<number, number> => {
  const out = new Map<number, number>()
  for (const pid of pids) {
    const fields = statFields(pid)
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the command name.
    if (fields !== undefined) out.set(pid, (Number(fields[11]) + Number(fields[12])) / clockTicks)
  }
  return out
}

/**
 * Whether a process exists (a zombie counts as gone).
 *
 * @since 0.2.0
 * @category processes
 */
export const isAlive = (pid: number): boolean => {
  const state = statFields(pid)?.[0]
  return state !== undefined && state !== "Z"
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Stops a process we started and everything it started: SIGTERM to the
 * process, then SIGKILL to every process of its tree (as found before the
 * SIGTERM) still alive after `graceMillis`.
 *
 * @since 0.2.0
 * @category processes
 */
export const stop = async (child: ChildProcess.ChildProcess, graceMillis = 10_000): Promise<void> => {
  if (child.pid === undefined) return
  const pids = tree(child.pid)
  const exited = new Promise<void>((resolve) =>
    child.exitCode !== null || child.signalCode !== null ? resolve() : child.once("exit", () => resolve())
  )
  if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM")
  await Promise.race([exited, sleep(graceMillis)])
  for (const pid of pids) {
    if (pid !== process.pid && isAlive(pid)) {
      try {
        process.kill(pid, "SIGKILL")
      } catch {
        // Gone between the check and the kill.
      }
    }
  }
}
