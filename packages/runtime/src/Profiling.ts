/**
 * CPU and heap profiles of this process, in the pprof format, and the merge
 * of several profiles into one, as Service Weaver's deployers do when they
 * profile one replica of every colocation group and scale each by its replica
 * count (`runtime/profiling.ProfileGroups`).
 *
 * Profiles are gzipped pprof protobufs, the format `go tool pprof` (and
 * speedscope) read. Collection uses `@datadog/pprof`: a wall-clock profile
 * that also records CPU time (sample types `sample/count`, `wall/nanoseconds`
 * and `cpu/nanoseconds`), or V8's sampling heap profiler (`inuse_objects`,
 * `inuse_space`).
 *
 * @since 0.1.0
 */
import type * as Pprof from "@datadog/pprof"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Zlib from "node:zlib"
import * as Format from "pprof-format"

/**
 * The kinds of profile: `cpu` (wall-clock samples carrying CPU time) or
 * `heap` (live objects sampled by V8's sampling heap profiler).
 *
 * @since 0.1.0
 * @category models
 */
export type ProfileType = "cpu" | "heap"

/**
 * The profile types, as the CLI and the status server accept them.
 *
 * @since 0.1.0
 * @category constants
 */
export const profileTypes: ReadonlyArray<ProfileType> = ["cpu", "heap"]

/**
 * A profile that could not be collected, decoded or merged. `reason` says
 * why: `busy` when a profile of the same type is already being collected in
 * this process, `input` for bad options or profiles, `failed` when the
 * profiler itself failed.
 *
 * @since 0.1.0
 * @category errors
 */
export class ProfilingError extends Data.TaggedError("ProfilingError")<{
  readonly reason: "busy" | "input" | "failed"
  readonly message: string
  readonly cause?: unknown
}> {}

/**
 * What to collect and for how long.
 *
 * @since 0.1.0
 * @category models
 */
export interface CollectOptions {
  readonly type: ProfileType
  /**
   * How long to sample. A heap profile samples the allocations made during
   * this window and reports those still live at its end (V8 cannot see
   * allocations made before its sampler starts), unless heap sampling was
   * already running, in which case it covers everything since then.
   */
  readonly duration: Duration.DurationInput
  /** The mean time between CPU samples; default 1 ms (about 1000 Hz, Go's pprof samples at 100 Hz). */
  readonly intervalMicros?: number
}

/** The native profiler, loaded on first use: it costs tens of milliseconds at startup. */
let loaded: Promise<typeof Pprof> | undefined
const load = Effect.tryPromise({
  try: () => (loaded ??= import("@datadog/pprof")),
  catch: (cause) => {
    loaded = undefined
    return failed("could not load @datadog/pprof")(cause)
  }
})

/** At most one profile of each type at a time: the profilers are per-process singletons. */
const cpuLock = Effect.unsafeMakeSemaphore(1)
const heapLock = Effect.unsafeMakeSemaphore(1)

/** Service Weaver's (and Go's) heap sampling rate: one sample per 512 KiB allocated on average. */
const heapIntervalBytes = 512 * 1024
const heapStackDepth = 64

const failed = (message: string) => (cause: unknown) =>
  new ProfilingError({
    reason: "failed",
    message: `${message}: ${cause instanceof Error ? cause.message : String(cause)}`,
    cause
  })

const cpu = (pprof: typeof Pprof, duration: Duration.Duration, intervalMicros: number) => {
  let stopped = false
  return Effect.acquireUseRelease(
    Effect.try({
      try: () => pprof.time.start({ intervalMicros, collectCpuTime: true, withContexts: true }),
      catch: failed("could not start the cpu profiler")
    }),
    () =>
      Effect.sleep(duration).pipe(
        Effect.zipRight(Effect.try({
          try: () => {
            stopped = true
            return pprof.time.stop(false)
          },
          catch: failed("could not stop the cpu profiler")
        }))
      ),
    () => stopped ? Effect.void : Effect.sync(() => void pprof.time.stop(false))
  )
}

const heap = (pprof: typeof Pprof, duration: Duration.Duration) =>
  Effect.gen(function*() {
    // start() is a no-op when sampling already runs with these parameters.
    yield* Effect.acquireRelease(
      Effect.try({
        try: () => pprof.heap.start(heapIntervalBytes, heapStackDepth),
        catch: failed("could not start the heap profiler")
      }),
      () => Effect.sync(() => pprof.heap.stop())
    )
    yield* Effect.sleep(duration)
    return yield* Effect.try({ try: () => pprof.heap.profile(), catch: failed("could not read the heap profile") })
  }).pipe(Effect.scoped)

