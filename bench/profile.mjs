// CPU profile of a process started with `NODE_OPTIONS=--import <this file>` (Node refuses `--cpu-prof` in
// NODE_OPTIONS): the profile is written on exit to $PROFILE_DIR (default: the working directory) as
// <pid>-<args>.cpuprofile, readable by Chrome DevTools. With the benches that deploy an app:
// `BENCH_NODE_OPTIONS="--import $PWD/bench/profile.mjs" PROFILE_DIR=/tmp/prof node --import tsx bench/collatz.bench.ts`
import * as Fs from "node:fs"
import * as Inspector from "node:inspector"
import * as Path from "node:path"

const dir = process.env.PROFILE_DIR ?? process.cwd()
const session = new Inspector.Session()
session.connect()
session.post("Profiler.enable")
session.post("Profiler.setSamplingInterval", { interval: 200 })
session.post("Profiler.start")
process.on("exit", () => {
  // Posted on the same thread, the reply comes synchronously: the file is written before the process ends.
  session.post("Profiler.stop", (error, result) => {
    if (error) return
    const args = process.argv.slice(2).join("_").replace(/\W/g, "").slice(0, 30)
    Fs.writeFileSync(Path.join(dir, `${process.pid}-${args}.cpuprofile`), JSON.stringify(result.profile))
  })
})
