/**
 * Runs every `bench/*.bench.ts` file in sequence, each in its own Node
 * process, so one benchmark's heap and JIT state never skews another's.
 *
 * The packages are measured as users run them: built (`npm run bench` builds
 * first) and resolved to `dist/`. Only the bench files themselves go through
 * tsx; its `keepNames` wrappers on every function created per call would
 * otherwise inflate the figures of code run from source.
 */
import { spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

const dir = Path.dirname(fileURLToPath(import.meta.url))
const only = process.argv.slice(2)
const files = Fs.readdirSync(dir)
  .filter((file) => file.endsWith(".bench.ts"))
  .filter((file) => only.length === 0 || only.some((name) => file.includes(name)))
  .sort()

if (files.length === 0) {
  process.stderr.write(`no bench/*.bench.ts file${only.length > 0 ? ` matching ${only.join(", ")}` : ""}\n`)
  process.exit(1)
}

const failed: Array<string> = []
for (const file of files) {
  process.stdout.write(`\n## ${file}\n\n`)
  const result = spawnSync(
    process.execPath,
    ["--import", "tsx", Path.join(dir, file)],
    { stdio: "inherit", cwd: Path.dirname(dir) }
  )
  if (result.status !== 0) {
    failed.push(`${file} (${result.signal ?? `exit ${result.status}`})`)
  }
}

process.stdout.write(`\n${files.length - failed.length}/${files.length} benchmarks passed\n`)
if (failed.length > 0) {
  process.stdout.write(`failed: ${failed.join(", ")}\n`)
  process.exit(1)
}