/**
 * Profiles this process for `duration` and returns the gzipped pprof bytes.
 * Fails with reason `busy` if a profile of the same type is already being
 * collected; interrupting the effect stops the profiler.
 *
 * @since 0.1.0
 * @category constructors
 */
export const collect = (options: CollectOptions): Effect.Effect<Uint8Array, ProfilingError> =>
  Effect.suspend(() => {
    const duration = Duration.decode(options.duration)
    if (!Duration.isFinite(duration)) {
      return Effect.fail(new ProfilingError({ reason: "input", message: "the profile duration must be finite" }))
    }
    const lock = options.type === "cpu" ? cpuLock : heapLock
    const profile = Effect.flatMap(
      load,
      (pprof) => options.type === "cpu" ? cpu(pprof, duration, options.intervalMicros ?? 1000) : heap(pprof, duration)
    )
    return lock.withPermitsIfAvailable(1)(profile).pipe(
      Effect.flatMap(Option.match({
        onNone: () =>
          Effect.fail(
            new ProfilingError({
              reason: "busy",
              message: `a ${options.type} profile is already being collected in this process`
            })
          ),
        onSome: (profile) => encode(profile)
      }))
    )
  })

/**
 * Serializes and gzips a profile (a pprof-format `Profile`, from either of
 * its ESM or CommonJS builds).
 *
 * @since 0.1.0
 * @category combinators
 */
export const encode = (profile: { readonly encode: () => Uint8Array }): Effect.Effect<Uint8Array, ProfilingError> =>
  Effect.try({
    try: () => new Uint8Array(Zlib.gzipSync(profile.encode())),
    catch: failed("could not encode the profile")
  })

/**
 * Decodes pprof bytes, gzipped or not.
 *
 * @since 0.1.0
 * @category combinators
 */
export const decode = (bytes: Uint8Array): Effect.Effect<Format.Profile, ProfilingError> =>
  Effect.try({
    try: () => Format.Profile.decode(bytes[0] === 0x1f && bytes[1] === 0x8b ? Zlib.gunzipSync(bytes) : bytes),
    catch: (cause) =>
      new ProfilingError({
        reason: "input",
        message: `not a pprof profile: ${cause instanceof Error ? cause.message : String(cause)}`,
        cause
      })
  })

/**
 * Options of {@link merge}.
 *
 * @since 0.1.0
 * @category models
 */
export interface MergeOptions {
  /**
   * Multiplies every sample value (rounded to an integer), as Service Weaver
   * scales the profile of one replica by its group's replica count.
   * Default 1.
   */
  readonly scale?: number
  /**
   * String labels added to every sample (replacing labels of the same key),
   * e.g. the colocation group a profile came from, for `pprof -tagfocus`.
   */
  readonly labels?: Readonly<Record<string, string>>
}

const num = (n: Format.Profile["period"]): number => Number(n)

/**
 * Merges pprof profiles (gzipped or not) into one gzipped profile, as
 * pprof's `profile.Merge` does: strings, mappings, functions and locations
 * are re-interned into shared tables, samples with the same stack and labels
 * are summed, values are multiplied by `scale`, the start time is the
 * earliest, durations add up and the period is the largest. The profiles
 * must have the same sample types; to merge groups with different scales,
 * scale each group with `merge([p], { scale })` first.
 *
 * @since 0.1.0
 * @category combinators
 */
export const merge = (
  profiles: ReadonlyArray<Uint8Array>,
  options?: MergeOptions
): Effect.Effect<Uint8Array, ProfilingError> =>
  Effect.gen(function*() {
    const scale = options?.scale ?? 1
    if (!Number.isFinite(scale) || scale < 0) {
      return yield* new ProfilingError({ reason: "input", message: `invalid profile scale ${scale}` })
    }
    if (profiles.length === 0) {
      return yield* new ProfilingError({ reason: "input", message: "no profiles to merge" })
    }
    const decoded = yield* Effect.forEach(profiles, decode)
    return yield* encode(yield* mergeProfiles(decoded, scale, options?.labels))
  })

const typesOf = (p: Format.Profile) =>
  p.sampleType.map((t) => `${p.stringTable.strings[num(t.type)]}/${p.stringTable.strings[num(t.unit)]}`).join(",")

/**
 * Merges decoded profiles; see {@link merge}.
 *
 * @since 0.1.0
 * @category combinators
 */
