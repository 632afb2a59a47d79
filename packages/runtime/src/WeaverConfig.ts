/**
 * weaver.toml: the deployment config, with the same keys as Service Weaver.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import { parse as parseToml, TomlError } from "smol-toml"

/**
 * A mistake in a config file. The message names the file, and where known
 * the line and column, the section and the key.
 *
 * A `Schema.TaggedError`: an application checking a config for its deployer
 * (`ConfigCheck`) sends it to the deployer's process.
 *
 * @since 0.1.0
 * @category errors
 */
export class WeaverConfigError extends Schema.TaggedError<WeaverConfigError>()("WeaverConfigError", {
  file: Schema.String,
  section: Schema.optional(Schema.String),
  key: Schema.optional(Schema.String),
  line: Schema.optional(Schema.Number),
  column: Schema.optional(Schema.Number),
  reason: Schema.String
}) {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    const at = this.line === undefined ? "" : `:${this.line}:${this.column ?? 1}`
    const where = [
      this.section === undefined ? undefined : `[${quoteSection(this.section)}]`,
      this.key === undefined ? undefined : `key "${this.key}"`
    ].filter((part) => part !== undefined).join(" ")
    return `${this.file}${at}: ${where === "" ? "" : `${where}: `}${this.reason}`
  }
}

const quoteSection = (section: string) => /^[\w-]+$/.test(section) ? section : JSON.stringify(section)

const Address = Schema.String.pipe(
  Schema.filter(
    (s) => /^(\[[0-9a-fA-F:.]+\]|[^:\s[\]]*):\d{1,5}$/.test(s) && Number(s.slice(s.lastIndexOf(":") + 1)) <= 65535,
    {
      message: (issue) => `expected "host:port", got ${JSON.stringify(issue.actual)}`
    }
  )
)

const Listeners = Schema.Record({
  key: Schema.String,
  value: Schema.Struct({ address: Address })
})

const EnvEntry = Schema.String.pipe(
  Schema.filter((s) => /^[^=\s]+=/.test(s), {
    message: (issue) => `expected "KEY=value", got ${JSON.stringify(issue.actual)}`
  })
)

const GoDuration = Schema.String.pipe(
  Schema.filter((s) => /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/.test(s), {
    message: (issue) => `expected a duration such as "1h" or "30m", got ${JSON.stringify(issue.actual)}`
  })
)

const goUnits: Record<string, number> = { ns: 1e-6, us: 1e-3, "µs": 1e-3, ms: 1, s: 1e3, m: 60e3, h: 3600e3 }

/**
 * The variables `[serviceweaver] env` sets, each `KEY=value` split at its
 * first `=` (the config's schema refuses an entry without one).
 *
 * @since 0.1.0
 * @category getters
 */
export const environment = (config: WeaverConfig): Record<string, string> => {
  const variables: Record<string, string> = {}
  for (const entry of config.serviceweaver.env) {
    const eq = entry.indexOf("=")
    variables[entry.slice(0, eq)] = entry.slice(eq + 1)
  }
  return variables
}

/**
 * The milliseconds of a Go duration string as the config accepts them
 * (`"1h30m"`, `"250ms"`).
 *
 * @since 0.1.0
 * @category parsing
 */
export const goDurationMillis = (text: string): number => {
  let millis = 0
  for (const [, amount, unit] of text.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) {
    millis += Number(amount) * goUnits[unit!]!
  }
  return millis
}

/**
 * The `[serviceweaver]` section.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ServiceWeaverSection = Schema.Struct({
  name: Schema.optional(Schema.String),
  binary: Schema.optional(Schema.String),
  args: Schema.optionalWith(Schema.Array(Schema.String), { default: () => [] }),
  env: Schema.optionalWith(Schema.Array(EnvEntry), { default: () => [] }),
  colocate: Schema.optionalWith(Schema.Array(Schema.Array(Schema.String)), { default: () => [] }),
  rollout: Schema.optional(GoDuration),
  /**
   * A deadline for every component call made without an earlier one, e.g.
   * `"5s"` (beyond Service Weaver). A method's `timeout` and
   * `Component.withTimeout` override it. None by default.
   */
  call_timeout: Schema.optional(GoDuration)
})

/**
 * The `[single]` section.
 *
 * @since 0.1.0
 * @category schemas
 */
export const SingleSection = Schema.Struct({
  listeners: Schema.optionalWith(Listeners, { default: () => ({}) }),
  /**
   * Run each colocation group in a worker thread of the process
   * (`@effect-weaver/transport-worker`): another core for each, without
   * another process. Main stays on the main thread.
   */
  workers: Schema.optionalWith(Schema.Boolean, { default: () => false })
})

