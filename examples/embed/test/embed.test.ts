import { assert, describe, it } from "@effect/vitest"
import { start } from "../src/server.js"

describe("embedded in node:http", () => {
  it("answers GET /reverse through the embedded component, then closes", async () => {
    const server = await start(0)
    let closed = false
    try {
      assert.isAbove(server.port, 0)
      const base = `http://127.0.0.1:${server.port}`
      const response = await fetch(`${base}/reverse?s=abc`)
      assert.strictEqual(response.status, 200)
      assert.strictEqual(await response.text(), "cba")
      const unicode = await fetch(`${base}/reverse?s=${encodeURIComponent("héllo🙂")}`)
      assert.strictEqual(await unicode.text(), "🙂olléh")
      assert.strictEqual((await fetch(`${base}/reverse`)).status, 400)
      assert.strictEqual((await fetch(`${base}/other`)).status, 404)

      await server.close()
      closed = true
      await server.close()
      const after = await fetch(`${base}/reverse?s=abc`).then(
        () => "answered",
        () => "refused"
      )
      assert.strictEqual(after, "refused")
    } finally {
      if (!closed) await server.close()
    }
  })
})
