import { createHash } from 'node:crypto';

/**
 * Canonical JSON of tool arguments (object keys sorted by code unit, no whitespace; the RFC 8785
 * ordering for the JSON values MCP arguments hold). The upstream computes it independently of the
 * connector, so a digest mismatch between the two shows up in tests.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError('non-finite number');
    const text = JSON.stringify(value);
    if (text === undefined) throw new TypeError('value has no JSON form');
    return text;
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

export function argumentDigest(args: unknown): string {
  return `sha256:${createHash('sha256').update(canonicalJson(args ?? {})).digest('hex')}`;
}
