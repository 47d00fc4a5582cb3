import { DatabaseSync } from 'node:sqlite';
import type { SQLInputValue } from 'node:sqlite';
import { statSync } from 'node:fs';
import { OUTCOMES } from '../../../common/audit-record.ts';
import { AuditFilterSchema, AuditPageRequestSchema } from '../../../common/contract.ts';
import type { AuditFilter, AuditPageRequest } from '../../../common/contract.ts';
import { seqRange } from './db.ts';
import type { StoreDb } from './db.ts';
import type { DerivedIndex } from './derived-index.ts';
import { filterWhere, parseOr } from './filter-sql.ts';
import type { Where } from './filter-sql.ts';
import { AUDIT_COUNT_CAP, toRecord } from './types.ts';
import type { AuditPage, AuditStats, PageOptions, Row, StoredAuditRecord } from './types.ts';

/** What the timeline and export read: pages with their counts, searches, records in order, stats. */
export class Queries {
  readonly #s: StoreDb;
  readonly #index: DerivedIndex;
  readonly #getStmt;

  constructor(s: StoreDb, index: DerivedIndex) {
    this.#s = s;
    this.#index = index;
    this.#getStmt = s.db.prepare('SELECT seq, body, hash FROM records WHERE seq = ?');
  }

  /**
   * True when a tool-call record for request `requestId` of MCP session `sessionId` was written at or
   * after `sinceMs`: a core that died between appending a call's record and closing its journal entry
   * must not record that call twice. MCP request ids are unique within a session.
   *
   * Read newest first and stopped at the first record older than `sinceMs`: a record's time never goes
   * back along the chain (the writer takes the later of the clock and the head's), and records has no
   * index on time, so a filter on it read every row (about 3 s for each orphan at a million records).
   */
  hasCallRecord(sessionId: string, requestId: string | number, sinceMs: number): boolean {
    const newestFirst = this.#s.db.prepare(
      "SELECT at_ms, (kind = 'tool_call' AND outcome != 'aborted' AND json_extract(body, '$.keys.mcp_session_id') = ? AND json_extract(body, '$.keys.mcp_request_id') = ?) AS hit FROM records ORDER BY seq DESC",
    );
    for (const row of newestFirst.iterate(sessionId, requestId) as Iterable<{ at_ms: number; hit: number }>) {
      if (row.at_ms < sinceMs) return false;
      if (row.hit) return true;
    }
    return false;
  }

  get(seq: number): StoredAuditRecord | null {
    const row = this.#getStmt.get(seq) as Row | undefined;
    return row ? toRecord(row) : null;
  }

  /**
   * The newest records first (common/contract.ts `audit.page`): filtered, below the `before` cursor,
   * after `offset`. Every filter has an index ending in seq, so the newest page costs the same at any size.
   */
  page(request: AuditPageRequest = {}, options: PageOptions = {}): AuditPage {
    const q = parseOr(AuditPageRequestSchema, request);
    // Before the filter becomes SQL: a user is looked up in users, a time window in facets.
    this.#index.flush();
    const headSeq = this.#s.head()?.seq ?? 0;
    const where = filterWhere(this.#s.db, q.filter, q.before);
    if (where === null) return { records: [], ...(options.withTotal === false ? {} : { total: 0, total_capped: false }), head: headSeq, next_before: null };
    const withTotal = options.withTotal !== false;
    const unfiltered = !where.fts && where.clauses.length === (q.before === undefined ? 0 : 1);
    // An unfiltered page and its total read records alone (its count is arithmetic on seq), so the
    // plain timeline still answers, whole, while a full disk holds the derived tables back.
    if (!unfiltered) this.#index.forQuery();
    if (where.fts) {
      const found = this.#search(where, q.before ?? headSeq + 1, q.offset, q.limit, withTotal);
      return { records: found.rows.map(toRecord), ...found.total, head: headSeq, next_before: found.rows.length === q.limit ? found.rows[found.rows.length - 1]!.seq : null };
    }
    const rows = unfiltered
      ? // Contiguous seq turns an offset into a bound: random access at any depth costs one index seek.
        (this.#s.db
          .prepare('SELECT seq, body, hash FROM records WHERE seq < ? ORDER BY seq DESC LIMIT ?')
          .all((q.before ?? headSeq + 1) - q.offset, q.limit) as unknown as Row[])
      : (this.#newestOfEach(q.filter, q.before, q.limit, q.offset) ??
        (this.#s.db
          .prepare(
            `SELECT r.seq, r.body, r.hash FROM facets c CROSS JOIN records r ON r.seq = c.seq
             WHERE ${where.clauses.join(' AND ') || '1'} ORDER BY c.seq DESC LIMIT ? OFFSET ?`,
          )
          .all(...where.params, q.limit, q.offset) as unknown as Row[]));
    const records = rows.map(toRecord);
    const total = withTotal ? this.#boundedCount(where, q.filter, q.before) : {};
    return { records, ...total, head: headSeq, next_before: rows.length === q.limit ? rows[rows.length - 1]!.seq : null };
  }

  /**
   * A filter taking several values of a column ("denied or error", tiers 2 and 3): SQLite answers
   * `IN (…) ORDER BY seq DESC LIMIT n` by reading every match and sorting (~0.6 s at a million
   * records), so each combination of single values is read newest first on its own index, `limit +
   * offset` rows each, and the lists are merged. Null when no filter has several values.
   */
  #newestOfEach(f: AuditFilter, before: number | undefined, limit: number, offset: number): Row[] | null {
    const multi = (['outcome', 'kind', 'tier'] as const).filter((k) => (f[k]?.length ?? 0) > 1);
    if (multi.length === 0) return null;
    let combos: Array<Partial<AuditFilter>> = [{}];
    for (const k of multi) combos = combos.flatMap((c) => (f[k] as ReadonlyArray<string | number>).map((v) => ({ ...c, [k]: [v] })));
    if (combos.length > 64) return null;
    const parts: string[] = [];
    const params: SQLInputValue[] = [];
    for (const c of combos) {
      const w = filterWhere(this.#s.db, { ...f, ...c }, before);
      if (w === null) continue;
      parts.push(`SELECT seq FROM (SELECT c.seq AS seq FROM facets c WHERE ${w.clauses.join(' AND ')} ORDER BY c.seq DESC LIMIT ?)`);
      params.push(...w.params, limit + offset);
    }
    if (parts.length === 0) return [];
    // The merge sorts seqs alone; the page's rows are read after it, and put in order here.
    const rows = this.#s.db
      .prepare(
        `SELECT r.seq, r.body, r.hash FROM (SELECT seq FROM (${parts.join(' UNION ALL ')}) ORDER BY seq DESC LIMIT ? OFFSET ?) u CROSS JOIN records r ON r.seq = u.seq`,
      )
      .all(...params, limit, offset) as unknown as Row[];
    return rows.sort((a, b) => b.seq - a.seq);
  }

  /**
   * A search's page and its count, in one walk of the matches newest first. FTS5 starts that walk at
   * the newest end at no cost, but it honours a lower rowid bound, or a seek to one, only by reading a
   * term's list up to it (~15 ms at a million records for a word a quarter of them hold, whatever the
   * window), so this walk is bounded by stopping it: after the page's `offset + limit` matches, the
   * count goes on through the newest AUDIT_COUNT_CAP records below `before` and stops at the first
   * match past them. Such a count is a floor (`total_capped`), always more than the page holds (that
   * match is counted when the page ends where the window does), so the timeline says "N+ records"
   * and asks for the next page when scrolled.
   * Below that window it is exact. A word within an outcome reads both lists through the window only:
   * counted to the end at a million records it read a quarter of a million entries of the word's.
   */
  #search(where: Where, before: number, offset: number, limit: number, withTotal: boolean): { rows: Row[]; total?: { total: number; total_capped: boolean } } {
    const walk = this.#s.db.prepare(`SELECT x.rowid FROM records_fts x WHERE ${where.clauses.join(' AND ')} ORDER BY x.rowid DESC`);
    walk.setReturnArrays(true);
    const need = offset + limit;
    const windowEnd = before - AUDIT_COUNT_CAP;
    const seqs: number[] = [];
    let n = 0;
    let capped = false;
    for (const [seq] of walk.iterate(...where.params) as Iterable<[number]>) {
      if (n >= need && (!withTotal || seq < windowEnd)) {
        // This match is one more than the page holds: a floor says so, so the list asks for more.
        capped = withTotal;
        if (n === need) n++;
        break;
      }
      if (n >= offset && n < need) seqs.push(seq);
      n++;
    }
    const rows =
      seqs.length === 0
        ? []
        : (this.#s.db
            .prepare('SELECT seq, body, hash FROM records WHERE seq IN (SELECT value FROM json_each(?)) ORDER BY seq DESC')
            .all(JSON.stringify(seqs)) as unknown as Row[]);
    return { rows, ...(withTotal ? { total: { total: n, total_capped: capped } } : {}) };
  }

  /** Records matching the filter (all of them when it is empty). */
  count(filter: AuditFilter = {}): number {
    const f = parseOr(AuditFilterSchema, filter);
    this.#index.flush();
    const where = filterWhere(this.#s.db, f, undefined);
    if (where === null) return 0;
    // The count of everything is arithmetic on seq (see #count), right while the derived tables are behind.
    if (where.fts || where.clauses.length > 0) this.#index.forQuery();
    return this.#count(where);
  }

  /**
   * What a page of filter columns says of its length (a search counts itself, see #search): exact for
   * filter columns, a time window (a seq range) or nothing; filter columns within a time window are
   * counted up to AUDIT_COUNT_CAP, stopping there.
   */
  #boundedCount(where: Where, f: AuditFilter, before: number | undefined): { total: number; total_capped: boolean } {
    const facetFree = !where.fts && f.outcome === undefined && f.kind === undefined && f.tier === undefined && f.tool === undefined && f.user === undefined;
    const range = seqRange(this.#s.db);
    if (facetFree) {
      if (!range) return { total: 0, total_capped: false };
      // Time bounds are seq bounds: count the seqs between them, below `before`.
      let lo = range.lo;
      let hi = range.hi;
      if (before !== undefined) hi = Math.min(hi, before - 1);
      if (where.seq.from !== undefined) lo = Math.max(lo, where.seq.from);
      if (where.seq.to !== undefined) hi = Math.min(hi, where.seq.to);
      return { total: Math.max(0, hi - lo + 1), total_capped: false };
    }
    if (!where.fts && where.seq.from === undefined && where.seq.to === undefined) {
      // Only filter columns: exact, from the per-combination counts, less what came in at or after `before`.
      const all = filterWhere(this.#s.db, f, undefined)!;
      const sum = (this.#s.db.prepare(`SELECT coalesce(sum(n), 0) AS n FROM facet_counts c WHERE ${all.clauses.join(' AND ')}`).get(...all.params) as { n: number }).n;
      const after =
        before === undefined || !range || before > range.hi
          ? 0
          : (this.#s.db.prepare(`SELECT count(*) AS n FROM facets c WHERE ${[...all.clauses, 'c.seq >= ?'].join(' AND ')}`).get(...all.params, before) as { n: number }).n;
      return { total: sum - after, total_capped: false };
    }
    // Filter columns within a time window: counted to the cap.
    const inner = `SELECT 1 FROM facets c WHERE ${where.clauses.join(' AND ') || '1'} LIMIT ?`;
    const n = (this.#s.db.prepare(`SELECT count(*) AS n FROM (${inner})`).get(...where.params, AUDIT_COUNT_CAP + 1) as { n: number }).n;
    return n > AUDIT_COUNT_CAP ? { total: AUDIT_COUNT_CAP, total_capped: true } : { total: n, total_capped: false };
  }

  #count(where: Where): number {
    if (!where.fts && where.clauses.length === 0) {
      // The chain keeps seq contiguous above the retention boundary, so no scan is needed.
      const range = seqRange(this.#s.db);
      return range ? range.hi - range.lo + 1 : 0;
    }
    const sql = where.fts
      ? `SELECT count(*) AS n FROM records_fts x WHERE ${where.clauses.join(' AND ')}`
      : `SELECT count(*) AS n FROM facets c WHERE ${where.clauses.join(' AND ') || '1'}`;
    return (this.#s.db.prepare(sql).get(...where.params) as { n: number }).n;
  }

  /**
   * Records oldest first, for export and forwarding. Reads through its own connection inside one read
   * transaction, so a long export sees one consistent snapshot while appends continue.
   */
  *iterate(filter: AuditFilter = {}): Generator<StoredAuditRecord> {
    const f = parseOr(AuditFilterSchema, filter);
    if (Object.values(f).some((v) => v !== undefined)) this.#index.forQuery();
    else this.#index.flush();
    const reader = new DatabaseSync(this.#s.path, { readOnly: true });
    try {
      reader.exec('BEGIN');
      const where = filterWhere(reader, f, undefined);
      if (where === null) return;
      const sql = where.fts
        ? `SELECT r.seq, r.body, r.hash FROM records_fts x CROSS JOIN records r ON r.seq = x.rowid
           WHERE ${where.clauses.join(' AND ')} ORDER BY x.rowid`
        : where.clauses.length === 0
          ? 'SELECT seq, body, hash FROM records ORDER BY seq'
          : `SELECT r.seq, r.body, r.hash FROM facets c CROSS JOIN records r ON r.seq = c.seq WHERE ${where.clauses.join(' AND ')} ORDER BY c.seq`;
      for (const row of reader.prepare(sql).iterate(...where.params)) yield toRecord(row as unknown as Row);
    } finally {
      reader.close();
    }
  }

  stats(): AuditStats {
    const agg = this.#s.db.prepare('SELECT count(*) AS n, min(seq) AS lo, max(seq) AS hi, min(at_ms) AS a0, max(at_ms) AS a1 FROM records').get() as {
      n: number;
      lo: number | null;
      hi: number | null;
      a0: number | null;
      a1: number | null;
    };
    const byOutcome: Record<string, number> = {};
    this.#index.flush();
    // facet_counts holds each combination of filter values with its count: a few thousand rows at any
    // size. It counts the records with a facets row, a prefix of seq; the records past it (those a
    // full disk kept from the derived tables, or a read-only open that did not catch up) are counted
    // from their own rows, so stats answer whole while the index is behind.
    const counted = this.#s.db
      .prepare(
        `SELECT outcome, sum(n) AS n FROM (SELECT outcome, n FROM facet_counts UNION ALL
           SELECT outcome, 1 FROM records WHERE seq > (SELECT coalesce(max(seq), 0) FROM facets)) GROUP BY outcome`,
      )
      .all() as { outcome: string; n: number }[];
    for (const o of OUTCOMES) {
      const n = counted.find((r) => r.outcome === o)?.n ?? 0;
      if (n > 0) byOutcome[o] = n;
    }
    const head = this.#s.headRow();
    const cp = this.#s.db.prepare('SELECT seq, at_ms, anchored_at_ms FROM checkpoints ORDER BY seq DESC LIMIT 1').get() as
      | { seq: number; at_ms: number; anchored_at_ms: number | null }
      | undefined;
    let dbBytes = 0;
    for (const suffix of ['', '-wal']) {
      try {
        dbBytes += statSync(this.#s.path + suffix).size;
      } catch {
        // absent -wal is normal
      }
    }
    const boundary = this.#s.boundary();
    return {
      count: agg.n,
      first_seq: agg.lo,
      head: head ? { seq: head.seq, hash: head.hash } : null,
      oldest_at: agg.a0 === null ? null : new Date(agg.a0).toISOString(),
      newest_at: agg.a1 === null ? null : new Date(agg.a1).toISOString(),
      by_outcome: byOutcome,
      pruned_through: boundary ? { seq: boundary.seq, hash: boundary.hash } : null,
      last_checkpoint: cp ? { seq: cp.seq, at: new Date(cp.at_ms).toISOString(), anchored: cp.anchored_at_ms !== null } : null,
      db_bytes: dbBytes,
    };
  }

}
