/**
 * The wire protocol of the RPC transport: frames, the handshake, request
 * headers and the payload codec. `docs/WIRE.md` is the normative description;
 * this module is its only implementation.
 *
 * ```
 * frame  = length:u32le type:u8 id:u32le body      (length = 5 + body bytes)
 * ```
 *
 * @since 0.1.0
 */
import * as Component from "@effect-weaver/runtime/Component"
import * as Data from "effect/Data"
import { addExtension, Packr } from "msgpackr"

/**
 * The protocol version this build speaks. Peers must speak the same version.
 * Version 2 added streaming calls (frame types 5–7, request flag 16).
 *
 * @since 0.1.0
 * @category constants
 */
export const version = 2

/**
 * Bytes before a frame's body: length (4), type (1), id (4).
 *
 * @since 0.1.0
 * @category constants
 */
export const headerBytes = 9

/**
 * Default limit on the size of one frame (everything after the length field).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultMaxFrameBytes = 16 * 1024 * 1024

/**
 * Frame types.
 *
 * @since 0.1.0
 * @category constants
 */
export const FrameType = {
  Hello: 0,
  Request: 1,
  Response: 2,
  Error: 3,
  Cancel: 4,
  /** A batch of a stream's elements (server → client). @since 0.2.0 */
  StreamItems: 5,
  /** A stream completed (server → client). @since 0.2.0 */
  StreamEnd: 6,
  /** More elements a stream's consumer accepts (client → server). @since 0.2.0 */
  Credit: 7
} as const

/** The highest frame type this version knows. */
const lastFrameType = FrameType.Credit

/**
 * @since 0.1.0
 * @category models
 */
export type FrameType = typeof FrameType[keyof typeof FrameType]

/**
 * The kinds of an error frame's body.
 *
 * @since 0.1.0
 * @category constants
 */
export const ErrorKind = {
  /** A value of the method's declared `error` schema. */
  Application: 0,
  /** A transport or runtime failure: `[reason, detail]`. */
  System: 1
} as const

/**
 * A peer broke the protocol: the connection it arrived on is closed.
 *
 * @since 0.1.0
 * @category errors
 */
export class ProtocolError extends Data.TaggedError("ProtocolError")<{
  readonly reason: string
}> {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return this.reason
  }
}

const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true })

/**
 * A string with lone surrogates, which UTF-8 cannot carry: msgpackr writes it
 * as the extension {@link utf16Extension} (its UTF-16LE code units) and reads
 * that back as the string. Only this module makes instances, so registering
 * the class with msgpackr (a process-wide registry) changes nothing for other
 * users of msgpackr.
 */
class LoneSurrogates {
  constructor(readonly value: string) {}
}

/**
 * A plain object with a key that has lone surrogates: msgpackr writes it as
 * the extension {@link surrogateKeysExtension}, its `[key, value]` pairs with
 * such keys as {@link LoneSurrogates}, and reads that back as the object.
 */
class SurrogateKeys {
  constructor(readonly entries: ReadonlyArray<readonly [unknown, unknown]>) {}
}

const isWellFormed = (value: string): boolean => (value as unknown as { isWellFormed(): boolean }).isWellFormed()

