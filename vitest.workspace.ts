export default [
  "packages/core",
  "packages/transport-local",
  "packages/weavertest",
  "packages/cli",
  "examples/hello"
]
