/**
 * The program every pod of `weaver kube deploy` runs (bundled into the
 * image as /weaver/babysitter.mjs): the babysitter, with the default
 * telemetry (logs as JSON lines on stdout, metrics scraped from `/metrics`).
 *
 * @since 0.1.0
 */
import * as Babysitter from "./Babysitter.js"

Babysitter.run()
