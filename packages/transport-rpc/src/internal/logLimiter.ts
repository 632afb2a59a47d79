import * as Duration from "effect/Duration"

/**
 * Rate-limited warnings: at most `lines` per `interval`, then one summary
 * line counting the rest. Bad connections are cheap for a peer to make (a
 * connect and a byte), and a line per connection would let any peer fill the
 * deployment's log files; the summary keeps the count honest.
 *
 * @internal
 */
export class LogLimiter {
  private windowStart = -Infinity
  private written = 0
  private suppressed = 0
  private timer: ReturnType<typeof setTimeout> | undefined = undefined

  constructor(
    readonly lines: number,
    readonly intervalMillis: number,
    /** Writes one line; `peer` is absent for summaries. */
    readonly write: (message: string, peer: string | undefined) => void,
    /** What the suppressed lines were about, for the summary: "bad connections". */
    readonly about: string
  ) {}

  log(message: string, peer: string | undefined): void {
    const now = Date.now()
    if (now - this.windowStart >= this.intervalMillis) {
      this.flush()
      this.windowStart = now
      this.written = 0
    }
    if (this.written < this.lines) {
      this.written++
      this.write(message, peer)
      return
    }
    this.suppressed++
    // The summary is written when the window ends, even if nothing else is logged after it.
    if (this.timer === undefined) {
      this.timer = setTimeout(this.flush, Math.max(0, this.windowStart + this.intervalMillis - now))
      this.timer.unref()
    }
  }

  /** Writes the summary of the lines suppressed so far, if any. */
  readonly flush = (): void => {
    if (this.timer !== undefined) {
      clearTimeout(this.timer)
      this.timer = undefined
    }
    if (this.suppressed === 0) return
    const count = this.suppressed
    this.suppressed = 0
    this.write(
      `suppressed ${count} more ${count === 1 ? "warning" : "warnings"} about ${this.about} ` +
        `(at most ${this.lines} per ${Duration.format(Duration.millis(this.intervalMillis))} are written)`,
      undefined
    )
  }
}
