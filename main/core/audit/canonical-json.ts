/**
 * Canonical JSON in the manner of RFC 8785 (JCS): object members sorted by their UTF-16 code units
 * (§3.2.3), no insignificant whitespace, strings and numbers serialised as ECMAScript's JSON.stringify
 * does (§3.2.2, which JCS adopts). The hash chain is computed over these bytes, so the same record
 * always hashes the same way whatever order its keys were built in.
 *
 * Hand-written rather than a dependency: it is twenty lines, and the chain's correctness rests on it,
 * so it is kept where its tests are.
 */
export function canonicalJson(value: unknown): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError('Canonical JSON has no representation for NaN or Infinity.');
      return JSON.stringify(value);
    case 'object': {
      if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v === undefined ? null : v)).join(',')}]`;
      const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
      // Default sort compares UTF-16 code units, which is what RFC 8785 §3.2.3 asks for.
      entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
    }
    default:
      throw new TypeError(`Canonical JSON has no representation for ${typeof value}.`);
  }
}