export const mergeProfiles = (
  profiles: ReadonlyArray<Format.Profile>,
  scale = 1,
  labels?: Readonly<Record<string, string>>
): Effect.Effect<Format.Profile, ProfilingError> =>
  Effect.gen(function*() {
    const first = profiles[0]
    if (first === undefined) return yield* new ProfilingError({ reason: "input", message: "no profiles to merge" })
    const types = typesOf(first)
    for (const [i, p] of profiles.entries()) {
      if (typesOf(p) !== types) {
        return yield* new ProfilingError({
          reason: "input",
          message: `profile ${i + 1} has sample types ${typesOf(p)}, profile 1 has ${types}: they cannot be merged`
        })
      }
    }
    return mergeUnchecked(profiles, scale, labels ?? {})
  })

/** Entries kept once per key and numbered from 1 in order, as pprof numbers its tables. */
const makeTable = <A>() => {
  const entries: Array<A> = []
  const ids = new Map<string, number>()
  const intern = (key: string, make: (id: number) => A): number => {
    let id = ids.get(key)
    if (id === undefined) {
      id = entries.length + 1
      ids.set(key, id)
      entries.push(make(id))
    }
    return id
  }
  return { entries, intern }
}

const mergeUnchecked = (
  profiles: ReadonlyArray<Format.Profile>,
  scale: number,
  extraLabels: Readonly<Record<string, string>>
): Format.Profile => {
  const first = profiles[0]!
  const strings = new Format.StringTable()
  const mappings = makeTable<Format.Mapping>()
  const functions = makeTable<Format.Function>()
  const locations = makeTable<Format.Location>()
  const samples = new Map<string, Format.Sample>()
  let timeNanos = 0
  let durationNanos = 0
  let period = 0
  const comments: Array<number> = []
  const extra = Object.entries(extraLabels).map(([key, value]) => ({
    key: strings.dedup(key),
    str: strings.dedup(value),
    num: 0,
    numUnit: 0
  }))

  for (const p of profiles) {
    const str = (i: Format.Profile["period"]) => strings.dedup(p.stringTable.strings[num(i)] ?? "")
    const mappingMap = new Map<number, number>()
    for (const m of p.mapping) {
      const fields = {
        memoryStart: m.memoryStart,
        memoryLimit: m.memoryLimit,
        fileOffset: m.fileOffset,
        filename: str(m.filename),
        buildId: str(m.buildId),
        hasFunctions: m.hasFunctions,
        hasFilenames: m.hasFilenames,
        hasLineNumbers: m.hasLineNumbers,
        hasInlineFrames: m.hasInlineFrames
      }
      const key = JSON.stringify(fields, (_, v) => typeof v === "bigint" ? v.toString() : v)
      mappingMap.set(num(m.id), mappings.intern(key, (id) => new Format.Mapping({ id, ...fields })))
    }
    const functionMap = new Map<number, number>()
    for (const f of p.function) {
      const fields = {
        name: str(f.name),
        systemName: str(f.systemName),
        filename: str(f.filename),
        startLine: num(f.startLine)
      }
      const key = `${fields.name}|${fields.systemName}|${fields.filename}|${fields.startLine}`
      functionMap.set(num(f.id), functions.intern(key, (id) => new Format.Function({ id, ...fields })))
    }
    const locationMap = new Map<number, number>()
    for (const l of p.location) {
      const mappingId = mappingMap.get(num(l.mappingId)) ?? 0
      const lines = l.line.map((line) => ({
        functionId: functionMap.get(num(line.functionId)) ?? 0,
        line: num(line.line),
        column: num(line.column)
      }))
      const key = `${mappingId}|${String(l.address)}|${l.isFolded}|${
        lines.map((x) => `${x.functionId}:${x.line}:${x.column}`).join(",")
      }`
      locationMap.set(
        num(l.id),
        locations.intern(
          key,
          (id) => new Format.Location({ id, mappingId, address: l.address, isFolded: l.isFolded, line: lines })
        )
      )
    }
    for (const s of p.sample) {
      const locationId = s.locationId.map((id) => locationMap.get(num(id)) ?? 0)
      const own = s.label.map((l) => ({
        key: str(l.key),
        str: str(l.str),
        num: l.num,
        numUnit: str(l.numUnit)
      }))
      const label = extra.length === 0
        ? own
        : [...own.filter((l) => !extra.some((e) => e.key === l.key)), ...extra]
      const key = `${locationId.join(",")}|${
        label.map((l) => `${l.key}=${l.str}:${String(l.num)}:${l.numUnit}`).sort().join(",")
      }`
      const value = s.value.map((v) => Math.round(num(v) * scale))
      const existing = samples.get(key)
      if (existing === undefined) {
        samples.set(key, new Format.Sample({ locationId, value, label }))
      } else {
        existing.value = existing.value.map((v, i) => num(v) + (value[i] ?? 0))
      }
    }
    const t = num(p.timeNanos)
    if (timeNanos === 0 || (t !== 0 && t < timeNanos)) timeNanos = t
    durationNanos += num(p.durationNanos)
    period = Math.max(period, num(p.period))
    for (const c of p.comment) comments.push(str(c))
  }

  const str = (i: Format.Profile["period"]) => strings.dedup(first.stringTable.strings[num(i)] ?? "")
  return new Format.Profile({
    sampleType: first.sampleType.map((t) => ({ type: str(t.type), unit: str(t.unit) })),
    ...(first.periodType === undefined ? {} : {
      periodType: { type: str(first.periodType.type), unit: str(first.periodType.unit) }
    }),
    period,
    sample: [...samples.values()],
    mapping: mappings.entries,
    location: locations.entries,
    function: functions.entries,
    stringTable: strings,
    dropFrames: str(first.dropFrames),
    keepFrames: str(first.keepFrames),
    timeNanos,
    durationNanos,
    comment: comments,
    defaultSampleType: str(first.defaultSampleType),
    docUrl: str(first.docUrl)
  })
}

