#!/usr/bin/env node
// The `weaver` command. `npm run build` compiles the CLI to dist/ and bundles it into dist/weaver.mjs,
// which starts several times faster than the ~1,200 files it is made of; without the bundle, the
// compiled files run. This launcher is committed so that npm links the command on `npm ci`, before
// the first build.
import { existsSync } from "node:fs"

const bundle = new URL("../dist/weaver.mjs", import.meta.url)
import(existsSync(bundle) ? bundle.href : "../dist/bin.js").catch((error) => {
  if (error?.code === "ERR_MODULE_NOT_FOUND" && String(error.message).includes("dist/bin.js")) {
    console.error("weaver: the CLI is not built yet: run `npm run build` first")
    process.exit(1)
  }
  throw error
})
