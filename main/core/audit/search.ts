import type { AuditRecord } from '../../../common/audit-record.ts';

/**
 * What full-text search indexes and how a query reads it. The words are cut here, not by the FTS5
 * tokenizer: the index's `ascii` tokenizer, with the joining characters as token characters, only
 * splits on the spaces this module writes, so a record and a query are always cut the same way.
 *
 * A key or name written with joining characters (`jti-0000a1b2`, a UUID, `v-jwt-clinic-199`,
 * `update_appointment`, `user3@clinic.example`, `database/creds/clinic-read/…`) is one term, so
 * searching for it reads one short document list; FTS5 would otherwise cut it into parts and match
 * them as a phrase, reading the list of a part like `jti` that every record holds. Each part is a term
 * too (`appointment`, `clinic`), and so is each piece between `/`, `:` and `@` (`clinic-read`), so a
 * word still finds the keys and names it is part of.
 */

/** Characters that join the parts of one key or name: the index's token characters besides letters and digits. */
const JOINERS = '-_.:/@+';

/** The FTS5 table's tokenizer: splits on everything else, which the text written never holds between terms. */
export const SEARCH_TOKENIZER = `ascii tokenchars '${JOINERS}'`;

const TERM = /[\p{L}\p{N}]+(?:[-_.:/@+]+[\p{L}\p{N}]+)*/gu;
const ASCII_TERM = /[a-z0-9]+(?:[-_.:/@+]+[a-z0-9]+)*/g;
/** The parts of every term at once: each term's runs of letters and digits, and nothing outside the terms. */
const PART = /[\p{L}\p{N}]+/gu;
const ASCII_PART = /[a-z0-9]+/g;
const ASCII = /^\p{ASCII}*$/u;
const NON_ASCII = /\P{ASCII}+/gu;
const MARKS = /\p{M}+/gu;
const NOT_WORD = /[^\p{L}\p{N}\p{ASCII}]+/gu;
const PIECE_SEPARATORS = /[:/@]+/;

/**
 * A text in lower case without diacritics (`Déjà` is `deja`), and whether it is left with only ASCII.
 * Only the non-ASCII stretches are normalised, and a text left with none (an arrow in a summary
 * becomes a space) is cut with the ASCII patterns: the Unicode ones cost about ten times as much, and
 * most of what a record holds is ASCII.
 */
function normalised(text: string): { t: string; ascii: boolean } {
  if (ASCII.test(text)) return { t: text.toLowerCase(), ascii: true };
  const t = text.replace(NON_ASCII, (run) => run.normalize('NFKD').replace(MARKS, '').replace(NOT_WORD, ' ')).toLowerCase();
  return { t, ascii: ASCII.test(t) };
}

/** The whole terms of a text, in order: runs of letters and digits with their joining characters. */
function wholeTerms(text: string): string[] {
  const { t, ascii } = normalised(text);
  return t.match(ascii ? ASCII_TERM : TERM) ?? [];
}

/**
 * Each whole term, its pieces between `/`, `:` and `@`, and its parts between any joining characters,
 * each once. The parts are cut from the whole text in one pass (every run of letters and digits lies
 * in exactly one term) and everything goes into one Set, rather than two splits and a Set insert per
 * term: this runs on the index's path a few records at a time, never hot. Exported for its test.
 */
export function indexTerms(text: string): Set<string> {
  const { t, ascii } = normalised(text);
  const terms: string[] = t.match(ascii ? ASCII_TERM : TERM) ?? [];
  const all = terms.concat(t.match(ascii ? ASCII_PART : PART) ?? []);
  for (const term of terms) {
    if (!PIECE_SEPARATORS.test(term)) continue;
    for (const piece of term.split(PIECE_SEPARATORS)) if (piece) all.push(piece);
  }
  return new Set(all);
}

/** The text the index holds for a record: its terms, each once. HMAC'd values are left out. */
export function searchText(r: Omit<AuditRecord, 'hash'>): string {
  const parts: unknown[] = [
    r.kind,
    r.outcome,
    r.tool,
    r.target,
    r.summary,
    r.user?.sub,
    r.user?.name,
    r.user?.email,
    r.client?.name,
    r.error?.code,
    r.error?.message,
    ...Object.values(r.keys ?? {}),
    ...r.hops.map((h) => h.code),
  ];
  const collect = (v: unknown): void => {
    if (typeof v === 'string') {
      if (!v.startsWith('hmac-sha256:')) parts.push(v);
    } else if (typeof v === 'number') parts.push(String(v));
    else if (Array.isArray(v)) v.forEach(collect);
    else if (v && typeof v === 'object') Object.values(v).forEach(collect);
  };
  collect(r.args);
  const text = parts.filter((p) => p !== undefined && p !== null && p !== '').join(' ').slice(0, 20_000);
  const facets = [
    facetTerm('kind', r.kind),
    facetTerm('outcome', r.outcome),
    ...(r.tier === undefined ? [] : [facetTerm('tier', r.tier)]),
    ...(r.tool === undefined ? [] : [facetTerm('tool', r.tool)]),
    ...(r.user ? [facetTerm('user_sub', r.user.sub)] : []),
  ];
  return [...indexTerms(text), ...facets].join(' ');
}

/** The filter columns a search can be narrowed by, as facets (store.ts) holds them. */
export type FacetColumn = 'kind' | 'outcome' | 'tier' | 'tool' | 'user_sub';

/**
 * The term for one filter value (`§outcome§<hex>`): `§` is a token character of the index and a
 * separator of the word cutter, so no record's words and no query can spell one; the value is hex so
 * any tool name or subject is one exact, case-sensitive term.
 */
export function facetTerm(column: FacetColumn, value: string | number): string {
  const key = `${column}\u0000${value}`;
  let term = facetTerms.get(key);
  if (term === undefined) {
    // A store holds few kinds, outcomes, tiers, tools and users: their terms are kept, up to a bound.
    if (facetTerms.size >= 4096) facetTerms.clear();
    term = `§${column}§${Buffer.from(String(value)).toString('hex')}`;
    facetTerms.set(key, term);
  }
  return term;
}

const facetTerms = new Map<string, string>();

/**
 * FTS5 query from free text (the filter columns are added by the store as facet terms): each whitespace-separated word is cut as the index is, and every term
 * is required; a word ending in `*` makes its last term a prefix (`upd*`, `jti-4*`). A word is found
 * whole (`jti-42` finds `jti-42`, not `jti-420`): FTS5 answers a prefix by merging every matching
 * term's document list. Terms go in quotes and hold only letters, digits and joining characters, so
 * no FTS syntax can be injected.
 */
export function ftsQuery(text: string | undefined): string | undefined {
  const terms: string[] = [];
  for (const word of (text ?? '').split(/\s+/)) {
    const cut = wholeTerms(word);
    if (cut.length === 0) continue;
    const prefix = word.endsWith('*');
    cut.forEach((t, i) => terms.push(`"${t}"${prefix && i === cut.length - 1 ? '*' : ''}`));
  }
  return terms.length > 0 ? [...new Set(terms)].slice(0, 8).join(' ') : undefined;
}
