/**
 * HTML built with a tagged template that escapes every interpolated value,
 * so that names, config text and metric labels cannot inject markup.
 *
 * @since 0.1.0
 */

/**
 * A piece of HTML that is already safe: interpolating it into {@link html}
 * inserts it as is.
 *
 * @since 0.1.0
 * @category models
 */
export class Html {
  constructor(readonly value: string) {}
  /**
   * @since 0.1.0
   */
  toString(): string {
    return this.value
  }
}

/**
 * Escapes the five characters that matter in HTML text and attribute values.
 *
 * @since 0.1.0
 * @category combinators
 */
export const escape = (text: string): string =>
  text.replace(
    /[&<>"']/g,
    (c) => c === "&" ? "&amp;" : c === "<" ? "&lt;" : c === ">" ? "&gt;" : c === "\"" ? "&quot;" : "&#39;"
  )

/**
 * The HTML a value stands for: {@link Html} as is, arrays joined, `null`,
 * `undefined` and `false` as nothing, everything else escaped text.
 *
 * @since 0.1.0
 * @category combinators
 */
export const render = (value: unknown): string => {
  if (value instanceof Html) return value.value
  if (Array.isArray(value)) return value.map(render).join("")
  if (value === null || value === undefined || value === false) return ""
  return escape(String(value))
}

/**
 * The tag: `` html`<td>${name}</td>` `` escapes `name`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const html = (strings: TemplateStringsArray, ...values: ReadonlyArray<unknown>): Html =>
  new Html(strings.reduce((out, s, i) => out + s + (i < values.length ? render(values[i]) : ""), ""))

/**
 * Trusted markup inserted as is.
 *
 * @since 0.1.0
 * @category constructors
 */
export const raw = (value: string): Html => new Html(value)

/**
 * A value as JSON safe to put inside a `<script>` element (no `</script>`
 * or `<!--` can close or confuse it).
 *
 * @since 0.1.0
 * @category constructors
 */
export const json = (value: unknown): Html =>
  new Html(
    JSON.stringify(value).replace(/</g, "\\u003c").replace(/>/g, "\\u003e").replace(/&/g, "\\u0026")
      .replace(/\u2028/g, "\\u2028").replace(/\u2029/g, "\\u2029")
  )
