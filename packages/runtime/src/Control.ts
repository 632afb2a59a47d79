/**
 * The control plane between an envelope (in the deployer) and the weavelet
 * it started: typed `@effect/rpc` calls over a Unix socket, served by the
 * envelope, one socket per weavelet process. Also the bootstrap a weavelet
 * finds in its environment, which carries the internal address the
 * weavelet serves its components on (`internalAddress`). See
 * docs/DEPLOYERS.md.
 *
 * | Call | Meaning |
 * | --- | --- |
 * | `Ready {address, pid}` | the weavelet serves its components on `address` (its bound `internalAddress`) |
 * | `Activate {component}` | the weavelet needs `component`: start its group if it is not running |
 * | `Routing {component}` | a stream of replica sets of `component`, one per routing change |
 * | `ExportListener {listener, address}` | a listener serves on `address`: route the listener's proxy to it |
 * | `Health` | answered while the deployer is alive |
 * | `TraceSpans {spans}` | finished spans, about once a second, for the deployer's trace store |
 * | `Certificate` | the weavelet's mutual TLS credentials (`GetSelfCertificate`), when its bootstrap says `mtls` |
 * | `Authorize {group}` | the components a peer of colocation group `group` may call (`VerifyClientCertificate`) |
 * | `Requires {caller, component}` | an edge of the call graph: the code of `caller` resolved `component` |
 *
 * And the calls the envelope makes to its weavelet ({@link WeaveletRpcs}),
 * served by the weavelet on a second Unix socket (`weaveletSocket` in its
 * bootstrap) once it is ready:
 *
 * | Call | Meaning |
 * | --- | --- |
 * | `GetMetrics` | the weavelet's metric snapshots (`Prometheus.snapshot()`) |
 * | `GetProfile {type, durationMs}` | a gzipped pprof profile of the weavelet (`Profiling.collect`) |
 *
 * @since 0.1.0
 */
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import * as Certificates from "./Certificates.js"
import * as Prometheus from "./Prometheus.js"
import { weaveletEnv } from "./Runtime.js"
import * as Tracing from "./Tracing.js"

/**
 * The environment variable that carries a weavelet's {@link Bootstrap}
 * (base64 JSON). A process started with it becomes a weavelet.
 *
 * @since 0.1.0
 * @category constants
 */
export const bootstrapEnv = weaveletEnv

/**
 * The marker that starts a stderr line carrying a log entry (JSON) from a
 * weavelet to its deployer.
 *
 * @since 0.1.0
 * @category constants
 */
export const logMarker = "\u001eweaver:log "

/**
 * What `Authorize` answers for a group that may call every component (no
 * name of a component can be it).
 *
 * @since 0.1.0
 * @category constants
 */
export const anyComponent = "*"

/**
 * A control call the deployer refused, with the reason.
 *
 * @since 0.1.0
 * @category errors
 */
export class ControlError extends Schema.TaggedError<ControlError>()("ControlError", {
  message: Schema.String
}) {}

/**
 * The control calls a weavelet makes to its envelope.
 *
 * @since 0.1.0
 * @category models
 */
export class ControlRpcs extends RpcGroup.make(
  Rpc.make("Ready", { payload: { address: Schema.String, pid: Schema.Number } }),
  Rpc.make("Activate", { payload: { component: Schema.String }, error: ControlError }),
  Rpc.make("Routing", { payload: { component: Schema.String }, success: Schema.Array(Schema.String), stream: true }),
  Rpc.make("ExportListener", {
    payload: { listener: Schema.String, address: Schema.String },
    success: Schema.String,
    error: ControlError
  }),
  Rpc.make("Health", { success: Schema.Literal("ok") }),
  Rpc.make("Certificate", { success: Certificates.Credentials, error: ControlError }),
  Rpc.make("Authorize", { payload: { group: Schema.String }, success: Schema.Array(Schema.String) }),
  Rpc.make("Requires", { payload: { caller: Schema.String, component: Schema.String } }),
  Rpc.make("TraceSpans", { payload: { spans: Tracing.Spans } })
) {}

/**
 * A profile the weavelet could not collect; `reason` is that of
 * `Profiling.ProfilingError` (`busy`, `input` or `failed`).
 *
 * @since 0.1.0
 * @category errors
 */
export class ProfileFailed extends Schema.TaggedError<ProfileFailed>()("ProfileFailed", {
  reason: Schema.Literal("busy", "input", "failed"),
  message: Schema.String
}) {}

