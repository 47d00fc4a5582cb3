/**
 * Making the exact call visible. An approval shows the arguments a model chose, and a model can be
 * misled into choosing text that reads differently from what runs: control characters, bidirectional
 * overrides (the "Trojan Source" trick) and zero-width characters. These are shown as named escapes,
 * never interpreted; long values are cut with a count of what was cut, and can be expanded.
 */

export type Segment = { kind: 'text'; text: string } | { kind: 'escape'; text: string; title: string };

const NAMES: Record<number, string> = {
  0x09: 'TAB',
  0x0a: 'LF',
  0x0d: 'CR',
  0x1b: 'ESC',
  0x7f: 'DEL',
  0x200b: 'ZWSP',
  0x200c: 'ZWNJ',
  0x200d: 'ZWJ',
  0x200e: 'LRM',
  0x200f: 'RLM',
  0x061c: 'ALM',
  0x202a: 'LRE',
  0x202b: 'RLE',
  0x202c: 'PDF',
  0x202d: 'LRO',
  0x202e: 'RLO',
  0x2066: 'LRI',
  0x2067: 'RLI',
  0x2068: 'FSI',
  0x2069: 'PDI',
  0x2028: 'LSEP',
  0x2029: 'PSEP',
  0xfeff: 'BOM',
};

/** Characters that change how text reads or is laid out without being visible themselves. */
export function isInvisible(code: number, keepNewlines = false): boolean {
  if (keepNewlines && (code === 0x0a || code === 0x09)) return false;
  return (
    code < 0x20 ||
    (code >= 0x7f && code <= 0x9f) ||
    code === 0x00ad ||
    code === 0x061c ||
    (code >= 0x200b && code <= 0x200f) ||
    (code >= 0x2028 && code <= 0x202e) ||
    (code >= 0x2060 && code <= 0x2069) ||
    code === 0xfeff ||
    (code >= 0xfff9 && code <= 0xfffb) ||
    (code >= 0xe0000 && code <= 0xe007f)
  );
}

function escapeOf(code: number): { text: string; title: string } {
  const hex = code.toString(16).toUpperCase().padStart(4, '0');
  const name = NAMES[code];
  return { text: name ? `⟦${name}⟧` : `⟦U+${hex}⟧`, title: `U+${hex}${name ? ` ${name}` : ''}` };
}

/** Splits text into plain runs and visible escapes for every invisible character. */
export function visibleSegments(text: string, options: { keepNewlines?: boolean } = {}): Segment[] {
  const out: Segment[] = [];
  let run = '';
  for (const ch of text) {
    const code = ch.codePointAt(0)!;
    if (isInvisible(code, options.keepNewlines)) {
      if (run) out.push({ kind: 'text', text: run });
      run = '';
      out.push({ kind: 'escape', ...escapeOf(code) });
    } else {
      run += ch;
    }
  }
  if (run) out.push({ kind: 'text', text: run });
  return out;
}

/** Whether the text holds anything `visibleSegments` would escape. */
export function hasInvisible(text: string, options: { keepNewlines?: boolean } = {}): boolean {
  for (const ch of text) if (isInvisible(ch.codePointAt(0)!, options.keepNewlines)) return true;
  return false;
}

/** Canonical JSON (keys sorted at every depth, as RFC 8785 orders them), indented for reading. */
export function canonicalJson(value: unknown, indent = 2): string {
  return JSON.stringify(sortKeys(value), null, indent) ?? 'undefined';
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) out[key] = sortKeys((value as Record<string, unknown>)[key]);
    return out;
  }
  return value;
}

/** Cuts text after `limit` characters (code points), reporting how many were cut. */
export function truncate(text: string, limit: number): { text: string; cut: number } {
  const chars = Array.from(text);
  if (chars.length <= limit) return { text, cut: 0 };
  return { text: chars.slice(0, limit).join(''), cut: chars.length - limit };
}

/** Canonical JSON split into text and the places where a long value was cut. */
export type JsonPart = { kind: 'text'; text: string } | { kind: 'cut'; count: number };

/**
 * Canonical JSON where every string value longer than `limit` is cut. Where a value was cut is
 * reported as its own part rather than as text, so data cannot imitate a cut marker: the marker in
 * the intermediate text carries a random nonce the data cannot know.
 */
export function canonicalJsonParts(value: unknown, limit: number): { parts: JsonPart[]; cut: number } {
  const nonce = crypto.randomUUID();
  let cut = 0;
  const shorten = (v: unknown): unknown => {
    if (typeof v === 'string') {
      const t = truncate(v, limit);
      cut += t.cut;
      return t.cut ? `${t.text}\u0001${nonce}:${t.cut}\u0001` : v;
    }
    if (Array.isArray(v)) return v.map(shorten);
    if (v !== null && typeof v === 'object') {
      return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, shorten(x)]));
    }
    return v;
  };
  const text = canonicalJson(shorten(value));
  // JSON.stringify writes U+0001 as the six characters \u0001; data's own U+0001 never carries the nonce.
  const marker = new RegExp(`\\\\u0001${nonce}:(\\d+)\\\\u0001`, 'g');
  const parts: JsonPart[] = [];
  let last = 0;
  for (const m of text.matchAll(marker)) {
    if (m.index > last) parts.push({ kind: 'text', text: text.slice(last, m.index) });
    parts.push({ kind: 'cut', count: Number(m[1]) });
    last = m.index + m[0].length;
  }
  if (last < text.length) parts.push({ kind: 'text', text: text.slice(last) });
  return { parts, cut };
}
