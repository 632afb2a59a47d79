import { Weaver } from "@effect-weaver/core"
import { NodeRuntime } from "@effect/platform-node"
import { app } from "./app.js"

Weaver.run(app).pipe(NodeRuntime.runMain)
