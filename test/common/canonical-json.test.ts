import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson, canonicalJsonReference, nestsDeeperThan } from '../../common/canonical-json.ts';

describe('canonical JSON (RFC 8785 style)', () => {
  it('orders members by UTF-16 code units, as the RFC 8785 §3.2.3 example does', () => {
    const input = { '\u20ac': 'Euro Sign', '\r': 'Carriage Return', '\ufb33': 'Hebrew Letter Dalet With Dagesh', '1': 'One', '\ud83d\ude00': 'Emoji: Grinning Face', '\u0080': 'Control', '\u00f6': 'Latin Small Letter O With Diaeresis' };
    const keys = Object.keys(JSON.parse(canonicalJson(input)) as object);
    // JSON.parse lists integer-like keys first, so compare the serialised order instead.
    expect(keys).toHaveLength(7);
    expect(canonicalJson(input)).toBe(
      '{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign","\ud83d\ude00":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
    );
  });

  it('writes numbers as ECMAScript does (RFC 8785 §3.2.2.3)', () => {
    expect(canonicalJson([1e30, 4.5, 0.002, 0.000001, 1e-7, -0, 333333333.3333333])).toBe('[1e+30,4.5,0.002,0.000001,1e-7,0,333333333.3333333]');
  });

  it('is independent of the order keys were inserted in, and drops undefined members', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { z: 1, y: 2 }], c: undefined } })).toBe('{"a":{"d":[1,{"y":2,"z":1}]},"b":1}');
  });

  it('keeps a member named __proto__ as a member', () => {
    const v = JSON.parse('{"__proto__":{"x":1},"a":2}') as unknown;
    expect(canonicalJson(v)).toBe('{"__proto__":{"x":1},"a":2}');
  });

  it('refuses values JSON cannot represent', () => {
    expect(() => canonicalJson({ a: Number.NaN })).toThrow(TypeError);
    expect(() => canonicalJson({ a: 1n })).toThrow(TypeError);
  });

  it('takes the fast path to the same bytes as the written-out definition for any JSON value', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        expect(canonicalJson(v)).toBe(canonicalJsonReference(v));
      }),
      { numRuns: 2000 },
    );
  });
});

describe('nestsDeeperThan', () => {
  /** The depth by its definition, recursively: a scalar 0, a container 1 + its deepest child. */
  const depth = (v: unknown): number =>
    v === null || typeof v !== 'object' ? 0 : 1 + Math.max(0, ...(Array.isArray(v) ? v : Object.values(v as object)).map(depth));

  it('agrees with the recursive definition on any JSON value', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 8 }), fc.integer({ min: 0, max: 9 }), (v, max) => {
        expect(nestsDeeperThan(v, max)).toBe(depth(v) > max);
      }),
      { numRuns: 500 },
    );
  });

  it('answers for a value far deeper than the stack allows a recursive walk', () => {
    const deep = JSON.parse(`${'['.repeat(200_000)}1${']'.repeat(200_000)}`) as unknown;
    expect(() => canonicalJson(deep)).toThrow(RangeError);
    expect(nestsDeeperThan(deep, 64)).toBe(true);
    expect(nestsDeeperThan({ a: [{ b: [1] }] }, 4)).toBe(false);
    expect(nestsDeeperThan({ a: [{ b: [1] }] }, 3)).toBe(true);
  });
});
