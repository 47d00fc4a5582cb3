import type { StatementSync } from 'node:sqlite';
import { AppError } from '../../../common/errors.ts';
import type { StoreDb } from './db.ts';
import { searchText } from './search.ts';
import type { FacetValues, StoredAuditRecord } from './types.ts';

/**
 * The derived tables (facets, the filter columns with their indexes; the FTS5 full-text index; users)
 * are kept off the durable path. Written in the append's own commit they dirtied about nine pages per
 * record (each index its own leaf, FTS5 a new segment per transaction) against one or two for the row
 * itself, and a synced commit costs by the page. So an append commits the record row alone; the
 * derived rows are queued and written in one transaction at most 200 ms later (or at 1,024 rows, and
 * before any filtered query, retention or close). That transaction commits with synchronous=NORMAL: if
 * a crash loses it, `indexed_through` still says where indexing stopped and the next open rebuilds
 * the rest from the records themselves, so a filter or search is never silently short.
 */
export class DerivedIndex {
  readonly #s: StoreDb;
  /**
   * Committed records not yet in the derived tables (facets, full-text index, users). Their rows (the
   * search text above all) are worked out when they are written, off the durable append's path.
   */
  #pending: PendingRecord[] = [];
  #timer: NodeJS.Timeout | undefined;
  /** Users already in the users table as last written, so an unchanged user costs no write. */
  readonly #knownUsers = new Map<string, string>();
  readonly #insertFts: StatementSync | undefined;
  readonly #insertFacets: StatementSync | undefined;
  readonly #upsertUser: StatementSync | undefined;
  readonly #addCount: StatementSync | undefined;

  constructor(s: StoreDb, readOnly: boolean) {
    this.#s = s;
    // The index rows of records a write transaction did not keep (a full disk at COMMIT) must not be
    // written later, under sequence numbers the next records will take.
    s.onRollback = () => {
      const kept = this.#pending.length;
      return () => {
        this.#pending.length = kept;
      };
    };
    if (readOnly) return;
    const db = s.db;
    this.#insertFts = db.prepare('INSERT INTO records_fts (rowid, text) VALUES (?, ?)');
    this.#insertFacets = db.prepare(
      'INSERT OR IGNORE INTO facets (seq, at_ms, kind, outcome, tier, tool, user_sub) VALUES (?, ?, ?, ?, ?, ?, ?)',
    );
    this.#addCount = db.prepare(
      'INSERT INTO facet_counts (key, kind, outcome, tier, tool, user_sub, n) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET n = n + excluded.n',
    );
    this.#upsertUser = db.prepare(
      'INSERT INTO users (sub, name, email) VALUES (?, ?, ?) ON CONFLICT (sub) DO UPDATE SET name = coalesce(excluded.name, name), email = coalesce(excluded.email, email)',
    );
  }

  /** Queues the derived rows of a record written in the current transaction. */
  add(record: PendingRecord): void {
    this.#pending.push(record);
  }

  /** Writes the queued rows soon: at once past 1,024 rows, else within 200 ms. */
  schedule(): void {
    if (this.#pending.length >= 1024) queueMicrotask(() => this.flush());
    else if (!this.#timer) this.#timer = setTimeout(() => this.flush(), 200).unref();
  }

  /** Writes the queued rows now, in one transaction (the benchmark times this work). */
  flush(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#pending.length === 0 || this.#s.closed || !this.#insertFts || !this.#insertFacets) return;
    const records = this.#pending;
    this.#pending = [];
    const fts = this.#insertFts;
    const facets = this.#insertFacets;
    // The index's commits are not synced (see above); the record's are, so the setting goes back after
    // each. Set with exec, never a prepared statement: SQLite applies `PRAGMA synchronous = …` when the
    // statement is compiled, and running a prepared one again changes nothing.
    try {
      this.#s.db.exec('PRAGMA synchronous = NORMAL');
      this.#s.tx(() => {
        const counts = new Map<string, { i: IndexRow; n: number }>();
        for (const record of records) {
          const i = indexRow(record);
          fts.run(i.seq, i.text);
          if (i.user) {
            const seen = `${i.user.name ?? ''}\u0000${i.user.email ?? ''}`;
            if (this.#knownUsers.get(i.user.sub) !== seen) {
              this.#upsertUser!.run(i.user.sub, i.user.name ?? null, i.user.email ?? null);
              this.#knownUsers.set(i.user.sub, seen);
            }
          }
          // A record whose facets row is already there (a store from schema 4, whose migration wrote
          // every record's row while the full-text index lagged) is counted once, not again.
          if (facets.run(i.seq, i.at_ms, i.kind, i.outcome, i.tier, i.tool, i.user_sub).changes === 0) continue;
          const key = JSON.stringify([i.kind, i.outcome, i.tier, i.tool, i.user_sub]);
          const c = counts.get(key);
          if (c) c.n++;
          else counts.set(key, { i, n: 1 });
        }
        for (const [key, { i, n }] of counts) this.#addCount!.run(key, i.kind, i.outcome, i.tier, i.tool, i.user_sub, n);
        this.#s.setMeta('indexed_through', String(records[records.length - 1]!.seq));
      });
    } catch {
      // Kept for the next try (a full disk clears): dropping them would let a later flush move
      // indexed_through past records that have no index rows. A crash meanwhile is covered by the next
      // open's catch-up, which starts from indexed_through.
      this.#knownUsers.clear();
      this.#pending = records.concat(this.#pending);
      if (!this.#timer && !this.#s.closed) this.#timer = setTimeout(() => this.flush(), 1_000).unref();
    } finally {
      this.#s.db.exec('PRAGMA synchronous = FULL');
    }
  }

  /**
   * Brings the derived tables up to date before a query that reads them; refuses rather than answer
   * short when they cannot be (the deferred rows are kept and written once the disk has room).
   */
  forQuery(): void {
    this.flush();
    if (this.#pending.length > 0) {
      throw new AppError('AUDIT_FAILED', `The timeline's filters are ${this.#pending.length} record(s) behind because the audit store's disk refused a write; free space on that disk and try again. Every record is kept.`);
    }
  }

  /** Indexes what the last run left unindexed, in transactions of 10,000 records. */
  catchUp(): void {
    const next = this.#s.db.prepare('SELECT seq, body FROM records WHERE seq > ? ORDER BY seq LIMIT 10000');
    let through = Number(this.#s.meta('indexed_through') ?? 0);
    for (;;) {
      const rows = next.all(through) as { seq: number; body: string }[];
      if (rows.length === 0) break;
      for (const row of rows) this.#pending.push(JSON.parse(row.body) as PendingRecord);
      through = rows[rows.length - 1]!.seq;
      // On a full disk the rows stay pending, the rest queue behind them, and filtered queries refuse
      // until a later flush writes them all.
      this.flush();
    }
  }
}

type PendingRecord = Omit<StoredAuditRecord, 'hash'>;

interface IndexRow extends FacetValues {
  seq: number;
  user: { sub: string; name?: string; email?: string } | null;
  text: string;
}

/** The derived rows of a record: its filter columns, its search text and its user. */
function indexRow(r: PendingRecord): IndexRow {
  return {
    seq: r.seq,
    at_ms: Date.parse(r.at),
    kind: r.kind,
    outcome: r.outcome,
    tier: r.tier ?? null,
    tool: r.tool ?? null,
    user_sub: r.user?.sub ?? null,
    user: r.user ?? null,
    text: searchText(r),
  };
}
