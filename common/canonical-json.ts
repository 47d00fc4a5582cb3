import { setOwnMember } from './own-member.ts';

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
  // Fast path: copy with keys inserted in sorted order and let the engine's JSON.stringify write it.
  // Engines list integer-like keys ("10", "9") first in numeric order, which is not JCS order, so a
  // record with such a key takes the reference path below.
  const sorted = sortedCopy(value);
  return sorted === INTEGER_KEY ? canonicalJsonReference(value) : JSON.stringify(sorted);
}

/**
 * How deeply a value given from outside (a tool call's arguments) may nest. Real arguments nest a few
 * levels; the record of a call is validated, redacted and serialised by code that recurses, and a value
 * thousands of levels deep would exhaust its stack.
 */
export const MAX_NESTING = 64;

/** Whether `value` nests arrays and objects more than `max` levels deep, found without recursion. */
export function nestsDeeperThan(value: unknown, max: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (depth >= max) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) if (child !== null && typeof child === 'object') stack.push([child, depth + 1]);
  }
  return false;
}

const INTEGER_KEY = Symbol('integer-like key');
const INTEGER_LIKE = /^(?:0|[1-9][0-9]*)$/;

function sortedCopy(value: unknown): unknown {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError('Canonical JSON has no representation for NaN or Infinity.');
    if (typeof value === 'bigint' || typeof value === 'function' || typeof value === 'symbol') {
      throw new TypeError(`Canonical JSON has no representation for ${typeof value}.`);
    }
    return value;
  }
  if (Array.isArray(value)) {
    const out: unknown[] = new Array(value.length);
    for (let i = 0; i < value.length; i++) {
      const c = sortedCopy(value[i]);
      if (c === INTEGER_KEY) return INTEGER_KEY;
      out[i] = c === undefined ? null : c;
    }
    return out;
  }
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return sortedCopy((value as { toJSON(): unknown }).toJSON());
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj).sort();
  // A plain object, not Object.create(null): V8 keeps those in dictionary mode, which JSON.stringify
  // writes more slowly.
  const out: Record<string, unknown> = {};
  for (const k of keys) {
    if (INTEGER_LIKE.test(k)) return INTEGER_KEY;
    const v = obj[k];
    if (v === undefined) continue;
    const c = sortedCopy(v);
    if (c === INTEGER_KEY) return INTEGER_KEY;
    setOwnMember(out, k, c);
  }
  return out;
}

/** The definition, written out: used for records with integer-like keys, and to test the fast path against. */
export function canonicalJsonReference(value: unknown): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError('Canonical JSON has no representation for NaN or Infinity.');
      return JSON.stringify(value);
    case 'object': {
      if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return canonicalJsonReference((value as { toJSON(): unknown }).toJSON());
      if (Array.isArray(value)) {
        let out = '[';
        for (let i = 0; i < value.length; i++) {
          const v: unknown = value[i];
          out += (i === 0 ? '' : ',') + canonicalJsonReference(v === undefined ? null : v);
        }
        return out + ']';
      }
      const obj = value as Record<string, unknown>;
      // Array.prototype.sort without a comparator orders strings by UTF-16 code units: RFC 8785 §3.2.3.
      const keys = Object.keys(obj).sort();
      let out = '{';
      let first = true;
      for (const k of keys) {
        const v = obj[k];
        if (v === undefined) continue;
        out += (first ? '' : ',') + JSON.stringify(k) + ':' + canonicalJsonReference(v);
        first = false;
      }
      return out + '}';
    }
    default:
      throw new TypeError(`Canonical JSON has no representation for ${typeof value}.`);
  }
}
