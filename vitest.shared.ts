import { defineConfig } from "vitest/config"

export default defineConfig({
  resolve: { conditions: ["@effect-weaver/source"] },
  ssr: { resolve: { conditions: ["@effect-weaver/source"] } },
  test: {
    include: ["test/**/*.test.ts"],
    setupFiles: [new URL("./vitest.setup.ts", import.meta.url).pathname],
    testTimeout: 30_000,
    hookTimeout: 30_000
  }
})
