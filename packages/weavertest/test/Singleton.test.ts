/**
 * Singletons under every runner: the constructor of a singleton runs once
 * per deployment, as it starts, whichever replica of which group calls it (under Multi,
 * its group runs one process while others run `[multi] replicas`); killed
 * with SIGKILL under Multi, it is restarted, constructed again, and the
 * calls made while it was down wait for it and succeed.
 */
import { weavertest } from "@effect-weaver/weavertest"
import { assert, describe } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { app, Follower, Leader, Tally } from "./fixtures/singleton.js"

const config = "[multi]\nreplicas = 3\n"

/** A fake Tally recording each construction of the Leader (its instance id). */
const recording = () => {
  const constructed: Array<string> = []
  const fake = weavertest.fake(Tally, { constructed: (id) => Effect.sync(() => void constructed.push(id)) })
  return { constructed, fake }
}

describe("singleton", () => {
  for (const runner of weavertest.allRunners()) {
    const tally = recording()
    runner.with({ config, fakes: [tally.fake] }).test(
      "the constructor runs as the app starts, and once, whichever replica calls",
      app,
      Effect.gen(function*() {
        const follower = yield* Follower
        const leader = yield* Leader
        // Before any call: the deployment constructs its singletons as it starts (the RPC runner, whose every
        // call goes through its loopback server, constructs them on first call).
        if (runner.name !== "RPC") {
          for (let i = 0; i < 300 && tally.constructed.length === 0; i++) yield* Effect.sleep(100)
          assert.strictEqual(tally.constructed.length, 1, "constructed before any call")
        }
        const followers = new Set<number>()
        const instances = new Set<string>()
        const leaderPids = new Set<number>()
        // Under Multi, calls until 2 of Follower's replicas answered (bounded), so 2 processes asked the Leader.
        for (let i = 0; i < 300 && (i < 30 || (runner.name === "Multi" && followers.size < 2)); i++) {
          const answers = yield* Effect.all([follower.ask(), follower.ask(), leader.whoami()], {
            concurrency: "unbounded"
          })
          followers.add(answers[0].pid).add(answers[1].pid)
          for (const identity of [answers[0].leader, answers[1].leader, answers[2]]) {
            instances.add(identity.instance)
            leaderPids.add(identity.pid)
          }
        }
        if (runner.name === "Multi") {
          assert.isAtLeast(followers.size, 2, "Follower runs several replicas")
          assert.isFalse(followers.has(process.pid))
        }
        assert.strictEqual(instances.size, 1, `one Leader instance answered: ${[...instances].join(", ")}`)
        assert.strictEqual(leaderPids.size, 1)
        assert.deepStrictEqual(tally.constructed, [...instances], "the Leader was constructed once")
      })
    )
  }

  const tally = recording()
  weavertest.multi.with({ config: "[multi]\nreplicas = 2\n", fakes: [tally.fake] }).test(
    "a singleton killed with SIGKILL is restarted and constructed again; calls made meanwhile wait and succeed",
    app,
    Effect.gen(function*() {
      const follower = yield* Follower
      const leader = yield* Leader
      const before = yield* leader.whoami()
      type Identity = { readonly pid: number; readonly instance: string }
      /** Every call, in the order they ended: when it was made and ended, and its outcome. */
      const calls: Array<
        { readonly start: number; readonly end: number; readonly exit: Exit.Exit<Identity, unknown> }
      > = []
      let stop = false
      // Callers from this process and from Follower's replicas, calling before, during and after the outage.
      const caller = (call: Effect.Effect<Identity, unknown>) =>
        Effect.gen(function*() {
          while (!stop) {
            const start = Date.now()
            const exit = yield* Effect.exit(call)
            calls.push({ start, end: Date.now(), exit })
            yield* Effect.sleep(5)
          }
        })
      const callers = yield* Effect.forkAll([
        caller(leader.whoami()),
        caller(leader.whoami()),
        caller(Effect.map(follower.ask(), (answer) => answer.leader)),
        caller(Effect.map(follower.ask(), (answer) => answer.leader))
      ])
      yield* Effect.sleep(300)
      const killedAt = Date.now()
      process.kill(before.pid, "SIGKILL")
      const answeredByNew = () => calls.find((c) => Exit.isSuccess(c.exit) && c.exit.value.instance !== before.instance)
      // Bounded: the restarted Leader answers well within the calls' wait for a replica (10 s).
      for (let i = 0; i < 300 && answeredByNew() === undefined; i++) yield* Effect.sleep(100)
      yield* Effect.sleep(300)
      stop = true
      yield* callers.await
      assert.deepStrictEqual(calls.filter((c) => Exit.isFailure(c.exit)), [], "no call failed")
      const after = yield* leader.whoami()
      assert.notStrictEqual(after.pid, before.pid, "a new process")
      assert.notStrictEqual(after.instance, before.instance)
      // Once before the kill, once in the new process: state does not survive a crash.
      assert.deepStrictEqual(tally.constructed, [before.instance, after.instance])
      // One live instance at a time: the first until it was killed, then only the new one.
      const instances = calls.map((c) => Exit.isSuccess(c.exit) ? c.exit.value.instance : "")
      const firstNew = instances.indexOf(after.instance)
      assert.isAbove(firstNew, 0)
      assert.deepStrictEqual([...new Set(instances.slice(0, firstNew))], [before.instance])
      assert.deepStrictEqual([...new Set(instances.slice(firstNew))], [after.instance])
      // Each caller was in a call while no Leader was running: it waited for the new one, which answered it.
      const back = calls[firstNew]!.end
      const waited = calls.filter((c) => c.start < back && instances[calls.indexOf(c)] === after.instance)
      assert.isAtLeast(waited.length, 4, "every caller's call during the outage waited and succeeded")
      if (process.env.WEAVERTEST_VERBOSE) {
        console.log(`outage ${back - killedAt} ms; ${waited.length} calls made during it; ${calls.length} calls`)
      }
    })
  )
})