/**
 * The `[multi]` section. `replicas` is how many processes run each
 * colocation group (Service Weaver hard-codes 2).
 *
 * @since 0.1.0
 * @category schemas
 */
export const MultiSection = Schema.Struct({
  listeners: Schema.optionalWith(Listeners, { default: () => ({}) }),
  replicas: Schema.optionalWith(Schema.Int.pipe(Schema.between(1, 64)), { default: () => 2 }),
  /**
   * Mutual TLS between the processes, with call-graph authorization (Service
   * Weaver's `mtls`); off by default, because TLS costs more p50 latency than
   * the RPC bar allows (README, Security).
   */
  mtls: Schema.optionalWith(Schema.Boolean, { default: () => false })
})

/**
 * A parsed config file. Component sections are kept raw until the
 * application that owns them decodes them with {@link validate}.
 *
 * @since 0.1.0
 * @category models
 */
export interface WeaverConfig {
  /** The file the config came from, as named in error messages. */
  readonly file: string
  /** The directory relative paths (such as `binary`) are resolved against. */
  readonly dir: string
  readonly serviceweaver: typeof ServiceWeaverSection.Type
  readonly single: typeof SingleSection.Type
  readonly multi: typeof MultiSection.Type
  /** Component sections, keyed by full component name. */
  readonly sections: { readonly [component: string]: unknown }
}

const builtinSections = {
  serviceweaver: ServiceWeaverSection,
  single: SingleSection,
  multi: MultiSection
} as const

const decodeOptions = { errors: "first", onExcessProperty: "error" } as const

/**
 * Decodes `input` with `schema`, turning the first issue into a
 * {@link WeaverConfigError} that names the section and key.
 *
 * @internal
 */
export const decodeSection = <A, I>(
  schema: Schema.Schema<A, I, never>,
  input: unknown,
  file: string,
  section: string
): Either.Either<A, WeaverConfigError> =>
  Schema.decodeUnknownEither(schema, decodeOptions)(input ?? {}).pipe(
    Either.mapLeft((error) => {
      const [issue] = ParseResult.ArrayFormatter.formatErrorSync(error)
      const key = issue && issue.path.length > 0 ? issue.path.map(String).join(".") : undefined
      const reason = issue === undefined
        ? error.message
        : issue._tag === "Unexpected"
        ? "unknown key"
        : issue._tag === "Missing"
        ? "missing required key"
        : issue.message
      return new WeaverConfigError({ file, section, key, reason })
    })
  )

/**
 * The config used when no file is given: every default.
 *
 * @since 0.1.0
 * @category constructors
 */
export const empty = (file = "<no config>", dir = process.cwd()): WeaverConfig => ({
  file,
  dir,
  serviceweaver: { args: [], env: [], colocate: [] },
  single: { listeners: {}, workers: false },
  multi: { listeners: {}, replicas: 2, mtls: false },
  sections: {}
})

/**
 * Parses and decodes TOML text. `file` names the text in error messages and
 * `dir` is where relative paths in it are resolved.
 *
 * @since 0.1.0
 * @category constructors
 */
export const parse = (
  text: string,
  file = "<inline config>",
  dir = process.cwd()
): Either.Either<WeaverConfig, WeaverConfigError> => {
  let doc: Record<string, unknown>
  // smol-toml reports syntax errors by throwing; this is the one boundary where we catch.
  try {
    doc = parseToml(text) as Record<string, unknown>
  } catch (e) {
    if (e instanceof TomlError) {
      return Either.left(
        new WeaverConfigError({
          file,
          line: e.line,
          column: e.column,
          reason: `malformed TOML: ${e.message.split("\n")[0]}`
        })
      )
    }
    return Either.left(new WeaverConfigError({ file, reason: `malformed TOML: ${String(e)}` }))
  }
  const decoded: Record<string, unknown> = {}
  const sections: Record<string, unknown> = {}
  for (const [section, value] of Object.entries(doc)) {
    if (section in builtinSections) {
      if (typeof value !== "object" || value === null || Array.isArray(value)) {
        return Either.left(new WeaverConfigError({ file, section, reason: "expected a table" }))
      }
      const result = decodeSection(
        builtinSections[section as keyof typeof builtinSections] as any,
        value,
        file,
        section
      )
      if (Either.isLeft(result)) return Either.left(result.left)
      decoded[section] = result.right
    } else if (section.includes("/")) {
      sections[section] = value
    } else {
      return Either.left(
        new WeaverConfigError({
          file,
          section,
          reason:
            `unknown section (expected [serviceweaver], [single], [multi] or a component section such as ["app/Component"])`
        })
      )
    }
  }
  const base = empty(file, dir)
  const config: WeaverConfig = {
    file,
    dir,
    serviceweaver: (decoded.serviceweaver as WeaverConfig["serviceweaver"]) ?? base.serviceweaver,
    single: (decoded.single as WeaverConfig["single"]) ?? base.single,
    multi: (decoded.multi as WeaverConfig["multi"]) ?? base.multi,
    sections
  }
  const seen = new Map<string, number>()
  for (const [index, group] of config.serviceweaver.colocate.entries()) {
    for (const component of group) {
      const previous = seen.get(component)
      if (previous !== undefined && previous !== index) {
        return Either.left(
          new WeaverConfigError({
            file,
            section: "serviceweaver",
            key: "colocate",
            reason: `component ${component} is in two colocation groups (groups ${previous + 1} and ${index + 1})`
          })
        )
      }
      seen.set(component, index)
    }
  }
  return Either.right(config)
}

