/**
 * The conformance kit (`weavertest.conformance`) under every runner: the
 * behaviour every transport must share.
 */
import { weavertest } from "@effect-weaver/weavertest"

weavertest.conformance(weavertest.allRunners())
