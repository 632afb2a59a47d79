/**
 * `weaver <tool> status`: the DEPLOYMENTS, COMPONENTS and LISTENERS tables
 * Service Weaver prints, read from the registry of live deployments.
 *
 * @since 0.1.0
 */
import * as Logging from "@effect-weaver/runtime/Logging"
import * as Registry from "@effect-weaver/runtime/Registry"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import { table } from "table"

const border = {
  topLeft: "╭",
  topRight: "╮",
  topBody: "─",
  topJoin: "─",
  bottomLeft: "╰",
  bottomRight: "╯",
  bottomBody: "─",
  bottomJoin: "┴",
  bodyLeft: "│",
  bodyRight: "│",
  bodyJoin: "│",
  joinLeft: "├",
  joinRight: "┤",
  joinBody: "─",
  joinJoin: "┼",
  joinMiddleDown: "┬",
  joinMiddleUp: "┴",
  joinMiddleLeft: "┤",
  joinMiddleRight: "├",
  headerJoin: "─"
} as const

/**
 * Draws one box table: a title row spanning every column, a header row and
 * the body, with rules only under the title and under the header.
 *
 * @since 0.1.0
 * @category combinators
 */
export const box = (
  title: string,
  header: ReadonlyArray<string>,
  rows: ReadonlyArray<ReadonlyArray<string>>
): string => {
  const columns = header.length
  const titleRow = [title, ...Array.from({ length: columns - 1 }, () => "")]
  return table([titleRow, [...header], ...rows.map((row) => [...row])], {
    border,
    spanningCells: [{ row: 0, col: 0, colSpan: columns }],
    drawHorizontalLine: (index, size) => index <= 2 || index === size
  })
}

/**
 * How long ago `startedAt` was, in the largest whole unit: `1s`, `5m`,
 * `2h`, `3d`.
 *
 * @since 0.1.0
 * @category combinators
 */
export const age = (startedAt: number, now: number): string => {
  const seconds = Math.max(0, Math.floor((now - startedAt) / 1000))
  if (seconds < 60) return `${seconds}s`
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h`
  return `${Math.floor(seconds / 86400)}d`
}

/**
 * The short form of a deployment id used in logs and tables: its first 8
 * characters.
 *
 * @since 0.1.0
 * @category combinators
 */
export const shortId = (deploymentId: string): string => deploymentId.slice(0, 8)

/**
 * Renders the three status tables for `deployments`, ordered by app name and
 * then by age, as `weaver single status` prints them. Tables are printed with
 * empty bodies when nothing is deployed, as Service Weaver does. Replicas
 * given up on after crash loops are counted next to the pids; `failed`
 * deployments (see `Registry.failures`), if any, get a fourth table with
 * their error.
 *
 * @since 0.1.0
 * @category combinators
 */
export const render = (
  deployments: ReadonlyArray<Registry.Deployment>,
  now: number,
  failed: ReadonlyArray<Registry.Deployment> = []
): string => {
  const sorted = [...deployments].sort((a, b) => a.app < b.app ? -1 : a.app > b.app ? 1 : a.startedAt - b.startedAt)
  return [
    box(
      "DEPLOYMENTS",
      ["APP", "DEPLOYMENT", "AGE"],
      sorted.map((d) => [d.app, d.deploymentId, age(d.startedAt, now)])
    ),
    box(
      "COMPONENTS",
      ["APP", "DEPLOYMENT", "COMPONENT", "REPLICA PIDS"],
      sorted.flatMap((d) =>
        d.components.map((c) => [
          d.app,
          shortId(d.deploymentId),
          Logging.shortComponent(c.name),
          [
            ...[...c.pids].sort((a, b) => a - b),
            ...(c.givenUp === undefined ? [] : [`(${c.givenUp} given up)`])
          ].join(" ")
        ])
      )
    ),
    box(
      "LISTENERS",
      ["APP", "DEPLOYMENT", "LISTENER", "KIND", "ADDRESS"],
      sorted.flatMap((d) => d.listeners.map((l) => [d.app, shortId(d.deploymentId), l.name, l.kind ?? "-", l.address]))
    ),
    ...(failed.length === 0 ? [] : [
      box(
        "FAILED DEPLOYMENTS",
        ["APP", "DEPLOYMENT", "FAILED", "ERROR"],
        failed.map((d) => [
          d.app,
          d.deploymentId,
          `${age(d.failure?.at ?? d.startedAt, now)} ago`,
          wrap(d.failure?.reason ?? "", 60)
        ])
      )
    ])
  ].join("")
}

/** `text` broken into lines of at most `width` characters, at spaces. */
const wrap = (text: string, width: number): string => {
  const lines: Array<string> = []
  let line = ""
  for (const word of text.split(" ")) {
    if (line !== "" && line.length + 1 + word.length > width) {
      lines.push(line)
      line = word
    } else {
      line = line === "" ? word : `${line} ${word}`
    }
  }
  return [...lines, line].join("\n")
}

/**
 * The status tables of a tool's live deployments, dropping registry entries
 * whose processes are gone, and of its failed ones.
 *
 * @since 0.1.0
 * @category accessors
 */
export const snapshot = (tool: Registry.Tool): Effect.Effect<string> =>
  Effect.zipWith(
    Registry.list(tool),
    Registry.failures(tool),
    (deployments, failed) => render(deployments, Date.now(), failed)
  )

/**
 * Prints the status tables of a tool's live deployments on standard output.
 *
 * @since 0.1.0
 * @category runtime
 */
export const status = (tool: Registry.Tool): Effect.Effect<void> =>
  Effect.flatMap(snapshot(tool), (text) => Console.log(text.trimEnd()))
