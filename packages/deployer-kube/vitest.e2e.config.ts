import { defineConfig, mergeConfig } from "vitest/config"
import shared from "../../vitest.shared.js"

// The Kubernetes end-to-end suite (npm run test:kube), run against the cluster scripts/test-kube.sh brings up,
// with this package as vitest's root (the repository's root would add every project of its workspace).
const config = mergeConfig(
  shared,
  defineConfig({ test: { testTimeout: 300_000, hookTimeout: 300_000, fileParallelism: false } })
)
// Replaced, not merged: the shared config's unit tests are not part of this suite.
config.test!.include = ["e2e/**/*.test.ts"]

export default config