const isPlainObject = (value: object): value is Record<string, unknown> => {
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/** Whether a string in `value` (in arrays and plain objects, keys included, at any depth) has lone surrogates. */
const hasLoneSurrogates = (value: unknown): boolean => {
  if (typeof value === "string") return !isWellFormed(value)
  if (typeof value !== "object" || value === null) return false
  if (Array.isArray(value)) return value.some(hasLoneSurrogates)
  if (!isPlainObject(value)) return false
  for (const key in value) {
    if (!isWellFormed(key) || hasLoneSurrogates(value[key])) return true
  }
  return false
}

/**
 * A copy of `value` in which each string with lone surrogates is a
 * {@link LoneSurrogates}, and each object with such a key a {@link SurrogateKeys}.
 */
const markLoneSurrogates = (value: unknown): unknown => {
  if (typeof value === "string") return isWellFormed(value) ? value : new LoneSurrogates(value)
  if (typeof value !== "object" || value === null) return value
  if (Array.isArray(value)) return value.map(markLoneSurrogates)
  if (!isPlainObject(value)) return value
  const copy: Record<string, unknown> = {}
  let keysWellFormed = true
  for (const key in value) {
    copy[key] = markLoneSurrogates(value[key])
    keysWellFormed &&= isWellFormed(key)
  }
  if (keysWellFormed) return copy
  return new SurrogateKeys(
    Object.entries(copy).map(([key, item]) => [isWellFormed(key) ? key : new LoneSurrogates(key), item] as const)
  )
}

/**
 * Encodes a value (the output of `Schema.encode`) as msgpack. The returned
 * buffer is only valid until the next call: copy it before packing again.
 * Strings with lone surrogates, at any depth and as object keys, cross
 * exactly (as the {@link utf16Extension} and {@link surrogateKeysExtension}).
 *
 * @since 0.1.0
 * @category codec
 */
export const pack = (value: unknown): Buffer => packr.pack(hasLoneSurrogates(value) ? markLoneSurrogates(value) : value)

/** The size of the msgpack str header for a string of `bytes` bytes. */
const strHeader = (bytes: number): number => bytes < 32 ? 1 : bytes < 0x100 ? 2 : bytes < 0x10000 ? 3 : 5

/**
 * Writes, at `offset`, a msgpack str header of `size` bytes for a string of
 * `bytes` bytes. The size may exceed the shortest that fits: msgpack readers
 * accept any header whose length field holds the count.
 */
const writeStrHeader = (buffer: Buffer, offset: number, size: number, bytes: number): void => {
  if (size === 1) {
    buffer[offset] = 0xa0 | bytes
  } else if (size === 2) {
    buffer[offset] = 0xd9
    buffer[offset + 1] = bytes
  } else if (size === 3) {
    buffer[offset] = 0xda
    buffer[offset + 1] = bytes >>> 8
    buffer[offset + 2] = bytes
  } else {
    buffer[offset] = 0xdb
    buffer.writeUInt32BE(bytes, offset + 1)
  }
}

/**
 * Where a frame is encoded: `reserve` makes room for `size` bytes at `end`
 * and returns the buffer to write them into.
 */
interface Sink {
  readonly end: number
  reserve(size: number): Buffer
}

/** A sink that is a new buffer of exactly the frame's size. */
class OneFrame implements Sink {
  readonly end = 0
  buffer: Buffer | undefined = undefined
  reserve(size: number): Buffer {
    this.buffer = Buffer.allocUnsafe(size)
    return this.buffer
  }
}

/** Writes, at `at`, the header of a frame of `size` bytes and the `prefix` that starts its body. */
const writeFrameHead = (
  buffer: Buffer,
  at: number,
  size: number,
  type: FrameType,
  id: number,
  prefix: Uint8Array | undefined
): void => {
  // Byte stores rather than writeUInt32LE, whose range checks cost as much as the rest of a small frame's header.
  const length = size - 4
  buffer[at] = length
  buffer[at + 1] = length >>> 8
  buffer[at + 2] = length >>> 16
  buffer[at + 3] = length >>> 24
  buffer[at + 4] = type
  buffer[at + 5] = id
  buffer[at + 6] = id >>> 8
  buffer[at + 7] = id >>> 16
  buffer[at + 8] = id >>> 24
  if (prefix !== undefined) buffer.set(prefix, at + headerBytes)
}

/**
 * Encodes a frame whose body is `prefix` followed by the msgpack encoding of
 * `value` into `sink`, at its end, and returns the frame's size. Strings (the
 * most common encoded payload) are written straight into the frame, short
 * ASCII ones by a loop in JavaScript (a fraction of a native `Buffer.write`
 * call at that length); other values go through msgpackr. Throws if msgpackr
 * cannot pack the value, before anything is written.
 */
const encodeValueFrame = (
  sink: Sink,
  type: FrameType,
  id: number,
  prefix: Uint8Array | undefined,
  value: unknown
): number => {
  const prefixLength = prefix === undefined ? 0 : prefix.length
  if (typeof value !== "string") {
    const packed = pack(value)
    const size = headerBytes + prefixLength + packed.length
    const buffer = sink.reserve(size)
    const at = sink.end
    writeFrameHead(buffer, at, size, type, id, prefix)
    buffer.set(packed, at + headerBytes + prefixLength)
    return size
  }
  const length = value.length
  if (length < 32) {
    const start = headerBytes + prefixLength + 1
    const size = start + length
    const buffer = sink.reserve(size)
    const at = sink.end
    let i = 0
    for (; i < length; i++) {
      const code = value.charCodeAt(i)
      if (code > 0x7f) break
      buffer[at + start + i] = code
    }
    if (i === length) {
      writeFrameHead(buffer, at, size, type, id, prefix)
      buffer[at + start - 1] = 0xa0 | length
      return size
    }
    // Not ASCII: the bytes written are overwritten below.
  }
  if (!isWellFormed(value)) {
    // Lone surrogates, which UTF-8 cannot carry: the UTF-16 extension.
    const bytes = length * 2
    const size = headerBytes + prefixLength + 6 + bytes
    const buffer = sink.reserve(size)
    const at = sink.end
    writeFrameHead(buffer, at, size, type, id, prefix)
    const offset = at + headerBytes + prefixLength
    buffer[offset] = 0xc9
    buffer.writeUInt32BE(bytes, offset + 1)
    buffer[offset + 5] = utf16Extension
    buffer.write(value, offset + 6, bytes, "utf16le")
    return size
  }
  // One pass over the string: encoded into room for its longest UTF-8 (3 bytes per UTF-16 code unit), behind a
  // header sized for that, instead of measuring its UTF-8 length first.
  const header = strHeader(3 * length)
  const start = headerBytes + prefixLength + header
  const buffer = sink.reserve(start + 3 * length)
  const at = sink.end
  const bytes = buffer.write(value, at + start, "utf8")
  const size = start + bytes
  writeFrameHead(buffer, at, size, type, id, prefix)
  writeStrHeader(buffer, at + headerBytes + prefixLength, header, bytes)
  return size
}

/**
 * A frame whose body is `prefix` followed by the msgpack encoding of
 * `value`, built with one allocation (see {@link FrameWriter.writeValue},
 * which needs none).
 *
 * @since 0.1.0
 * @category codec
 */
export const frameWithValue = (type: FrameType, id: number, prefix: Uint8Array | undefined, value: unknown): Buffer => {
  const sink = new OneFrame()
  const size = encodeValueFrame(sink, type, id, prefix, value)
  // The last buffer reserved is the frame's (longer than the frame when a string's UTF-8 length was not known).
  return size === sink.buffer!.length ? sink.buffer! : sink.buffer!.subarray(0, size)
}

/**
 * The msgpack extension type carrying a string as UTF-16LE code units: used
 * for a string with lone surrogates, which UTF-8 cannot represent, so that
 * string payloads and results cross the wire exactly.
 *
 * @since 0.1.0
 * @category constants
 */
export const utf16Extension = 0x57

/**
 * The msgpack extension type carrying a plain object with a key that has
 * lone surrogates: the array of its `[key, value]` pairs, such keys as
 * {@link utf16Extension} strings.
 *
 * @since 0.1.0
 * @category constants
 */
export const surrogateKeysExtension = 0x58

addExtension({
  Class: SurrogateKeys,
  type: surrogateKeysExtension,
  write: (marked: SurrogateKeys) => marked.entries,
  read: (entries: ReadonlyArray<readonly [string, unknown]>) => Object.fromEntries(entries)
})

addExtension({
  Class: LoneSurrogates,
  type: utf16Extension,
  pack: (marked: LoneSurrogates) => Buffer.from(marked.value, "utf16le"),
  unpack: (bytes: Uint8Array) => asBuffer(bytes).toString("utf16le")
})

/**
 * Decodes msgpack bytes (those from `from` to `to`).
 *
 * @since 0.1.0
 * @category codec
 */
export const unpack = (bytes: Uint8Array, from = 0, to = bytes.length): unknown => {
  // Fast path for a lone msgpack str (the most common encoded value); anything else goes to msgpackr.
  const size = to - from
  const first = bytes[from]
  if (first !== undefined && size > 0) {
    let start = -1
    let length = -1
    if ((first & 0xe0) === 0xa0) {
      start = 1
      length = first & 0x1f
    } else if (first === 0xd9 && size >= 2) {
      start = 2
      length = bytes[from + 1]!
    } else if (first === 0xda && size >= 3) {
      start = 3
      length = (bytes[from + 1]! << 8) | bytes[from + 2]!
    } else if (first === 0xdb && size >= 5) {
      start = 5
      length = asBuffer(bytes).readUInt32BE(from + 1)
    }
    if (start > 0 && start + length === size) {
      return asBuffer(bytes).toString("utf8", from + start, to)
    }
    if (first === 0xc9 && size >= 6 && bytes[from + 5] === utf16Extension) {
      const view = asBuffer(bytes)
      if (6 + view.readUInt32BE(from + 1) === size && size % 2 === 0) return view.toString("utf16le", from + 6, to)
    }
  }
  return packr.unpack(from === 0 && to === bytes.length ? bytes : bytes.subarray(from, to))
}

const asBuffer = (bytes: Uint8Array): Buffer =>
  Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length)

