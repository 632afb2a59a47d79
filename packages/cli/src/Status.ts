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
 * empty bodies when nothing is deployed, as Service Weaver does.
 *
 * @since 0.1.0
 * @category combinators
 */
export const render = (deployments: ReadonlyArray<Registry.Deployment>, now: number): string => {
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
          [...c.pids].sort((a, b) => a - b).join(" ")
        ])
      )
    ),
    box(
      "LISTENERS",
      ["APP", "DEPLOYMENT", "LISTENER", "ADDRESS"],
      sorted.flatMap((d) => d.listeners.map((l) => [d.app, shortId(d.deploymentId), l.name, l.address]))
    )
  ].join("")
}

/**
 * The status tables of a tool's live deployments, dropping registry entries
 * whose processes are gone.
 *
 * @since 0.1.0
 * @category accessors
 */
export const snapshot = (tool: Registry.Tool): Effect.Effect<string> =>
  Effect.map(Registry.list(tool), (deployments) => render(deployments, Date.now()))

/**
 * Prints the status tables of a tool's live deployments on standard output.
 *
 * @since 0.1.0
 * @category runtime
 */
export const status = (tool: Registry.Tool): Effect.Effect<void> =>
  Effect.flatMap(snapshot(tool), (text) => Console.log(text.trimEnd()))
