import { createHash } from 'node:crypto';

/**
 * Canonical JSON of tool arguments: object keys sorted by UTF-16 code unit, no whitespace, numbers and
 * strings as `JSON.stringify` writes them (RFC 8785 for the values MCP arguments carry). These are the
 * bytes an approval is shown and the RAR's `argument_digest` covers, so the upstream can check that the
 * token describes exactly the call it receives.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError('A non-finite number has no JSON form.');
    const text = JSON.stringify(value);
    if (text === undefined) throw new TypeError('The value has no JSON form.');
    return text;
  }
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v)).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

/** `sha256:<hex>` of the canonical JSON, the RAR `argument_digest`. */
export function sha256Digest(bytes: string): string {
  return `sha256:${createHash('sha256').update(bytes, 'utf8').digest('hex')}`;
}