/**
 * A frame with its body copied in after a 9-byte header.
 *
 * @since 0.1.0
 * @category codec
 */
export const frame = (type: FrameType, id: number, ...parts: ReadonlyArray<Uint8Array>): Buffer => {
  let size = 0
  for (const part of parts) size += part.length
  const buffer = Buffer.allocUnsafe(headerBytes + size)
  buffer.writeUInt32LE(5 + size, 0)
  buffer[4] = type
  buffer.writeUInt32LE(id, 5)
  let offset = headerBytes
  for (const part of parts) {
    buffer.set(part, offset)
    offset += part.length
  }
  return buffer
}

/**
 * The handshake both sides send first.
 *
 * @since 0.1.0
 * @category models
 */
export interface Hello {
  readonly version: number
  readonly deploymentId: string
}

/**
 * @since 0.1.0
 * @category codec
 */
export const encodeHello = (hello: Hello): Buffer => {
  const id = Buffer.from(hello.deploymentId, "utf8")
  const body = Buffer.allocUnsafe(4 + id.length)
  body.writeUInt16LE(hello.version, 0)
  body.writeUInt16LE(id.length, 2)
  body.set(id, 4)
  return frame(FrameType.Hello, 0, body)
}

/**
 * @since 0.1.0
 * @category codec
 */
