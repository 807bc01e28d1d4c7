/**
 * Characters that can rewrite what a person sees when text is printed: C0 and C1 controls (line
 * breaks, escapes), Unicode line and paragraph separators, and the bidi controls that reorder a line
 * (the "Trojan Source" family), plus zero-width characters that hide text.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]+/g;

/**
 * Text from a server or a browser made safe to show on one line: unsafe characters become a single
 * space, runs of spaces collapse, and the result is cut at `max` characters with an ellipsis.
 */
export function plainText(raw: string, max = 200): string {
  const text = raw.replace(UNSAFE, ' ').replace(/ {2,}/g, ' ').trim();
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