/**
 * The control calls an envelope makes to its weavelet.
 *
 * @since 0.1.0
 * @category models
 */
export class WeaveletRpcs extends RpcGroup.make(
  Rpc.make("GetMetrics", { success: Schema.Array(Prometheus.MetricSnapshot) }),
  Rpc.make("GetProfile", {
    payload: { type: Schema.Literal("cpu", "heap"), durationMs: Schema.Number },
    success: Schema.Uint8ArrayFromBase64,
    error: ProfileFailed
  })
) {}

/**
 * A TCP address a weavelet binds: `host:port` (IPv6 hosts in brackets,
 * `[::1]:0`), port 0 for any free port; an empty host (`:0`) binds every
 * interface. Service Weaver's `internal_address`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const InternalAddress = Schema.String.pipe(
  Schema.filter(
    (s) => /^(\[[0-9a-fA-F:.]+\]|[^:\s[\]]*):\d{1,5}$/.test(s) && Number(s.slice(s.lastIndexOf(":") + 1)) <= 65535,
    { message: (issue) => `expected "host:port" with a port from 0 to 65535, got ${JSON.stringify(issue.actual)}` }
  )
)

/**
 * The internal address of weavelets whose deployer names none (a bootstrap
 * from before `internalAddress`): any free port on the loopback interface.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultInternalAddress = "127.0.0.1:0"

/**
 * Where a weavelet finds its application, when it is not the entry file's
 * own (the `weavertest` Multi runner): the module that called `Weaver.app`
 * and the components of the app, to pick the right export.
 *
 * @since 0.1.0
 * @category schemas
 */
export const AppModule = Schema.Struct({
  url: Schema.String,
  components: Schema.Array(Schema.String)
})

/**
 * What the deployer tells a weavelet process when it starts it.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Bootstrap = Schema.Struct({
  app: Schema.String,
  deploymentId: Schema.String,
  replicaId: Schema.String,
  /** The colocation group this process hosts. */
  group: Schema.String,
  /** The components it hosts. */
  components: Schema.Array(Schema.String),
  /** Whether it runs the main component. */
  runMain: Schema.Boolean,
  /**
   * Where the weavelet serves its components (the data plane): it binds this
   * address and reports the bound one in `Ready`. Defaults to
   * {@link defaultInternalAddress} when absent.
   */
  internalAddress: Schema.optionalWith(InternalAddress, { default: () => defaultInternalAddress }),
  /** The envelope's Unix socket. */
  controlSocket: Schema.String,
  /** Where the weavelet serves {@link WeaveletRpcs}; not served when absent. */
  weaveletSocket: Schema.optional(Schema.String),
  /** The config: a file to read, or its text when `text` is set (`file` then names it in errors). */
  config: Schema.Struct({ file: Schema.String, dir: Schema.String, text: Schema.optional(Schema.String) }),
  /** Components that are called but implemented elsewhere (weavertest fakes). */
  external: Schema.optionalWith(Schema.Array(Schema.String), { default: () => [] }),
  appModule: Schema.optional(AppModule),
  /**
   * Whether the weavelet serves and calls over mutual TLS, with the
   * credentials it asks its envelope for (`Certificate`), and authorizes each
   * caller's group (`Authorize`).
   */
  mtls: Schema.optionalWith(Schema.Boolean, { default: () => false })
})

/**
 * @since 0.1.0
 * @category models
 */
export type Bootstrap = typeof Bootstrap.Type

const BootstrapJson = Schema.parseJson(Bootstrap)

/**
 * Encodes a bootstrap for {@link bootstrapEnv}.
 *
 * @since 0.1.0
 * @category constructors
 */
export const encodeBootstrap = (bootstrap: Bootstrap): string =>
  Buffer.from(Schema.encodeSync(BootstrapJson)(bootstrap)).toString("base64")

/**
 * Decodes the value of {@link bootstrapEnv}.
 *
 * @since 0.1.0
 * @category constructors
 */
export const decodeBootstrap = (text: string): Either.Either<Bootstrap, string> =>
  Schema.decodeUnknownEither(BootstrapJson)(Buffer.from(text, "base64").toString("utf8")).pipe(
    Either.mapLeft((error) => `${bootstrapEnv} is not a valid weavelet bootstrap: ${error.message}`)
  )