export const decodeHello = (body: Buffer): Hello | ProtocolError => {
  if (body.length < 4) {
    return new ProtocolError({
      reason: `malformed hello frame: a body of ${body.length} bytes, shorter than its version and id length (4)`
    })
  }
  if (body.length !== 4 + body.readUInt16LE(2)) {
    return new ProtocolError({
      reason: `malformed hello frame: its deployment id length says ${body.readUInt16LE(2)} bytes, ` +
        `it carries ${body.length - 4}`
    })
  }
  return { version: body.readUInt16LE(0), deploymentId: body.toString("utf8", 4) }
}

/**
 * Why a handshake is refused, or `undefined` if the peer may talk to us. The
 * reason is sent to the peer: it never contains this process's deployment
 * id, which a peer of another deployment (or no deployment at all) has no
 * business learning.
 *
 * @since 0.1.0
 * @category codec
 */
export const checkHello = (mine: Hello, theirs: Hello): string | undefined => {
  if (theirs.version !== mine.version) {
    return `protocol version mismatch: peer speaks version ${theirs.version}, this process speaks ${mine.version}`
  }
  if (theirs.deploymentId !== mine.deploymentId) {
    return "deployment mismatch: the peer's deployment id does not match this process's (calls never cross deployments)"
  }
  return undefined
}

/**
 * Default limit on the size of a hello frame, the only frame a server reads
 * before the handshake: a version and a deployment id (a UUID, usually)
 * fit in a few dozen bytes.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultMaxHelloBytes = 4 * 1024

/**
 * A string a peer sent, quoted and cut to at most `max` characters, for log
 * lines and error details: hostile input must not make either unbounded or
 * unreadable.
 *
 * @since 0.1.0
 * @category codec
 */
export const quote = (value: string, max = 64): string =>
  value.length <= max ? JSON.stringify(value) : `${JSON.stringify(value.slice(0, max))}… (${value.length} characters)`

/**
 * Flags of a request header.
 *
 * @since 0.1.0
 * @category constants
 */
export const HeaderFlag = {
  Deadline: 1,
  Trace: 2,
  Sampled: 4,
  Constructing: 8,
  /** The call opens a stream; the header ends with the consumer's initial credit. @since 0.2.0 */
  Stream: 16
} as const

/**
 * A decoded request header.
 *
 * @since 0.1.0
 * @category models
 */
export interface RequestHeader {
  /** `"<component>.<method>"`. */
  readonly method: string
  readonly caller: string
  /** Microseconds left until the deadline, or `undefined` for none. */
  readonly deadlineMicros: number | undefined
  readonly traceId: string | undefined
  readonly spanId: string | undefined
  readonly sampled: boolean
  /**
   * The components whose construction the call is made from, outermost
   * first (empty for ordinary calls): lets the server detect construction
   * cycles that cross processes.
   */
  readonly constructing: ReadonlyArray<string>
  /**
   * For a call that opens a stream, the elements its consumer accepts before
   * it grants more; `undefined` for an ordinary call.
   *
   * @since 0.2.0
   */
  readonly credit: number | undefined
}

/**
 * The part of a request header that is the same for every call of one method
 * from one caller: `keyLen:u16 key callerLen:u16 caller`.
 *
 * @since 0.1.0
 * @category codec
 */
export const encodeHeaderPrefix = (method: string, caller: string): Buffer => {
  const key = Buffer.from(method, "utf8")
  const from = Buffer.from(caller, "utf8")
  const prefix = Buffer.allocUnsafe(4 + key.length + from.length)
  prefix.writeUInt16LE(key.length, 0)
  prefix.set(key, 2)
  prefix.writeUInt16LE(from.length, 2 + key.length)
  prefix.set(from, 4 + key.length)
  return prefix
}

/**
 * The header suffix of a call with neither deadline nor trace context.
 *
 * @since 0.1.0
 * @category codec
 */
export const noFlags: Buffer = Buffer.from([0])

/**
 * The per-call part of a request header: flags, then the deadline and trace
 * context when present.
 *
 * @since 0.1.0
 * @category codec
 */
