/**
 * `weaver kube` as users run it: a refused kube config and a bad version print one clear line and exit 1, before
 * anything is built or any cluster is asked.
 */
import { assert, describe, it } from "@effect/vitest"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

const root = Path.resolve(import.meta.dirname, "../../..")
const weaver = Path.join(root, "packages/cli/bin/weaver.js")

const run = (args: ReadonlyArray<string>, cwd: string) =>
  ChildProcess.spawnSync(process.execPath, [weaver, ...args], {
    cwd,
    encoding: "utf8",
    // No container tool and no cluster: nothing may be needed for these to fail properly.
    env: { ...process.env, PATH: Path.dirname(process.execPath), NO_COLOR: "1" }
  })

describe("weaver kube", () => {
  it("deploy refuses a bad kube config with file, section and key, and exit code 1", () => {
    const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "weaver-kube-cli-"))
    Fs.copyFileSync(Path.join(root, "examples/hello/weaver.toml"), Path.join(dir, "weaver.toml"))
    Fs.writeFileSync(
      Path.join(dir, "kube.yaml"),
      "appConfig: weaver.toml\ngroups:\n  - name: web\n    components: []\n"
    )
    const result = run(["kube", "deploy", "kube.yaml"], dir)
    assert.strictEqual(result.status, 1, result.stdout + result.stderr)
    assert.strictEqual(result.stdout, "")
    assert.strictEqual(
      result.stderr.trim(),
      `weaver: kube.yaml: section "groups[0]" key "components": expected at least one component (a group of none runs nothing)`
    )
    Fs.rmSync(dir, { recursive: true, force: true })
  })

  it("delete refuses what is not a version", () => {
    const result = run(["kube", "delete", "latest"], root)
    assert.strictEqual(result.status, 1)
    assert.strictEqual(
      result.stderr.trim(),
      `weaver: "latest" is not a version (8 hex digits, as weaver kube status shows)`
    )
  })

  it("shows its usage for an unknown subcommand", () => {
    const result = run(["kube", "deplyo"], root)
    assert.strictEqual(result.status, 1)
    assert.include(result.stderr, "weaver kube deploy [--apply] [--out=<dir>] <config.yaml>")
  })
})
