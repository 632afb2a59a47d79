#!/usr/bin/env node
// The `weaver` command. The CLI is compiled to dist/ by `npm run build`; this launcher is committed
// so that npm links the command on `npm ci`, before the first build.
import("../dist/bin.js").catch((error) => {
  if (error?.code === "ERR_MODULE_NOT_FOUND" && String(error.message).includes("dist/bin.js")) {
    console.error("weaver: the CLI is not built yet: run `npm run build` first")
    process.exit(1)
  }
  throw error
})