export const encodeHeaderSuffix = (
  deadlineMicros: number | undefined,
  trace: { readonly traceId: string; readonly spanId: string; readonly sampled: boolean } | undefined,
  constructing?: ReadonlyArray<string> | undefined,
  credit?: number | undefined
): Buffer => {
  const path = constructing !== undefined && constructing.length > 0 ? constructing : undefined
  if (deadlineMicros === undefined && trace === undefined && path === undefined && credit === undefined) return noFlags
  let size = 1
  let flags = 0
  if (deadlineMicros !== undefined) {
    flags |= HeaderFlag.Deadline
    size += 8
  }
  if (trace !== undefined) {
    flags |= HeaderFlag.Trace | (trace.sampled ? HeaderFlag.Sampled : 0)
    size += 2 + Buffer.byteLength(trace.traceId) + Buffer.byteLength(trace.spanId)
  }
  const names = path?.slice(0, 255).map((name) => Buffer.from(name, "utf8"))
  if (names !== undefined) {
    flags |= HeaderFlag.Constructing
    size += 1
    for (const name of names) size += 2 + name.length
  }
  if (credit !== undefined) {
    flags |= HeaderFlag.Stream
    size += 4
  }
  const buffer = Buffer.allocUnsafe(size)
  buffer[0] = flags
  let offset = 1
  if (deadlineMicros !== undefined) {
    buffer.writeDoubleLE(deadlineMicros, offset)
    offset += 8
  }
  if (trace !== undefined) {
    offset = writeShort(buffer, offset, trace.traceId)
    offset = writeShort(buffer, offset, trace.spanId)
  }
  if (names !== undefined) {
    buffer[offset++] = names.length
    for (const name of names) {
      buffer.writeUInt16LE(name.length, offset)
      buffer.set(name, offset + 2)
      offset += 2 + name.length
    }
  }
  if (credit !== undefined) buffer.writeUInt32LE(credit, offset)
  return buffer
}

const writeShort = (buffer: Buffer, offset: number, value: string): number => {
  const written = buffer.write(value, offset + 1, "utf8")
  buffer[offset] = written
  return offset + 1 + written
}

/**
 * The body of a request frame: `headerLen:u16 header payload`.
 *
 * @since 0.1.0
 * @category codec
 */
export const requestBody = (prefix: Buffer, suffix: Buffer, payload: Buffer): ReadonlyArray<Uint8Array> => {
  const length = Buffer.allocUnsafe(2)
  length.writeUInt16LE(prefix.length + suffix.length, 0)
  return [length, prefix, suffix, payload]
}

/**
 * The part of a request body before the payload: `headerLength:u16 header`.
 *
 * @since 0.1.0
 * @category codec
 */
export const requestHead = (prefix: Buffer, suffix: Buffer): Buffer => {
  const headerLength = prefix.length + suffix.length
  const head = Buffer.allocUnsafe(2 + headerLength)
  head.writeUInt16LE(headerLength, 0)
  prefix.copy(head, 2)
  suffix.copy(head, 2 + prefix.length)
  return head
}

const noPath: ReadonlyArray<string> = []

/**
 * The constant part of the last request header decoded (method key and
 * caller), and its strings: consecutive requests nearly always repeat it, and
 * comparing a few bytes costs less than decoding two strings.
 */
const last = { prefix: Buffer.alloc(0), method: "", caller: "" }

const samePrefix = (bytes: Buffer, start: number, end: number): boolean => {
  const prefix = last.prefix
  if (prefix.length !== end - start - 2) return false
  for (let i = 0; i < prefix.length; i++) {
    if (prefix[i] !== bytes[start + 2 + i]) return false
  }
  return true
}

/**
 * Decodes a request body (`bytes` from `start` to `end`) into its header and
 * where its payload begins (the payload runs to `end`).
 *
 * @since 0.1.0
 * @category codec
 */
export const decodeRequest = (
  bytes: Buffer,
  start = 0,
  end = bytes.length
): { readonly header: RequestHeader; readonly payloadStart: number } | ProtocolError => {
  const fail = (what: string) => new ProtocolError({ reason: `malformed request header: ${what}` })
  if (end - start < 2) return fail("missing header length")
  const headerEnd = start + 2 + bytes.readUInt16LE(start)
  if (headerEnd > end || headerEnd < start + 7) return fail("header length out of range")
  const keyLength = bytes.readUInt16LE(start + 2)
  if (start + 4 + keyLength + 2 > headerEnd) return fail("method key out of range")
  const callerLength = bytes.readUInt16LE(start + 4 + keyLength)
  let offset = start + 6 + keyLength + callerLength
  if (offset + 1 > headerEnd) return fail("caller out of range")
  if (!samePrefix(bytes, start, offset)) {
    last.prefix = Buffer.from(bytes.subarray(start + 2, offset))
    last.method = bytes.toString("utf8", start + 4, start + 4 + keyLength)
    last.caller = bytes.toString("utf8", start + 6 + keyLength, offset)
  }
  const { caller, method } = last
  const flags = bytes[offset++]!
  let deadlineMicros: number | undefined
  if (flags & HeaderFlag.Deadline) {
    if (offset + 8 > headerEnd) return fail("deadline out of range")
    deadlineMicros = bytes.readDoubleLE(offset)
    offset += 8
    if (!Number.isFinite(deadlineMicros)) return fail("deadline is not a number")
  }
  let traceId: string | undefined
  let spanId: string | undefined
  if (flags & HeaderFlag.Trace) {
    for (let i = 0; i < 2; i++) {
      if (offset + 1 > headerEnd) return fail("trace context out of range")
      const length = bytes[offset]!
      if (offset + 1 + length > headerEnd) return fail("trace context out of range")
      const value = bytes.toString("utf8", offset + 1, offset + 1 + length)
      offset += 1 + length
      if (i === 0) traceId = value
      else spanId = value
    }
  }
  let constructing: ReadonlyArray<string> = noPath
  if (flags & HeaderFlag.Constructing) {
    if (offset + 1 > headerEnd) return fail("construction path out of range")
    const count = bytes[offset++]!
    const path: Array<string> = []
    for (let i = 0; i < count; i++) {
      if (offset + 2 > headerEnd) return fail("construction path out of range")
      const length = bytes.readUInt16LE(offset)
      if (offset + 2 + length > headerEnd) return fail("construction path out of range")
      path.push(bytes.toString("utf8", offset + 2, offset + 2 + length))
      offset += 2 + length
    }
    constructing = path
  }
  let credit: number | undefined
  if (flags & HeaderFlag.Stream) {
    if (offset + 4 > headerEnd) return fail("stream credit out of range")
    credit = bytes.readUInt32LE(offset)
    offset += 4
    if (credit < 1 || credit > maxStreamCredit) {
      return fail(`stream credit ${credit} is out of range (1 to ${maxStreamCredit})`)
    }
  }
  return {
    header: {
      method,
      caller,
      deadlineMicros,
      traceId,
      spanId,
      sampled: (flags & HeaderFlag.Sampled) !== 0,
      constructing,
      credit
    },
    payloadStart: headerEnd
  }
}

