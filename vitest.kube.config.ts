import { defineConfig, mergeConfig } from "vitest/config"
import shared from "./vitest.shared.js"

// The Kubernetes end-to-end suite (npm run test:kube): runs against the cluster scripts/test-kube.sh brings up.
export default mergeConfig(
  shared,
  defineConfig({
    test: {
      include: ["packages/deployer-kube/e2e/**/*.test.ts"],
      testTimeout: 300_000,
      hookTimeout: 300_000,
      fileParallelism: false
    }
  })
)
