export default [
  "packages/runtime",
  "packages/core",
  "packages/transport-local",
  "packages/transport-rpc",
  "packages/transport-multiprocess",
  "packages/transport-worker",
  "packages/deployer-single",
  "packages/deployer-multi",
  "packages/deployer-kube",
  "packages/weavertest",
  "packages/cli",
  "examples/hello",
  "examples/greeter",
  "examples/embed",
  "examples/custom-deployer",
  "examples/bank"
]