const units: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  "µs": 1e-3,
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000
}

/**
 * Parses a Go duration such as `30s`, `1m30s`, `500ms` or `1.5h` (the form
 * Service Weaver's `--duration` flag takes). Fails naming the text when it is
 * not one, or when it is not positive.
 *
 * @since 0.1.0
 * @category constructors
 */
export const parseDuration = (text: string): Effect.Effect<Duration.Duration, ProfilingError> => {
  const invalid = new ProfilingError({
    reason: "input",
    message: `invalid duration ${JSON.stringify(text)}: expected a positive duration such as "30s", "1m" or "500ms"`
  })
  if (!/^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/.test(text)) return Effect.fail(invalid)
  let millis = 0
  for (const [, amount, unit] of text.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) {
    millis += Number(amount) * units[unit!]!
  }
  return millis > 0 ? Effect.succeed(Duration.millis(millis)) : Effect.fail(invalid)
}

/**
 * Parses a profile type, failing with the accepted ones.
 *
 * @since 0.1.0
 * @category constructors
 */
export const parseType = (text: string): Effect.Effect<ProfileType, ProfilingError> =>
  (profileTypes as ReadonlyArray<string>).includes(text)
    ? Effect.succeed(text as ProfileType)
    : Effect.fail(
      new ProfilingError({
        reason: "input",
        message: `invalid profile type ${JSON.stringify(text)}: expected one of ${profileTypes.join(", ")}`
      })
    )

/**
 * The status-server path that serves profiles:
 * `/debug/weaver/profile?type=cpu|heap&duration=30s`.
 *
 * @since 0.1.0
 * @category constants
 */
export const path = "/debug/weaver/profile"

/**
 * The default profile duration, as Service Weaver's `--duration` flag.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultDuration = "30s"

const statusOf = { input: 400, busy: 409, failed: 500 } as const

/**
 * The HTTP handler of {@link path} for profiles taken by `profile` (a
 * deployer merging the profiles of its replicas, say): answers with the
 * gzipped pprof bytes (`application/octet-stream`). `type` defaults to `cpu`
 * and `duration` to `30s`. A bad type or duration is a 400 naming it, a
 * profile already in progress a 409, a profiler failure a 500; each with a
 * plain-text message.
 *
 * @since 0.1.0
 * @category runtime
 */
export const makeHttpHandler = (
  profile: (options: CollectOptions) => Effect.Effect<Uint8Array, ProfilingError>
): Effect.Effect<HttpServerResponse.HttpServerResponse, never, HttpServerRequest.HttpServerRequest> =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const params = new URL(request.url, "http://localhost").searchParams
    const type = yield* parseType(params.get("type") ?? "cpu")
    const duration = yield* parseDuration(params.get("duration") ?? defaultDuration)
    const bytes = yield* profile({ type, duration })
    return HttpServerResponse.uint8Array(bytes, {
      contentType: "application/octet-stream",
      headers: { "content-disposition": `attachment; filename="${type}.pb.gz"` }
    })
  }).pipe(
    Effect.catchAll((error) =>
      Effect.succeed(HttpServerResponse.text(error.message, { status: statusOf[error.reason] }))
    )
  )

/**
 * The HTTP handler of {@link path} that profiles this process (see
 * {@link collect} and {@link makeHttpHandler}).
 *
 * @since 0.1.0
 * @category runtime
 */
export const httpHandler: Effect.Effect<
  HttpServerResponse.HttpServerResponse,
  never,
  HttpServerRequest.HttpServerRequest
> = makeHttpHandler(collect)
