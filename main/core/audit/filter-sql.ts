import type { DatabaseSync, SQLInputValue } from 'node:sqlite';
import type { AuditFilter } from '../../../common/contract.ts';
import { AppError } from '../../../common/errors.ts';
import { facetTerm, ftsQuery } from './search.ts';
import type { FacetColumn } from './search.ts';
import type { z } from 'zod';

/** A filter as SQL: its clauses and parameters, whether it searches text, and the seq bounds of its time window. */
export interface Where {
  clauses: string[];
  params: SQLInputValue[];
  fts: boolean;
  seq: { from?: number; to?: number };
}

  /**
   * A filter as SQL. With a search, the filter columns are terms of the full-text query too (see
   * search.ts), so a search within an outcome, a tool or a user is one FTS5 query and never joins
   * facets match by match (a common word within an outcome took ~0.5 s at a million records that way).
   */
export function filterWhere(db: DatabaseSync, f: AuditFilter, before: number | undefined): Where | null {
    const clauses: string[] = [];
    const params: SQLInputValue[] = [];
    const seq: Where['seq'] = {};
    const search = ftsQuery(f.search);
    const match = search === undefined ? [] : [search];
    const seqCol = search ? 'x.rowid' : 'c.seq';
    if (before !== undefined) {
      clauses.push(`${seqCol} < ?`);
      params.push(before);
    }
    let none = false;
    const inList = (col: FacetColumn, list: readonly (string | number)[] | undefined) => {
      if (list === undefined) return;
      if (search !== undefined) {
        if (list.length === 0) none = true;
        else match.push(`(${list.map((v) => `"${facetTerm(col, v)}"`).join(' OR ')})`);
        return;
      }
      clauses.push(list.length === 0 ? '0' : `c.${col} IN (${list.map(() => '?').join(',')})`);
      params.push(...list);
    };
    inList('outcome', f.outcome);
    inList('kind', f.kind);
    inList('tier', f.tier);
    if (f.tool !== undefined) inList('tool', [f.tool]);
    if (f.user !== undefined) {
      // The user as a person names them (sub, name or email), resolved to subs through the small users table.
      const subs = (
        db.prepare('SELECT sub FROM users WHERE sub = ?1 OR name = ?1 COLLATE NOCASE OR email = ?1 COLLATE NOCASE').all(f.user) as { sub: string }[]
      ).map((u) => u.sub);
      inList('user_sub', subs);
    }
    if (none) return null;
    // Time is monotonic in seq (append never moves the clock backwards), so a time window is a seq range.
    if (f.from !== undefined) {
      const row = db.prepare('SELECT seq FROM facets WHERE at_ms >= ? ORDER BY at_ms LIMIT 1').get(toMs(f.from)) as { seq: number } | undefined;
      if (!row) return null;
      clauses.push(`${seqCol} >= ?`);
      params.push(row.seq);
      seq.from = row.seq;
    }
    if (f.to !== undefined) {
      const row = db.prepare('SELECT seq FROM facets WHERE at_ms <= ? ORDER BY at_ms DESC LIMIT 1').get(toMs(f.to)) as { seq: number } | undefined;
      if (!row) return null;
      clauses.push(`${seqCol} <= ?`);
      params.push(row.seq);
      seq.to = row.seq;
    }
    if (search !== undefined) {
      clauses.unshift('records_fts MATCH ?');
      params.unshift(match.join(' AND '));
    }
    return { clauses, params, fts: search !== undefined, seq };
  }


function toMs(v: string): number {
  const ms = Date.parse(v);
  if (!Number.isFinite(ms)) throw new AppError('INPUT_INVALID', 'A time filter is not a valid date.');
  return ms;
}

export function parseOr<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const r = schema.safeParse(value);
  if (!r.success) {
    throw new AppError('INPUT_INVALID', `The audit query is malformed at: ${r.error.issues.map((i) => i.path.join('.') || '(query)').join(', ')}.`);
  }
  return r.data;
}

