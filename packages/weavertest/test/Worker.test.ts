/**
 * The Worker runner (`@effect-weaver/transport-worker`): each group runs in a thread of its own, a call between two
 * workers is relayed by the test thread, and a group busy on its thread does not stop the others.
 */
import { weavertest } from "@effect-weaver/weavertest"
import { assert } from "@effect/vitest"
import { Effect } from "effect"
import * as WorkerThreads from "node:worker_threads"
import { app, Other, Where } from "./fixtures/threads.js"

weavertest.worker.test(
  "each group runs in a worker thread of its own; calls between workers arrive",
  app,
  Effect.gen(function*() {
    const where = yield* Where
    const other = yield* Other
    const whereThread = yield* where.thread()
    const otherThread = yield* other.thread()
    assert.notStrictEqual(whereThread, WorkerThreads.threadId)
    assert.notStrictEqual(otherThread, WorkerThreads.threadId)
    assert.notStrictEqual(whereThread, otherThread)
    // Where → Other, worker to worker through the test thread.
    assert.strictEqual(yield* where.otherThread(), otherThread)
  })
)

weavertest.worker.with({ config: `[serviceweaver]\ncolocate = [["threads/Where", "threads/Other"]]\n` }).test(
  "a colocation group shares one thread",
  app,
  Effect.gen(function*() {
    const where = yield* Where
    assert.strictEqual(yield* where.otherThread(), yield* where.thread())
  })
)

weavertest.worker.test(
  "a group that keeps its thread busy does not stop the others",
  app,
  Effect.gen(function*() {
    const where = yield* Where
    const other = yield* Other
    yield* other.thread()
    yield* where.thread()
    const started = Date.now()
    const spinning = yield* Effect.fork(other.spin(600))
    // Where answers while Other spins, from its own thread.
    yield* Effect.sleep("50 millis")
    yield* where.thread()
    assert.isBelow(Date.now() - started, 400)
    assert.strictEqual(yield* spinning.await.pipe(Effect.flatten), 600)
  })
)