/**
 * Reads and parses a config file.
 *
 * @since 0.1.0
 * @category constructors
 */
export const load = (path: string): Effect.Effect<WeaverConfig, WeaverConfigError> =>
  Effect.tryPromise({
    try: () => Fs.readFile(path, "utf8"),
    catch: (e) =>
      new WeaverConfigError({
        file: path,
        reason: `cannot read config file: ${(e as NodeJS.ErrnoException).code ?? String(e)}`
      })
  }).pipe(
    Effect.flatMap((text) => parse(text, path, Path.dirname(Path.resolve(path))))
  )

/**
 * What an application declares, for checking a config against it.
 *
 * @since 0.1.0
 * @category models
 */
export interface AppShape {
  readonly components: ReadonlyMap<string, Schema.Schema<any, any, never> | undefined>
  readonly listeners: ReadonlySet<string>
  /** The listeners each component serves, by component name (`main` for the main component). */
  readonly serves?: ReadonlyMap<string, ReadonlyArray<string>> | undefined
  /**
   * The components declared singletons (`main` among them if it is one).
   *
   * @since 0.2.0
   */
  readonly singletons?: ReadonlyArray<string> | undefined
}

/**
 * Checks a config against an application and decodes each component's
 * section with its config schema. Returns the decoded sections by component.
 *
 * @since 0.1.0
 * @category constructors
 */
export const validate = (
  config: WeaverConfig,
  app: AppShape
): Either.Either<ReadonlyMap<string, unknown>, WeaverConfigError> => {
  const { file } = config
  const known = [...app.listeners].sort().join(", ") || "none"
  const components = [...app.components.keys()].sort().join(", ") || "none"
  for (const tool of ["single", "multi"] as const) {
    for (const name of Object.keys(config[tool].listeners)) {
      if (!app.listeners.has(name)) {
        return Either.left(
          new WeaverConfigError({
            file,
            section: tool,
            key: `listeners.${name}`,
            reason: `unknown listener "${name}" (the application declares: ${known})`
          })
        )
      }
    }
  }
  for (const group of config.serviceweaver.colocate) {
    for (const component of group) {
      // `main` may be colocated too, as in Service Weaver (its collatz example: [["main", ".../Even", ".../Odd"]]).
      if (!app.components.has(component) && component !== "main") {
        return Either.left(
          new WeaverConfigError({
            file,
            section: "serviceweaver",
            key: "colocate",
            reason: `unknown component ${component} (the application's components: ${components})`
          })
        )
      }
    }
  }
  const decoded = new Map<string, unknown>()
  for (const section of Object.keys(config.sections)) {
    if (!app.components.has(section)) {
      return Either.left(
        new WeaverConfigError({
          file,
          section,
          reason: `no component named ${section} in the application (its components: ${components})`
        })
      )
    }
    if (app.components.get(section) === undefined) {
      return Either.left(
        new WeaverConfigError({
          file,
          section,
          reason: `component ${section} takes no config (give its implementation a config schema)`
        })
      )
    }
  }
  for (const [component, schema] of app.components) {
    if (schema === undefined) continue
    const result = decodeSection(schema, config.sections[component], file, component)
    if (Either.isLeft(result)) return Either.left(result.left)
    decoded.set(component, result.right)
  }
  return Either.right(decoded)
}