/**
 * The most elements a stream's consumer may have granted and not yet
 * received: more is a protocol violation (a producer never has to hold more
 * than this many elements' worth of promises).
 *
 * @since 0.2.0
 * @category constants
 */
export const maxStreamCredit = 65_536

/**
 * The default window of a stream's consumer: the elements it accepts before
 * the first are consumed. It grants more as its consumer takes half of them.
 *
 * @since 0.2.0
 * @category constants
 */
export const defaultStreamWindow = 256

/**
 * The most elements a producer puts in one stream items frame.
 *
 * @since 0.2.0
 * @category constants
 */
export const maxBatchElements = 64

/**
 * A credit frame: `grant:u32le` more elements for stream `id`.
 *
 * @since 0.2.0
 * @category codec
 */
export const creditFrame = (id: number, grant: number): Buffer => {
  const body = Buffer.allocUnsafe(4)
  body.writeUInt32LE(grant, 0)
  return frame(FrameType.Credit, id, body)
}

/**
 * Decodes a credit frame's body (`bytes` from `start` to `end`).
 *
 * @since 0.2.0
 * @category codec
 */
export const decodeCredit = (bytes: Buffer, start: number, end: number): number | ProtocolError => {
  if (end - start !== 4) {
    return new ProtocolError({ reason: `malformed credit frame: a body of ${end - start} bytes, not 4` })
  }
  const grant = bytes.readUInt32LE(start)
  if (grant < 1) return new ProtocolError({ reason: "malformed credit frame: a grant of 0 elements" })
  return grant
}

/**
 * A stream end frame: stream `id` completed (it failed if an error frame ends it instead).
 *
 * @since 0.2.0
 * @category codec
 */
export const streamEndFrame = (id: number): Buffer => frame(FrameType.StreamEnd, id)

/**
 * A system error frame body: `[reason, detail]`.
 *
 * @since 0.1.0
 * @category codec
 */
export const systemError = (id: number, reason: string, detail: string): Buffer =>
  frame(FrameType.Error, id, systemKind, Buffer.from(pack([reason, detail])))

const systemKind = Buffer.from([ErrorKind.System])
const applicationKind = Buffer.from([ErrorKind.Application])

/**
 * An application error frame: the value encoded with the method's error schema.
 *
 * @since 0.1.0
 * @category codec
 */
export const applicationError = (id: number, encoded: unknown): Buffer =>
  frame(FrameType.Error, id, applicationKind, pack(encoded))

/**
 * Decodes a system error body (after the kind byte).
 *
 * @since 0.1.0
 * @category codec
 */
export const decodeSystemError = (bytes: Buffer): { readonly reason: string; readonly detail: string } => {
  const value = unpack(bytes)
  if (Array.isArray(value) && typeof value[0] === "string" && typeof value[1] === "string") {
    return { reason: value[0], detail: value[1] }
  }
  return { reason: "Protocol", detail: "malformed system error frame" }
}

/**
 * Encoders and decoders of one method, derived once from its schemas
 * (`Component.Codec`).
 *
 * @since 0.1.0
 * @category codec
 */
export type MethodCodec = Component.Codec

/**
 * The codec of a method (cached per method declaration): `Component.codec`.
 *
 * @since 0.1.0
 * @category codec
 */
