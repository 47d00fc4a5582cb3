/**
 * The search index's terms (main/core/audit/search.ts) against their definition written out term by
 * term: each whole term, its pieces between `/`, `:` and `@`, its parts between any joining characters.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ftsQuery, indexTerms } from '../../../main/core/audit/search.ts';

/** The definition: whole terms cut one by one, each split into pieces and parts. */
function definition(text: string): Set<string> {
  let t = text;
  if (!/^\p{ASCII}*$/u.test(t)) t = t.replace(/\P{ASCII}+/gu, (run) => run.normalize('NFKD').replace(/\p{M}+/gu, '').replace(/[^\p{L}\p{N}\p{ASCII}]+/gu, ' '));
  const out = new Set<string>();
  for (const term of t.toLowerCase().match(/[\p{L}\p{N}]+(?:[-_.:/@+]+[\p{L}\p{N}]+)*/gu) ?? []) {
    out.add(term);
    for (const piece of term.split(/[:/@]+/)) if (piece) out.add(piece);
    for (const part of term.split(/[-_.:/@+]+/)) if (part) out.add(part);
  }
  return out;
}

const sorted = (s: Set<string>): string[] => [...s].sort();

/** Texts made of the characters that decide a cut: letters, digits, joiners, separators, accents, other scripts. */
const texts = fc.oneof(
  fc.string({ unit: fc.constantFrom(...'aZ09-_.:/@+ \t→é\u0301ÉßİKΣσ字١', 'jti-', 'v-jwt-clinic-', 'database/creds/', 'user3@clinic.example', '::', '--'), maxLength: 80 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ maxLength: 60 }),
);

describe('search terms', () => {
  it('are the terms, pieces and parts the definition cuts, each once, for any text', () => {
    fc.assert(
      fc.property(texts, (text) => {
        expect(sorted(indexTerms(text))).toEqual(sorted(definition(text)));
      }),
      { numRuns: 3000 },
    );
  });

  it('cut a record\'s keys and names into what a search finds them by', () => {
    const terms = indexTerms('update_appointment on postgres://lab/clinic → success user3@clinic.example jti-0000A1B2 Déjà');
    for (const t of ['update_appointment', 'update', 'appointment', 'postgres://lab/clinic', 'lab', 'clinic', 'user3@clinic.example', 'user3', 'clinic.example', 'jti-0000a1b2', 'jti', '0000a1b2', 'deja', 'success']) {
      expect(terms.has(t), t).toBe(true);
    }
    expect(terms.has('→')).toBe(false);
    // every term a query is cut into for one of them is held
    for (const q of ['jti-0000a1b2', 'clinic.example', 'DÉJÀ']) {
      for (const [, t] of ftsQuery(q)!.matchAll(/"([^"]+)"/g)) expect(terms.has(t!)).toBe(true);
    }
  });
});
