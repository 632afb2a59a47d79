// Adds lockfile entries for optional platform packages that this workplace's npm registry does not
// serve (for example @rollup/rollup-darwin-x64 at rollup's exact version). `npm install` silently
// skips an optional dependency it cannot fetch, and `npm ci` then rejects the lockfile as out of
// sync. An entry with `os`/`cpu` set lets `npm ci` skip the package on this platform, as it would
// anywhere else. Run after `npm install`: `node scripts/lock-platforms.mjs`.
import * as Fs from "node:fs"

const file = new URL("../package-lock.json", import.meta.url)
const lock = JSON.parse(Fs.readFileSync(file, "utf8"))
const osNames = ["android", "darwin", "freebsd", "linux", "openbsd", "openharmony", "sunos", "win32", "aix"]
const cpuNames = ["arm64", "arm", "x64", "ia32", "loong64", "ppc64", "riscv64", "s390x", "mips64el"]

const platformOf = (name) => {
  const parts = name.split("/").pop().split("-")
  const os = parts.find((p) => osNames.includes(p))
  const cpu = parts.find((p) => cpuNames.includes(p)) ??
    (parts.includes("eabi") || parts.includes("gnueabihf") ? "arm" : undefined)
  const libc = parts.includes("musl") || parts.includes("musleabihf")
    ? "musl"
    : parts.includes("gnu") || parts.includes("gnueabihf")
    ? "glibc"
    : undefined
  return os && cpu ? { os, cpu, libc } : undefined
}

let added = 0
for (const [path, entry] of Object.entries(lock.packages)) {
  for (const [dep, version] of Object.entries(entry.optionalDependencies ?? {})) {
    const base = path === "" ? "" : `${path}/`
    const candidates = [`${base}node_modules/${dep}`, `node_modules/${dep}`]
    if (candidates.some((c) => c in lock.packages)) continue
    const platform = platformOf(dep)
    if (platform === undefined) continue
    lock.packages[`node_modules/${dep}`] = {
      version,
      cpu: [platform.cpu],
      license: entry.license,
      optional: true,
      os: [platform.os],
      ...(platform.libc ? { libc: [platform.libc] } : {})
    }
    added++
  }
}
lock.packages = Object.fromEntries(
  Object.entries(lock.packages).sort(([a], [b]) => (a === "" ? -1 : b === "" ? 1 : a < b ? -1 : 1))
)
Fs.writeFileSync(file, JSON.stringify(lock, null, 2) + "\n")
console.log(`lock-platforms: added ${added} optional platform entries`)