export const codec: (spec: Component.AnyMethod) => MethodCodec = Component.codec

/**
 * Reads frames from a byte stream. `push` returns a `ProtocolError` when the
 * stream can no longer be trusted (oversized or malformed frame); the
 * connection must then be closed.
 *
 * A frame's length is checked against {@link FrameReader.maxFrameBytes} as
 * soon as its 4 length bytes have arrived, and its type as soon as its fifth
 * byte has, so a peer that announces a frame it may not send is refused
 * before its body is buffered.
 *
 * @since 0.1.0
 * @category codec
 */
export class FrameReader {
  /*
   * Buffering is written by hand, not with `Buffer.concat(pending, chunk)` per chunk: that copies everything
   * pending again on every chunk, quadratic in a frame's size (a 16 MiB frame in 64 KiB chunks copies ~2 GiB).
   * The bytes of an incomplete frame go into one buffer grown by doubling, capped at the frame's announced size:
   * each byte is copied a bounded number of times, and the memory held is at most about twice the bytes that
   * arrived, whatever the chunk sizes (a list of chunks would cost an object per chunk to a peer that trickles
   * one byte at a time). Complete frames are handed on in place, inside the chunk they arrived in; only the
   * part of a chunk that completes a pending frame is copied. No buffer is reused: a receiver may keep
   * `subarray`s of the frames it was given (msgpackr returns binary values that way).
   */
  /** The bytes of the incomplete frame, from its length field on: `pendingBytes` of them. */
  private pending: Buffer | undefined = undefined
  private pendingBytes = 0
  /** The size of the incomplete frame, length field included; 0 while its length field is incomplete. */
  private needed = 0
  private stopped = false
  constructor(
    /**
     * The largest frame accepted (everything after the length field). It may
     * change between two pushes, or in `onFrame` (e.g. raised after a
     * handshake); it applies to every frame whose length has not been read yet.
     */
    public maxFrameBytes: number,
    /** A frame arrived; its body is `bytes` from `start` to `end` (sliced only by those who keep it). */
    readonly onFrame: (type: number, id: number, bytes: Buffer, start: number, end: number) => void
  ) {}

  /**
   * Ignores every later byte (the connection is closing).
   *
   * @since 0.1.0
   */
  stop(): void {
    this.stopped = true
    this.clear()
  }

  /**
   * Bytes held for a frame that has not arrived in full (for tests and
   * status pages).
   *
   * @since 0.1.0
   */
  buffered(): number {
    return this.pending === undefined ? 0 : this.pending.length
  }

  /**
   * @since 0.1.0
   */
  push(chunk: Buffer): ProtocolError | undefined {
    if (this.stopped) return undefined
    let offset = 0
    if (this.pendingBytes > 0) {
      if (this.needed === 0) {
        // The length field itself was split: complete it from the chunk (at most 3 bytes).
        const take = Math.min(4 - this.pendingBytes, chunk.length)
        this.append(chunk, 0, take)
        offset = take
        if (this.pendingBytes < 4) return undefined
        const length = this.pending!.readUInt32LE(0)
        const error = this.checkLength(length)
        if (error !== undefined) return this.fail(error)
        this.needed = 4 + length
      }
      const missing = this.needed - this.pendingBytes
      if (chunk.length - offset < missing) {
        if (this.pendingBytes < 5 && this.pendingBytes + chunk.length - offset >= 5) {
          const error = this.checkType(chunk[offset + 4 - this.pendingBytes]!)
          if (error !== undefined) return this.fail(error)
        }
        this.append(chunk, offset, chunk.length)
        return undefined
      }
      this.append(chunk, offset, offset + missing)
      offset += missing
      const frame = this.pending!
      const end = this.needed
      this.clear()
      const type = frame[4]!
      const error = this.checkType(type)
      if (error !== undefined) return this.fail(error)
      this.onFrame(type, frame.readUInt32LE(5), frame, headerBytes, end)
      if (this.stopped) return undefined
    }
    while (chunk.length - offset >= 4) {
      const length = chunk.readUInt32LE(offset)
      const error = this.checkLength(length)
      if (error !== undefined) return this.fail(error)
      if (chunk.length - offset < 5) break
      const type = chunk[offset + 4]!
      if (type > lastFrameType) return this.fail(this.checkType(type)!)
      if (chunk.length - offset < 4 + length) break
      const id = chunk.readUInt32LE(offset + 5)
      const start = offset + headerBytes
      offset += 4 + length
      this.onFrame(type, id, chunk, start, offset)
      if (this.stopped) return undefined
    }
    if (offset < chunk.length) {
      this.needed = chunk.length - offset >= 4 ? 4 + chunk.readUInt32LE(offset) : 0
      this.append(chunk, offset, chunk.length)
    }
    return undefined
  }

