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
const ASCII = /^\p{ASCII}*$/u;
const NON_ASCII = /\P{ASCII}+/gu;
const MARKS = /\p{M}+/gu;
const NOT_WORD = /[^\p{L}\p{N}\p{ASCII}]+/gu;
const PIECE_SEPARATORS = /[:/@]+/;
const PART_SEPARATORS = /[-_.:/@+]+/;

/**
 * The whole terms of a text, in order: runs of letters and digits with their joining characters, in
 * lower case without diacritics (`Déjà` is `deja`). Only the non-ASCII stretches are normalised, and
 * a text left with none (an arrow in a summary becomes a space) is cut with an ASCII pattern: the
 * Unicode one costs about ten times as much, and most of what a record holds is ASCII.
 */
function wholeTerms(text: string): string[] {
  let t = text;
  if (!ASCII.test(t)) {
    t = t.replace(NON_ASCII, (run) => run.normalize('NFKD').replace(MARKS, '').replace(NOT_WORD, ' '));
    if (!ASCII.test(t)) return t.toLowerCase().match(TERM) ?? [];
  }
  return t.toLowerCase().match(ASCII_TERM) ?? [];
}

/** Each whole term, its pieces between `/`, `:` and `@`, and its parts between any joining characters. */
function indexTerms(text: string): Set<string> {
  const out = new Set<string>();
  for (const term of wholeTerms(text)) {
    out.add(term);
    if (!PART_SEPARATORS.test(term)) continue;
    for (const piece of term.split(PIECE_SEPARATORS)) if (piece) out.add(piece);
    for (const part of term.split(PART_SEPARATORS)) if (part) out.add(part);
  }
  return out;
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
  return `§${column}§${Buffer.from(String(value)).toString('hex')}`;
}

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
