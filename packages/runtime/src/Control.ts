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
 * | `ExportListener {listener, address, kind}` | a listener serves on `address`: route the listener's proxy to it; `kind` (`Listener.Kind`) says whether it speaks HTTP (`Weaver.serve`) or any protocol over TCP (`Weaver.listener`) |
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
 * | `GetHealth` | the health probe (Service Weaver's `GetHealth`): answered on the weavelet's event loop, so a stopped or blocked process does not answer |
 * | `GetMetrics` | the weavelet's metric snapshots (`Prometheus.snapshot()`) |
 * | `GetProfile {type, durationMs}` | a gzipped pprof profile of the weavelet (`Profiling.collect`) |
 *
 * @since 0.1.0
 */
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as RpcSerialization from "@effect/rpc/RpcSerialization"
import * as Data from "effect/Data"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Certificates from "./Certificates.js"
import * as Listener from "./Listener.js"
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
    payload: { listener: Schema.String, address: Schema.String, kind: Listener.Kind },
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
  Rpc.make("GetHealth", { success: Schema.Literal("ok") }),
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
  /**
   * Where each listener binds, by name (`host:port`, port 0 for any free
   * port); a listener not named binds any free port on loopback. A deployer
   * whose users reach listeners from other machines (`weaver kube deploy`)
   * names them all.
   */
  listeners: Schema.optionalWith(Schema.Record({ key: Schema.String, value: InternalAddress }), {
    default: () => ({})
  }),
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

/**
 * A line a peer sent on a control socket that is not a control message.
 * Tagged as `@effect/rpc`'s own serialization errors on purpose: its socket
 * server closes the connection on an error with this tag, whereas any other
 * error thrown while decoding is answered with a defect and leaves the
 * connection open, stuck on the bad line.
 */
class RpcSerializationError extends Data.TaggedError("RpcSerializationError")<{ readonly reason: string }> {
  override get message(): string {
    return this.reason
  }
}

/** Request ids are decimal integers (`@effect/rpc` reads them with `BigInt`, which throws on anything else). */
const RequestId = Schema.String.pipe(Schema.pattern(/^\d{1,20}$/))

/**
 * The messages of `@effect/rpc`'s protocol, in both directions, as they
 * cross a socket: what its server and client read without further checks.
 */
const Message = Schema.Union(
  Schema.Struct({
    _tag: Schema.Literal("Request"),
    id: RequestId,
    tag: Schema.String,
    // Absent when the method takes none (JSON drops an undefined field), as are the defect and exit values below.
    payload: Schema.optional(Schema.Unknown),
    headers: Schema.Array(Schema.Tuple(Schema.String, Schema.String)),
    traceId: Schema.optional(Schema.String),
    spanId: Schema.optional(Schema.String),
    sampled: Schema.optional(Schema.Boolean)
  }),
  Schema.Struct({ _tag: Schema.Literal("Ack", "Interrupt"), requestId: RequestId }),
  Schema.Struct({ _tag: Schema.Literal("Ping", "Pong", "Eof") }),
  Schema.Struct({ _tag: Schema.Literal("Chunk"), requestId: RequestId, values: Schema.NonEmptyArray(Schema.Unknown) }),
  Schema.Struct({ _tag: Schema.Literal("Exit"), requestId: RequestId, exit: Schema.optional(Schema.Unknown) }),
  Schema.Struct({ _tag: Schema.Literal("Defect"), defect: Schema.optional(Schema.Unknown) })
)
const isMessage = Schema.is(Message)

/**
 * The longest line a control socket accepts by default, in UTF-16 code
 * units: as `@effect/rpc`'s ndjson (profiles and span batches can take
 * megabytes).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultMaxLineLength = 16 * 1024 * 1024

const snippet = (line: string): string =>
  line.length <= 80 ? JSON.stringify(line) : `${JSON.stringify(line.slice(0, 80))}… (${line.length} characters)`

/**
 * The serialization of the control plane: newline-delimited JSON, like
 * `RpcSerialization.ndjson`, hardened against a peer that sends garbage. A
 * line that is not JSON, a value that is not a message of the RPC protocol
 * (which `@effect/rpc` would otherwise trip over: a `null`, a request id
 * `BigInt` cannot read), or a line longer than `maxLineLength` closes the
 * connection it came on and is reported to `onBadInput` with its line
 * number. Lines are scanned once, however they are split into chunks (the
 * ndjson parser rescans its buffer from the start on every chunk), and a
 * character split across chunks is decoded whole.
 *
 * @since 0.1.0
 * @category serialization
 */
export const serialization = (options?: {
  readonly maxLineLength?: number | undefined
  /** Called with what was wrong, just before the connection is closed. */
  readonly onBadInput?: ((reason: string) => void) | undefined
}): RpcSerialization.RpcSerialization["Type"] => {
  const maxLineLength = options?.maxLineLength ?? defaultMaxLineLength
  return RpcSerialization.RpcSerialization.of({
    contentType: "application/ndjson",
    includesFraming: true,
    unsafeMake: () => {
      const decoder = new TextDecoder()
      let buffer = ""
      let line = 0
      let broken = false
      const fail = (reason: string): never => {
        broken = true
        buffer = ""
        options?.onBadInput?.(reason)
        throw new RpcSerializationError({ reason })
      }
      return {
        decode: (bytes) => {
          // After a bad line nothing more is read: the connection is being closed.
          if (broken) return []
          const fresh = typeof bytes === "string" ? bytes : decoder.decode(bytes, { stream: true })
          // Only the new text can hold the end of the current line: the old was scanned before.
          let newline = fresh.indexOf("\n")
          if (newline < 0) {
            buffer += fresh
            if (buffer.length > maxLineLength) fail(`line ${line + 1} is longer than ${maxLineLength} characters`)
            return []
          }
          const text = buffer + fresh
          let start = 0
          newline += buffer.length
          const messages: Array<unknown> = []
          while (newline >= 0) {
            line++
            if (newline - start > maxLineLength) fail(`line ${line} is longer than ${maxLineLength} characters`)
            const raw = text.slice(start, newline)
            start = newline + 1
            newline = text.indexOf("\n", start)
            if (raw.trim() === "") continue
            let value: unknown
            try {
              value = JSON.parse(raw)
            } catch (error) {
              fail(`line ${line} is not JSON (${(error as Error).message}): ${snippet(raw)}`)
            }
            if (!isMessage(value)) fail(`line ${line} is not a message of the RPC protocol: ${snippet(raw)}`)
            messages.push(value)
          }
          buffer = text.slice(start)
          if (buffer.length > maxLineLength) fail(`line ${line + 1} is longer than ${maxLineLength} characters`)
          return messages
        },
        encode: (message) => JSON.stringify(message) + "\n"
      }
    }
  })
}

/**
 * Provides {@link serialization} to an `@effect/rpc` client or server.
 *
 * @since 0.1.0
 * @category serialization
 */
export const layerSerialization = (
  options?: Parameters<typeof serialization>[0]
): Layer.Layer<RpcSerialization.RpcSerialization> =>
  Layer.succeed(RpcSerialization.RpcSerialization, serialization(options))