  private checkLength(length: number): ProtocolError | undefined {
    if (length > this.maxFrameBytes) {
      return new ProtocolError({ reason: `frame of ${length} bytes exceeds the limit of ${this.maxFrameBytes}` })
    }
    if (length < 5) return new ProtocolError({ reason: `frame length ${length} is shorter than a frame header` })
    return undefined
  }

  private checkType(type: number): ProtocolError | undefined {
    return type > lastFrameType ? new ProtocolError({ reason: `unknown frame type ${type}` }) : undefined
  }

  private fail(error: ProtocolError): ProtocolError {
    this.clear()
    return error
  }

  private clear(): void {
    this.pending = undefined
    this.pendingBytes = 0
    this.needed = 0
  }

  /** Appends `chunk[from, to)` to the pending bytes, growing their buffer by doubling up to the frame's size. */
  private append(chunk: Buffer, from: number, to: number): void {
    const size = this.pendingBytes + to - from
    let buffer = this.pending
    if (buffer === undefined || size > buffer.length) {
      const doubled = Math.max(size, 2 * (buffer?.length ?? 0), 256)
      const next = Buffer.allocUnsafe(this.needed > 0 ? Math.min(this.needed, doubled) : doubled)
      if (buffer !== undefined) buffer.copy(next, 0, 0, this.pendingBytes)
      this.pending = buffer = next
    }
    chunk.copy(buffer, this.pendingBytes, from, to)
    this.pendingBytes = size
  }
}

/**
 * The most frames one `write` carries. Under load, writing a turn's frames in
 * pieces lets the peer start on the first ones while this process builds the
 * rest, so the two sides work in parallel instead of taking turns; a piece
 * this large still keeps system calls per frame low.
 *
 * @since 0.1.0
 * @category constants
 */
export const maxBatchFrames = 32

/** The size of a writer's buffer; frames are encoded into it back to back. */
const slabBytes = 64 * 1024

/**
 * Batches frames per event-loop turn: frames queued while fibers run are
 * written with one `write` call once the current batch of work is done, or
 * as soon as {@link maxBatchFrames} are queued.
 *
 * Frames are encoded straight into one buffer, so a batch costs no
 * allocation per frame and no copy to join them. Bytes handed to the socket
 * are not written again while it may still hold them: the buffer is reused
 * from its start only once the socket reports nothing queued
 * (`writableLength` 0, the system call took every byte); otherwise a full
 * buffer is replaced, not reused.
 *
 * @since 0.1.0
 * @category codec
 */
export class FrameWriter implements Sink {
  private slab = Buffer.allocUnsafe(slabBytes)
  /** Where the frames not yet written to the socket begin. */
  private start = 0
  /** Where the next frame goes. */
  end = 0
  private frames = 0
  private scheduled = false
  private closed = false
  constructor(readonly socket: { write(data: Uint8Array): boolean; readonly writableLength?: number }) {}

  /** @internal */
  reserve(size: number): Buffer {
    if (this.end + size > this.slab.length) {
      const queued = this.end - this.start
      const next = Buffer.allocUnsafe(Math.max(slabBytes, queued + size))
      this.slab.copy(next, 0, this.start, this.end)
      this.slab = next
      this.start = 0
      this.end = queued
    }
    return this.slab
  }

  /**
   * Queues a whole frame.
   *
   * @since 0.1.0
   */
  write(frame: Uint8Array): void {
    if (this.closed) return
    this.reserve(frame.length).set(frame, this.end)
    this.end += frame.length
    this.queued()
  }

  /**
   * Queues the frame {@link frameWithValue} would build, encoding it in
   * place, and returns its size. Throws, queueing nothing, if the value
   * cannot be packed.
   *
   * @since 0.1.0
   */
  writeValue(type: FrameType, id: number, prefix: Uint8Array | undefined, value: unknown): number {
    if (this.closed) return 0
    const size = encodeValueFrame(this, type, id, prefix, value)
    this.end += size
    this.queued()
    return size
  }

  private queued(): void {
    if (++this.frames >= maxBatchFrames) return this.flush()
    if (!this.scheduled) {
      this.scheduled = true
      process.nextTick(this.flush)
    }
  }

  /**
   * Drops queued frames and ignores later writes.
   *
   * @since 0.1.0
   */
  close(): void {
    this.closed = true
    this.start = this.end
  }

  /**
   * @since 0.1.0
   */
  readonly flush = (): void => {
    this.scheduled = false
    if (this.closed || this.end === this.start) return
    const data = this.slab.subarray(this.start, this.end)
    this.frames = 0
    if (this.slab.length > slabBytes) {
      // Grown for a large frame: not kept for the small ones that follow.
      this.slab = Buffer.allocUnsafe(slabBytes)
      this.end = 0
    }
    this.start = this.end
    this.socket.write(data)
    // The kernel took every byte: the buffer is free again, and its start is likely still in cache.
    if (this.socket.writableLength === 0 && this.start === this.end) this.start = this.end = 0
  }
}
