/**
 * The envelope's health probe (`GetHealth`) against a real weavelet: a pause
 * shorter than the bound (a garbage-collection pause, say) is tolerated; an
 * event loop blocked by user code is not, since the weavelet answers the
 * probe on that same loop. Also the checks of the probe's options.
 */
import { Control, Envelope } from "@effect-weaver/runtime"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Either, Option, Stream } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("../../../", import.meta.url))
const fixture = fileURLToPath(new URL("./fixtures/blocking.ts", import.meta.url))

const socketDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "weaver-health-test-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

/** Sends `signal` to `pid` if it is still there. */
const signal = (pid: number, name: NodeJS.Signals) => {
  try {
    process.kill(pid, name)
  } catch {
    // already gone
  }
}

describe("Envelope: the health probe", () => {
  it("health options: defaults, off, and bad values refused with an error naming the option", () => {
    const defaults = Either.getOrThrow(Envelope.checkHealth(undefined))
    assert.deepStrictEqual(defaults, Envelope.defaultHealth)
    assert.isUndefined(Either.getOrThrow(Envelope.checkHealth(false)))
    const refused = (health: Partial<Envelope.HealthOptions>) => Either.flip(Envelope.checkHealth(health))
    assert.strictEqual(
      Either.getOrThrow(refused({ interval: "0 millis" })),
      `health.interval: expected a positive finite duration, got "0 millis"`
    )
    assert.strictEqual(
      Either.getOrThrow(refused({ unhealthyAfter: "soon" as any })),
      `health.unhealthyAfter: expected a positive finite duration, got "soon"`
    )
    assert.strictEqual(
      Either.getOrThrow(refused({ interval: "2 seconds", unhealthyAfter: "1 second" })),
      "health.unhealthyAfter (1s) must be longer than health.interval (2s)"
    )
  })

  it.scopedLive(
    "a 500 ms pause is tolerated; an event loop blocked for longer than the bound is killed as unhealthy",
    () =>
      Effect.gen(function*() {
        const ready = yield* Deferred.make<void>()
        const unhealthy = yield* Deferred.make<string>()
        const lines: Array<string> = []
        const envelope = yield* Envelope.make({
          bootstrap: {
            app: "blocking",
            deploymentId: crypto.randomUUID(),
            replicaId: crypto.randomUUID(),
            group: "test/Blocker",
            components: ["test/Blocker"],
            runMain: false,
            internalAddress: "127.0.0.1:0",
            config: { file: "<test>", dir: root, text: "" },
            external: []
          },
          socketDir: yield* socketDir,
          command: process.execPath,
          args: ["--conditions=@effect-weaver/source", "--import", "tsx", fixture],
          env: { ...process.env },
          cwd: root,
          handler: {
            ready: () => Deferred.succeed(ready, undefined),
            activate: () => Effect.void,
            routing: () => Stream.never,
            exportListener: () => Effect.fail(new Control.ControlError({ message: "no listeners here" })),
            unhealthy: (reason) => Deferred.succeed(unhealthy, reason)
          },
          output: (_, line) => lines.push(line),
          health: { interval: "200 millis", unhealthyAfter: "1500 millis" }
        })
        const pid = envelope.pid
        yield* Effect.addFinalizer(() => Effect.sync(() => signal(pid, "SIGKILL")))
        const output = () => lines.join("\n")
        yield* Deferred.await(ready).pipe(
          Effect.timeoutFail({ duration: "60 seconds", onTimeout: () => new Error(`not ready\n${output()}`) })
        )

        signal(pid, "SIGUSR2") // 500 ms busy
        yield* Effect.sleep("2500 millis")
        assert.isFalse(yield* Deferred.isDone(unhealthy), `a short pause made it unhealthy\n${output()}`)
        assert.isTrue(Option.isNone(yield* Effect.option(Effect.timeout(envelope.exited, 0))), "still running")

        signal(pid, "SIGUSR2") // busy until killed
        const blockedAt = Date.now()
        const status = yield* envelope.exited.pipe(
          Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error(`not killed\n${output()}`) })
        )
        const detected = Date.now() - blockedAt
        assert.isTrue(yield* Deferred.isDone(unhealthy), "the handler heard of it before the exit")
        assert.strictEqual(yield* Deferred.await(unhealthy), "did not answer its health probe (GetHealth) for 1s 500ms")
        assert.strictEqual(status.signal, "SIGKILL")
        assert.strictEqual(status.unhealthy, "did not answer its health probe (GetHealth) for 1s 500ms")
        // The bound plus a probe interval, and slack for a loaded machine.
        assert.isBelow(detected, 1500 + 200 + 1500, output())
        assert.include(output(), "blocking the event loop for 60000 ms")
      }),
    120_000
  )
})
