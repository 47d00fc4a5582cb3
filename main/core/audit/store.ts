import { createHash } from 'node:crypto';
import { mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import type { SQLInputValue, StatementSync } from 'node:sqlite';
import type { JWK } from 'jose';
import { AuditRecordInputSchema, OUTCOMES } from '../../../common/audit-record.ts';
import type { AuditRecord, AuditRecordInput } from '../../../common/audit-record.ts';
import { AuditFilterSchema, AuditPageRequestSchema } from '../../../common/contract.ts';
import type { AuditFilter, AuditPageRequest } from '../../../common/contract.ts';
import { AppError } from '../../../common/errors.ts';
import type { WireError } from '../../../common/errors.ts';
import type { AuditSink, SecretStore } from '../ports.ts';
import { canonicalJson } from '../../../common/canonical-json.ts';
import { postAnchor, signCheckpoint, verifyCheckpoint } from './checkpoint.ts';
import type { SignedCheckpoint } from './checkpoint.ts';
import { loadInstallKeys } from './install-keys.ts';
import type { InstallKeys } from './install-keys.ts';
import { privateDatabase } from '../data-dir.ts';
import { Redactor } from './redact.ts';
import type { RedactionPolicy } from './redact.ts';
import { FACET_COUNTS_FROM_FACETS, migrate } from './schema.ts';
import { facetTerm, ftsQuery, searchText } from './search.ts';
import type { FacetColumn } from './search.ts';
import type { z } from 'zod';

export type StoredAuditRecord = AuditRecord;

/** The `prev_hash` of the first record ever written. */
export const GENESIS_HASH = '0'.repeat(64);

/**
 * A page counts the records its filter matches up to this many (the timeline then says "10,000+"):
 * an exact count costs time in proportion to the matches, so a filter that keeps a third of a million
 * records would make every page of it ~30x slower than at ten thousand. A filter that is only a time
 * window, or none, is counted exactly at no cost (seq is contiguous).
 */
export const AUDIT_COUNT_CAP = 10_000;
export const DB_FILE = 'audit.db';

export interface AuditStoreOptions {
  /** The app-data directory; the database is `<dataDir>/audit.db`, created owner-only. */
  dataDir: string;
  /** Holds the install's signing and HMAC keys. Required to append; optional for a read-only open. */
  secrets?: SecretStore;
  redaction?: RedactionPolicy;
  /** Opens for reading only (export, verify from the command line while the app runs). */
  readOnly?: boolean;
  /** Where signed checkpoints are POSTed (`application/jose`): the off-machine anchor. */
  anchorUrl?: string;
  /** Sign (and anchor) a checkpoint every this many records. Off when undefined. */
  checkpointEvery?: number;
  /** Clock, epoch milliseconds; tests of retention pass their own. */
  now?: () => number;
  fetch?: typeof fetch;
}

export interface AppendOptions {
  /** Values the caller holds right now (OBO token, database password): masked wherever they appear. */
  knownSecrets?: readonly string[];
}

/** A page as common/contract.ts's `audit.page` returns it, plus the cursor for the next one. */
export interface AuditPage {
  /** Newest first. */
  records: StoredAuditRecord[];
  /**
   * Records matching the filter below `before` (omitted when `withTotal` is false): exact when the
   * filter is only a time window or nothing, counted up to AUDIT_COUNT_CAP otherwise.
   */
  total?: number;
  /** More records match than `total` says: counting stopped at AUDIT_COUNT_CAP. */
  total_capped?: boolean;
  /** The newest `seq` in the store when the page was read. */
  head: number;
  /** Pass as `before` for the next (older) page; null at the end. */
  next_before: number | null;
}

export interface PageOptions {
  /** Count the matches for the list's length (default true); costs time proportional to the matches. */
  withTotal?: boolean;
}

export interface ChainHead {
  seq: number;
  hash: string;
}

export interface AuditStats {
  count: number;
  first_seq: number | null;
  head: ChainHead | null;
  oldest_at: string | null;
  newest_at: string | null;
  by_outcome: Record<string, number>;
  /** The last record removed by retention, whose hash the remaining chain starts from. */
  pruned_through: ChainHead | null;
  last_checkpoint: { seq: number; at: string; anchored: boolean } | null;
  db_bytes: number;
}

export type VerifyProblemKind = 'edited' | 'deleted' | 'reordered' | 'truncated' | 'rewritten' | 'checkpoint_invalid';

export interface VerifyProblem {
  kind: VerifyProblemKind;
  /** The first record affected. */
  seq: number;
  message: string;
}

export interface VerifyOptions {
  /** Checkpoints kept off this machine (compact JWS), e.g. as returned by the anchor receiver. */
  anchors?: readonly string[];
  /** The install's public key as the anchor's holder knows it; defaults to the keychain's or the stored one. */
  publicKey?: JWK;
}

/** A superset of common/contract.ts's `VerifyResult`. */
export interface VerifyResult {
  ok: boolean;
  checked: number;
  /** The first record edited, deleted or reordered (or the first missing one), when the chain is broken. */
  firstBad: { seq: number; reason: string; kind: VerifyProblemKind } | null;
  /** Whether at least one checkpoint kept off the machine was compared. */
  anchored: boolean;
  verifiedAt: string;
  head: ChainHead | null;
  checkpoints_checked: number;
  anchors_checked: number;
}

export interface CheckpointResult {
  checkpoint: SignedCheckpoint;
  anchored: boolean;
  error?: WireError;
}

export interface PruneOptions {
  /** Remove records older than this. */
  maxAgeMs?: number;
  /** Keep at most this many of the newest records. */
  keepLast?: number;
}

export interface PruneResult {
  removed: number;
  through: ChainHead | null;
}

type Listener = (record: StoredAuditRecord) => void;

interface PendingAppend {
  record: AuditRecordInput;
  options: AppendOptions;
  resolve(r: StoredAuditRecord): void;
  reject(e: AppError): void;
}

interface Row {
  seq: number;
  body: string;
  hash: string;
}

interface VerifyRow extends Row {
  at_ms: number;
  kind: string;
  outcome: string;
  tier: number | null;
  tool: string | null;
  user_sub: string | null;
  c_seq: number | null;
  c_at_ms: number | null;
  c_kind: string | null;
  c_outcome: string | null;
  c_tier: number | null;
  c_tool: string | null;
  c_user_sub: string | null;
}

/**
 * The tamper-evident audit store: one SQLite database (`node:sqlite`) in WAL mode with
 * `synchronous=FULL`, so a record whose `append()` has resolved survives a crash of the process and
 * of the machine (NORMAL in WAL mode survives a process crash but may lose the last commits on power
 * loss, which an audit log cannot afford).
 *
 * Each record is redacted, then chained: `hash = SHA-256(canonical JSON of the record with seq, at and
 * prev_hash)`. `verify()` names the first record edited, deleted or reordered; signed checkpoints, and
 * above all those kept off the machine (anchors), are what detect a fully re-hashed or truncated chain.
 */
export class AuditStore implements AuditSink {
  readonly path: string;
  readonly #db: DatabaseSync;
  readonly #opts: AuditStoreOptions;
  readonly #keys: InstallKeys | undefined;
  readonly #redactor: Redactor | undefined;
  readonly #listeners = new Set<Listener>();
  #batch: PendingAppend[] = [];
  /** Committed records not yet in the derived tables (facets, full-text index, users); see #flushIndex. */
  #indexPending: IndexRow[] = [];
  #indexTimer: NodeJS.Timeout | undefined;
  /** Users already in the users table as last written, so an unchanged user costs no write. */
  readonly #knownUsers = new Map<string, string>();
  readonly #pending = new Set<Promise<unknown>>();
  readonly #now: () => number;
  readonly #insert: StatementSync | undefined;
  readonly #insertFts: StatementSync | undefined;
  readonly #insertFacets: StatementSync | undefined;
  readonly #upsertUser: StatementSync | undefined;
  readonly #addCount: StatementSync | undefined;
  readonly #headStmt: StatementSync;
  readonly #getStmt: StatementSync;
  #closed = false;

  private constructor(db: DatabaseSync, path: string, opts: AuditStoreOptions, keys: InstallKeys | undefined) {
    this.#db = db;
    this.path = path;
    this.#opts = opts;
    this.#keys = keys;
    this.#now = opts.now ?? Date.now;
    this.#redactor = keys ? new Redactor(opts.redaction, keys.hmacKey) : undefined;
    this.#headStmt = db.prepare('SELECT seq, hash, at_ms FROM records ORDER BY seq DESC LIMIT 1');
    this.#getStmt = db.prepare('SELECT seq, body, hash FROM records WHERE seq = ?');
    if (!opts.readOnly) {
      this.#insert = db.prepare(
        'INSERT INTO records (seq, at_ms, kind, outcome, tier, tool, user_sub, body, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
      );
      this.#insertFts = db.prepare('INSERT INTO records_fts (rowid, text) VALUES (?, ?)');
      this.#insertFacets = db.prepare(
        'INSERT OR REPLACE INTO facets (seq, at_ms, kind, outcome, tier, tool, user_sub) VALUES (?, ?, ?, ?, ?, ?, ?)',
      );
      this.#addCount = db.prepare(
        'INSERT INTO facet_counts (key, kind, outcome, tier, tool, user_sub, n) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET n = n + excluded.n',
      );
      this.#upsertUser = db.prepare(
        'INSERT INTO users (sub, name, email) VALUES (?, ?, ?) ON CONFLICT (sub) DO UPDATE SET name = coalesce(excluded.name, name), email = coalesce(excluded.email, email)',
      );
    }
  }

  static async open(opts: AuditStoreOptions): Promise<AuditStore> {
    const path = join(opts.dataDir, DB_FILE);
    let db: DatabaseSync;
    try {
      if (!opts.readOnly) {
        mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
        privateDatabase(path);
      }
      db = new DatabaseSync(path, { readOnly: opts.readOnly ?? false });
      db.exec('PRAGMA busy_timeout = 5000');
      if (!opts.readOnly) {
        db.exec('PRAGMA journal_mode = WAL');
        db.exec('PRAGMA synchronous = FULL');
        migrate(db);
      }
    } catch (e) {
      throw AppError.from(e, 'AUDIT_FAILED', 'The audit store could not be opened.');
    }
    let keys: InstallKeys | undefined;
    try {
      if (opts.secrets) keys = await loadInstallKeys(opts.secrets);
      else if (!opts.readOnly) throw new AppError('CONFIG_MISSING', 'The audit store needs the keychain to write records.');
      if (keys && !opts.readOnly) {
        db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run(
          'public_jwk',
          JSON.stringify(keys.publicJwk),
        );
      }
    } catch (e) {
      db.close();
      throw e;
    }
    const store = new AuditStore(db, path, opts, keys);
    if (!opts.readOnly) store.#catchUpIndex();
    return store;
  }

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
  #scheduleIndex(): void {
    if (this.#indexPending.length >= 1024) queueMicrotask(() => this.#flushIndex());
    else if (!this.#indexTimer) this.#indexTimer = setTimeout(() => this.#flushIndex(), 200).unref();
  }

  /** Writes the deferred index rows now rather than at the next timer (the benchmark times this work). */
  flushIndex(): void {
    this.#flushIndex();
  }

  #flushIndex(): void {
    if (this.#indexTimer) clearTimeout(this.#indexTimer);
    this.#indexTimer = undefined;
    if (this.#indexPending.length === 0 || this.#closed || !this.#insertFts || !this.#insertFacets) return;
    const items = this.#indexPending;
    this.#indexPending = [];
    const fts = this.#insertFts;
    const facets = this.#insertFacets;
    this.#db.exec('PRAGMA synchronous = NORMAL');
    try {
      this.#tx(() => {
        const counts = new Map<string, { i: IndexRow; n: number }>();
        for (const i of items) {
          const key = JSON.stringify([i.kind, i.outcome, i.tier, i.tool, i.user_sub]);
          const c = counts.get(key);
          if (c) c.n++;
          else counts.set(key, { i, n: 1 });
        }
        for (const [key, { i, n }] of counts) this.#addCount!.run(key, i.kind, i.outcome, i.tier, i.tool, i.user_sub, n);
        for (const i of items) {
          facets.run(i.seq, i.at_ms, i.kind, i.outcome, i.tier, i.tool, i.user_sub);
          fts.run(i.seq, i.text);
          if (i.user) {
            const seen = `${i.user.name ?? ''}\u0000${i.user.email ?? ''}`;
            if (this.#knownUsers.get(i.user.sub) !== seen) {
              this.#upsertUser!.run(i.user.sub, i.user.name ?? null, i.user.email ?? null);
              this.#knownUsers.set(i.user.sub, seen);
            }
          }
        }
        this.#setMeta('indexed_through', String(items[items.length - 1]!.seq));
      });
    } catch {
      // Kept for the next try (a full disk clears): dropping them would let a later flush move
      // indexed_through past records that have no index rows. A crash meanwhile is covered by the next
      // open's catch-up, which starts from indexed_through.
      this.#knownUsers.clear();
      this.#indexPending = items.concat(this.#indexPending);
      if (!this.#indexTimer && !this.#closed) this.#indexTimer = setTimeout(() => this.#flushIndex(), 1_000).unref();
    } finally {
      this.#db.exec('PRAGMA synchronous = FULL');
    }
  }

  /**
   * Brings the derived tables up to date before a query that reads them; refuses rather than answer
   * short when they cannot be (the deferred rows are kept and written once the disk has room).
   */
  #indexForQuery(): void {
    this.#flushIndex();
    if (this.#indexPending.length > 0) {
      throw new AppError('AUDIT_FAILED', `The timeline's filters are ${this.#indexPending.length} record(s) behind because the audit store's disk refused a write; free space on that disk and try again. Every record is kept.`);
    }
  }

  /** Indexes what the last run left unindexed, in transactions of 10,000 records. */
  #catchUpIndex(): void {
    const next = this.#db.prepare('SELECT seq, body FROM records WHERE seq > ? ORDER BY seq LIMIT 10000');
    let through = Number(this.#meta('indexed_through') ?? 0);
    for (;;) {
      const rows = next.all(through) as { seq: number; body: string }[];
      if (rows.length === 0) break;
      for (const row of rows) this.#indexPending.push(indexRow(JSON.parse(row.body) as Omit<StoredAuditRecord, 'hash'>));
      through = rows[rows.length - 1]!.seq;
      // On a full disk the rows stay pending, the rest queue behind them, and filtered queries refuse
      // until a later flush writes them all.
      this.#flushIndex();
    }
  }

  /** The install's public key (JWK, `kid` = RFC 7638 thumbprint): what a receiver needs to check checkpoints and SETs. */
  publicKeyJwk(): JWK {
    if (this.#keys) return { ...this.#keys.publicJwk };
    const stored = this.#meta('public_jwk');
    if (!stored) throw new AppError('AUDIT_FAILED', 'This audit store has no public key yet.');
    return JSON.parse(stored) as JWK;
  }

  /** The install keys, for the SET forwarder that signs with the same key. */
  get installKeys(): InstallKeys | undefined {
    return this.#keys;
  }

  /**
   * Appends one record; resolves once it is committed and synced. Appends made in the same turn of the
   * event loop (concurrent calls finishing together) share one transaction and one sync: group commit.
   * Each is validated on its own, so a malformed record is refused without holding back the others.
   */
  append(record: AuditRecordInput, options: AppendOptions = {}): Promise<StoredAuditRecord> {
    return new Promise((resolve, reject) => {
      this.#batch.push({ record, options, resolve, reject });
      if (this.#batch.length === 1) queueMicrotask(() => this.#flush());
    });
  }

  #flush(): void {
    const batch = this.#batch;
    this.#batch = [];
    const done: { item: PendingAppend; stored?: StoredAuditRecord; error?: AppError }[] = [];
    try {
      this.#tx(() => {
        for (const item of batch) {
          try {
            done.push({ item, stored: this.#appendInTx(item.record, item.options) });
          } catch (e) {
            // Only refusals before any write (validation, redaction) reach here; a database error
            // aborts the transaction below and fails the whole batch.
            if (!AppError.is(e, 'INPUT_INVALID') && !AppError.is(e, 'AUDIT_REDACTION_REFUSED') && !AppError.is(e, 'AUDIT_READ_ONLY')) throw e;
            done.push({ item, error: e });
          }
        }
      });
    } catch (e) {
      const err = e instanceof AppError ? e : AppError.from(e, 'AUDIT_FAILED', 'The audit record could not be written.');
      for (const item of batch) item.reject(err);
      return;
    }
    this.#scheduleIndex();
    for (const d of done) {
      if (d.stored) {
        this.#emit(d.stored);
        d.item.resolve(d.stored);
      } else d.item.reject(d.error!);
    }
  }

  /** Appends several records in one transaction (imports, bulk fills); the chain is the same as one by one. */
  appendMany(records: readonly AuditRecordInput[], options: AppendOptions = {}): StoredAuditRecord[] {
    const out: StoredAuditRecord[] = [];
    this.#tx(() => {
      for (const r of records) out.push(this.#appendInTx(r, options));
    });
    this.#flushIndex();
    for (const r of out) this.#emit(r);
    return out;
  }

  appendSync(record: AuditRecordInput, options: AppendOptions = {}): StoredAuditRecord {
    let stored!: StoredAuditRecord;
    this.#tx(() => {
      stored = this.#appendInTx(record, options);
    });
    this.#scheduleIndex();
    this.#emit(stored);
    return stored;
  }

  #appendInTx(input: AuditRecordInput, options: AppendOptions): StoredAuditRecord {
    if (!this.#insert || !this.#insertFts || !this.#redactor) {
      throw new AppError('AUDIT_READ_ONLY', 'This audit store was opened for reading only.');
    }
    const parsed = AuditRecordInputSchema.safeParse(input);
    if (!parsed.success) {
      const where = parsed.error.issues.map((i) => i.path.join('.') || '(record)').join(', ');
      throw new AppError('INPUT_INVALID', `The audit record is malformed at: ${where}.`);
    }
    const { value, redacted } = this.#redactor.scrubRecord(parsed.data as Record<string, unknown>, options.knownSecrets);
    const head = this.#headStmt.get() as { seq: number; hash: string; at_ms: number } | undefined;
    const base = head ?? this.#boundary() ?? { seq: 0, hash: GENESIS_HASH, at_ms: 0 };
    const seq = base.seq + 1;
    const atMs = Math.max(this.#now(), head?.at_ms ?? 0);
    const unhashed = {
      ...value,
      seq,
      at: new Date(atMs).toISOString(),
      prev_hash: base.hash,
      ...(redacted.length > 0 ? { redacted } : {}),
    } as Omit<StoredAuditRecord, 'hash'>;
    const body = canonicalJson(unhashed);
    const hash = sha256(body);
    this.#insert.run(
      seq,
      atMs,
      unhashed.kind,
      unhashed.outcome,
      unhashed.tier ?? null,
      unhashed.tool ?? null,
      unhashed.user?.sub ?? null,
      body,
      hash,
    );
    this.#indexPending.push(indexRow(unhashed));
    // What get() would return: the redacted copy (plain objects throughout) with its hash.
    const stored = { ...unhashed, hash } as StoredAuditRecord;
    if (this.#opts.checkpointEvery && seq % this.#opts.checkpointEvery === 0) {
      queueMicrotask(() => this.#track(this.checkpoint()));
    }
    return stored;
  }

  /** Live updates: called after each record commits. Returns the unsubscribe function. */
  onAppend(listener: Listener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * True when a tool-call record for request `requestId` of MCP session `sessionId` was written at or
   * after `sinceMs`: a core that died between appending a call's record and closing its journal entry
   * must not record that call twice. MCP request ids are unique within a session.
   */
  hasCallRecord(sessionId: string, requestId: string | number, sinceMs: number): boolean {
    const row = this.#db
      .prepare(
        "SELECT 1 AS found FROM records WHERE at_ms >= ? AND kind = 'tool_call' AND outcome != 'aborted' AND json_extract(body, '$.keys.mcp_session_id') = ? AND json_extract(body, '$.keys.mcp_request_id') = ? LIMIT 1",
      )
      .get(sinceMs, sessionId, requestId);
    return row !== undefined;
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
    const headSeq = this.head()?.seq ?? 0;
    const where = this.#where(q.filter, q.before);
    if (where === null) return { records: [], ...(options.withTotal === false ? {} : { total: 0, total_capped: false }), head: headSeq, next_before: null };
    const unfiltered = !where.fts && where.clauses.length === (q.before === undefined ? 0 : 1);
    if (unfiltered && options.withTotal === false) this.#flushIndex();
    else this.#indexForQuery();
    const rows = where.fts
      ? this.#searchNewest(where, q.before ?? headSeq + 1, q.limit + q.offset).slice(q.offset)
      : unfiltered
        ? // Contiguous seq turns an offset into a bound: random access at any depth costs one index seek.
          (this.#db
            .prepare('SELECT seq, body, hash FROM records WHERE seq < ? ORDER BY seq DESC LIMIT ?')
            .all((q.before ?? headSeq + 1) - q.offset, q.limit) as unknown as Row[])
        : (this.#newestOfEach(q.filter, q.before, q.limit, q.offset) ??
          (this.#db
            .prepare(
              `SELECT r.seq, r.body, r.hash FROM facets c CROSS JOIN records r ON r.seq = c.seq
             WHERE ${where.clauses.join(' AND ') || '1'} ORDER BY c.seq DESC LIMIT ? OFFSET ?`,
            )
            .all(...where.params, q.limit, q.offset) as unknown as Row[]));
    const records = rows.map(toRecord);
    const total = options.withTotal === false ? {} : this.#boundedCount(where, q.filter, q.before);
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
      const w = this.#where({ ...f, ...c }, before);
      if (w === null) continue;
      parts.push(`SELECT seq FROM (SELECT c.seq AS seq FROM facets c WHERE ${w.clauses.join(' AND ')} ORDER BY c.seq DESC LIMIT ?)`);
      params.push(...w.params, limit + offset);
    }
    if (parts.length === 0) return [];
    // The merge sorts seqs alone; the page's rows are read after it, and put in order here.
    const rows = this.#db
      .prepare(
        `SELECT r.seq, r.body, r.hash FROM (SELECT seq FROM (${parts.join(' UNION ALL ')}) ORDER BY seq DESC LIMIT ? OFFSET ?) u CROSS JOIN records r ON r.seq = u.seq`,
      )
      .all(...params, limit, offset) as unknown as Row[];
    return rows.sort((a, b) => b.seq - a.seq);
  }

  /**
   * The newest `need` full-text matches below `before`. FTS5 keeps each term's document list in
   * ascending rowid order, so "newest first, limit n" over a common word would read the whole list;
   * asking for windows of seq from the newest end, widening each time, reads only the tail it needs.
   */
  #searchNewest(where: Where, before: number, need: number): Row[] {
    const stmt = this.#db.prepare(
      `SELECT r.seq, r.body, r.hash FROM records_fts x CROSS JOIN records r ON r.seq = x.rowid
       WHERE ${where.clauses.join(' AND ')} AND x.rowid >= ? AND x.rowid < ? ORDER BY x.rowid DESC LIMIT ?`,
    );
    const lowest = this.#seqRange()?.lo ?? 0;
    const out: Row[] = [];
    let hi = before;
    let width = Math.max(2048, need * 16);
    while (out.length < need && hi > lowest) {
      const lo = Math.max(lowest, hi - width);
      out.push(...(stmt.all(...where.params, lo, hi, need - out.length) as unknown as Row[]));
      hi = lo;
      width *= 8;
    }
    return out;
  }

  /** Records matching the filter (all of them when it is empty). */
  count(filter: AuditFilter = {}): number {
    const f = parseOr(AuditFilterSchema, filter);
    const where = this.#where(f, undefined);
    this.#indexForQuery();
    return where === null ? 0 : this.#count(where);
  }

  /**
   * What a page says of its length: exact for a time window (a seq range) or nothing, else matches
   * counted up to AUDIT_COUNT_CAP, stopping there.
   */
  #boundedCount(where: Where, f: AuditFilter, before: number | undefined): { total: number; total_capped: boolean } {
    const facetFree = !where.fts && f.outcome === undefined && f.kind === undefined && f.tier === undefined && f.tool === undefined && f.user === undefined;
    const range = this.#seqRange();
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
      const all = this.#where(f, undefined)!;
      const sum = (this.#db.prepare(`SELECT coalesce(sum(n), 0) AS n FROM facet_counts c WHERE ${all.clauses.join(' AND ')}`).get(...all.params) as { n: number }).n;
      const after =
        before === undefined || !range || before > range.hi
          ? 0
          : (this.#db.prepare(`SELECT count(*) AS n FROM facets c WHERE ${[...all.clauses, 'c.seq >= ?'].join(' AND ')}`).get(...all.params, before) as { n: number }).n;
      return { total: sum - after, total_capped: false };
    }
    const inner = where.fts
      ? `SELECT 1 FROM records_fts x WHERE ${where.clauses.join(' AND ')} LIMIT ?`
      : `SELECT 1 FROM facets c WHERE ${where.clauses.join(' AND ') || '1'} LIMIT ?`;
    const n = (this.#db.prepare(`SELECT count(*) AS n FROM (${inner})`).get(...where.params, AUDIT_COUNT_CAP + 1) as { n: number }).n;
    return n > AUDIT_COUNT_CAP ? { total: AUDIT_COUNT_CAP, total_capped: true } : { total: n, total_capped: false };
  }

  /** Oldest and newest seq; two queries because SQLite answers a lone min() or max() from the index. */
  #seqRange(db: DatabaseSync = this.#db): { lo: number; hi: number } | null {
    const lo = (db.prepare('SELECT min(seq) AS s FROM records').get() as { s: number | null }).s;
    const hi = (db.prepare('SELECT max(seq) AS s FROM records').get() as { s: number | null }).s;
    return lo === null || hi === null ? null : { lo, hi };
  }

  #count(where: Where): number {
    if (!where.fts && where.clauses.length === 0) {
      // The chain keeps seq contiguous above the retention boundary, so no scan is needed.
      const range = this.#seqRange();
      return range ? range.hi - range.lo + 1 : 0;
    }
    const sql = where.fts
      ? `SELECT count(*) AS n FROM records_fts x WHERE ${where.clauses.join(' AND ')}`
      : `SELECT count(*) AS n FROM facets c WHERE ${where.clauses.join(' AND ') || '1'}`;
    return (this.#db.prepare(sql).get(...where.params) as { n: number }).n;
  }

  /**
   * Records oldest first, for export and forwarding. Reads through its own connection inside one read
   * transaction, so a long export sees one consistent snapshot while appends continue.
   */
  *iterate(filter: AuditFilter = {}): Generator<StoredAuditRecord> {
    const f = parseOr(AuditFilterSchema, filter);
    if (Object.values(f).some((v) => v !== undefined)) this.#indexForQuery();
    else this.#flushIndex();
    const reader = new DatabaseSync(this.path, { readOnly: true });
    try {
      reader.exec('BEGIN');
      const where = this.#where(f, undefined, reader);
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
    const agg = this.#db.prepare('SELECT count(*) AS n, min(seq) AS lo, max(seq) AS hi, min(at_ms) AS a0, max(at_ms) AS a1 FROM records').get() as {
      n: number;
      lo: number | null;
      hi: number | null;
      a0: number | null;
      a1: number | null;
    };
    const byOutcome: Record<string, number> = {};
    this.#indexForQuery();
    const countOutcome = this.#db.prepare('SELECT count(*) AS n FROM facets WHERE outcome = ?');
    for (const o of OUTCOMES) {
      const n = (countOutcome.get(o) as { n: number }).n;
      if (n > 0) byOutcome[o] = n;
    }
    const head = this.#headStmt.get() as ChainHead | undefined;
    const cp = this.#db.prepare('SELECT seq, at_ms, anchored_at_ms FROM checkpoints ORDER BY seq DESC LIMIT 1').get() as
      | { seq: number; at_ms: number; anchored_at_ms: number | null }
      | undefined;
    let dbBytes = 0;
    for (const suffix of ['', '-wal']) {
      try {
        dbBytes += statSync(this.path + suffix).size;
      } catch {
        // absent -wal is normal
      }
    }
    const boundary = this.#boundary();
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

  head(): ChainHead | null {
    const h = this.#headStmt.get() as ChainHead | undefined;
    return h ? { seq: h.seq, hash: h.hash } : (this.#boundary() ?? null);
  }

  /**
   * Walks the whole chain oldest first (streamed, one row in memory at a time) and names the first
   * record edited, deleted or reordered; then checks the local signed checkpoints and the given anchors,
   * which is what catches a chain re-hashed from some point on, or cut short.
   */
  async verify(options: VerifyOptions = {}): Promise<VerifyResult> {
    // Its own connection and read transaction: one consistent snapshot, read in batches that yield to
    // the event loop, so calls keep being recorded while a large store is checked.
    const reader = new DatabaseSync(this.path, { readOnly: true });
    try {
      reader.exec('BEGIN');
      return await this.#verify(reader, options);
    } finally {
      reader.close();
    }
  }

  async #verify(db: DatabaseSync, options: VerifyOptions): Promise<VerifyResult> {
    const boundary = this.#boundary(db);
    let expected = (boundary?.seq ?? 0) + 1;
    let prevHash = boundary?.hash ?? GENESIS_HASH;
    let checked = 0;
    let problem: VerifyProblem | undefined;
    let head: ChainHead | null = boundary ? { seq: boundary.seq, hash: boundary.hash } : null;
    // Records up to indexed_through must have a facets row that agrees with them: the timeline's
    // filters read facets, so an edit there would hide a record from a filtered view.
    const indexedThrough = Number(this.#meta('indexed_through', db) ?? 0);
    const batch = db.prepare(
      `SELECT r.seq, r.at_ms, r.kind, r.outcome, r.tier, r.tool, r.user_sub, r.body, r.hash, c.seq AS c_seq, c.at_ms AS c_at_ms,
              c.kind AS c_kind, c.outcome AS c_outcome, c.tier AS c_tier, c.tool AS c_tool, c.user_sub AS c_user_sub
       FROM records r LEFT JOIN facets c ON c.seq = r.seq WHERE r.seq > ? ORDER BY r.seq LIMIT 5000`,
    );
    let after = Number.MIN_SAFE_INTEGER;
    while (!problem) {
      const rows = batch.all(after) as unknown as VerifyRow[];
      if (rows.length === 0) break;
      for (const row of rows) {
        problem = this.#checkRow(db, row, expected, prevHash, row.seq <= indexedThrough);
        if (problem) break;
        checked++;
        prevHash = row.hash;
        head = { seq: row.seq, hash: row.hash };
        expected = row.seq + 1;
      }
      after = rows[rows.length - 1]!.seq;
      await new Promise<void>((r) => setImmediate(r));
    }
    let checkpointsChecked = 0;
    let anchorsChecked = 0;
    if (!problem) {
      const key = options.publicKey ?? this.#keys?.publicKey ?? this.#storedPublicKey(db);
      const local = db.prepare('SELECT jws FROM checkpoints ORDER BY seq').all() as { jws: string }[];
      for (const { jws } of local) {
        if (!key) break;
        problem = await this.#checkCheckpoint(db, jws, key, head, boundary, 'local checkpoint');
        if (problem) break;
        checkpointsChecked++;
      }
      for (const jws of problem ? [] : (options.anchors ?? [])) {
        if (!key) throw new AppError('AUDIT_FAILED', 'Anchors can only be checked with the install public key.');
        problem = await this.#checkCheckpoint(db, jws, key, head, boundary, 'anchor');
        if (problem) break;
        anchorsChecked++;
      }
    }
    return {
      ok: !problem,
      checked,
      firstBad: problem ? { seq: problem.seq, reason: problem.message, kind: problem.kind } : null,
      anchored: anchorsChecked > 0,
      verifiedAt: new Date(this.#now()).toISOString(),
      head,
      checkpoints_checked: checkpointsChecked,
      anchors_checked: anchorsChecked,
    };
  }

  #checkRow(
    db: DatabaseSync,
    row: VerifyRow,
    expected: number,
    prevHash: string,
    indexed: boolean,
  ): VerifyProblem | undefined {
    if (row.seq > expected) {
      return { kind: 'deleted', seq: expected, message: `Record ${expected} is missing: the chain jumps to ${row.seq}.` };
    }
    let body: Omit<StoredAuditRecord, 'hash'>;
    try {
      body = JSON.parse(row.body) as Omit<StoredAuditRecord, 'hash'>;
    } catch {
      return { kind: 'edited', seq: row.seq, message: `Record ${row.seq} is unreadable: it was edited.` };
    }
    if (sha256(row.body) !== row.hash) {
      return { kind: 'edited', seq: row.seq, message: `Record ${row.seq} was edited: its content no longer matches its hash.` };
    }
    if (body.seq !== row.seq) {
      const movedHere = body.seq;
      const ownElsewhere = db.prepare("SELECT seq FROM records WHERE json_extract(body, '$.seq') = ? AND seq <> ?").get(row.seq, row.seq);
      if (ownElsewhere || movedHere < row.seq) {
        return { kind: 'reordered', seq: row.seq, message: `Record ${row.seq} was reordered: record ${movedHere} stands in its place.` };
      }
      return { kind: 'deleted', seq: row.seq, message: `Record ${row.seq} is missing: record ${movedHere} was renumbered into its place.` };
    }
    if (
      row.at_ms !== Date.parse(body.at) ||
      row.kind !== body.kind ||
      row.outcome !== body.outcome ||
      row.tier !== (body.tier ?? null) ||
      row.tool !== (body.tool ?? null) ||
      row.user_sub !== (body.user?.sub ?? null)
    ) {
      return { kind: 'edited', seq: row.seq, message: `Record ${row.seq} was edited: its indexed fields disagree with its hashed content.` };
    }
    if (
      indexed &&
      (row.c_seq === null ||
        row.c_at_ms !== row.at_ms ||
        row.c_kind !== row.kind ||
        row.c_outcome !== row.outcome ||
        row.c_tier !== row.tier ||
        row.c_tool !== row.tool ||
        row.c_user_sub !== row.user_sub)
    ) {
      return { kind: 'edited', seq: row.seq, message: `Record ${row.seq} was edited: its entry in the timeline's filters disagrees with its hashed content.` };
    }
    if (body.prev_hash !== prevHash) {
      const previous = row.seq - 1;
      return {
        kind: 'edited',
        seq: previous,
        message: `Record ${previous} was edited or replaced: record ${row.seq} chains to a different hash.`,
      };
    }
    return undefined;
  }

  async #checkCheckpoint(
    db: DatabaseSync,
    jws: string,
    key: NonNullable<VerifyOptions['publicKey']> | InstallKeys['publicKey'],
    head: ChainHead | null,
    boundary: ChainHead | undefined,
    what: string,
  ): Promise<VerifyProblem | undefined> {
    let cp;
    try {
      cp = await verifyCheckpoint(jws, key);
    } catch {
      return { kind: 'checkpoint_invalid', seq: head?.seq ?? 0, message: `A ${what} does not carry a valid signature of this install.` };
    }
    if (!head || cp.seq > head.seq) {
      const from = (head?.seq ?? 0) + 1;
      return {
        kind: 'truncated',
        seq: from,
        message: `Records from ${from} on are missing: a ${what} signed ${new Date(cp.at_ms).toISOString()} attests record ${cp.seq}.`,
      };
    }
    let actual: string | undefined;
    if (boundary && cp.seq <= boundary.seq) {
      if (cp.seq !== boundary.seq) return undefined; // removed by retention: nothing left to compare
      actual = boundary.hash;
    } else {
      actual = (db.prepare('SELECT hash FROM records WHERE seq = ?').get(cp.seq) as { hash: string } | undefined)?.hash;
    }
    if (actual !== cp.hash) {
      return {
        kind: 'rewritten',
        seq: cp.seq,
        message: `Record ${cp.seq} differs from the ${what} signed ${new Date(cp.at_ms).toISOString()}: the chain was rewritten at or before it.`,
      };
    }
    return undefined;
  }

  /**
   * Signs the current head with the install key, keeps it, and POSTs it to the anchor receiver when one
   * is configured (best effort: a failed POST is reported, not thrown).
   */
  async checkpoint(): Promise<CheckpointResult> {
    if (!this.#keys || this.#opts.readOnly) throw new AppError('AUDIT_READ_ONLY', 'Checkpoints need the install key and a writable store.');
    const head = this.head();
    if (!head) throw new AppError('AUDIT_FAILED', 'There is nothing to checkpoint yet.');
    const signed = await signCheckpoint({ ...head, at_ms: this.#now() }, this.#keys.privateKey, this.#keys.kid);
    if (this.#closed) return { checkpoint: signed, anchored: false, error: { code: 'AUDIT_FAILED', message: 'The audit store is closed.' } };
    this.#db
      .prepare('INSERT INTO checkpoints (seq, hash, at_ms, jws) VALUES (?, ?, ?, ?) ON CONFLICT (seq) DO UPDATE SET hash = excluded.hash, at_ms = excluded.at_ms, jws = excluded.jws')
      .run(signed.seq, signed.hash, signed.at_ms, signed.jws);
    if (!this.#opts.anchorUrl) return { checkpoint: signed, anchored: false };
    try {
      await postAnchor(this.#opts.anchorUrl, signed, this.#opts.fetch);
      if (!this.#closed) this.#db.prepare('UPDATE checkpoints SET anchored_at_ms = ? WHERE seq = ?').run(this.#now(), signed.seq);
      return { checkpoint: signed, anchored: true };
    } catch (e) {
      return { checkpoint: signed, anchored: false, error: AppError.from(e, 'AUDIT_ANCHOR_FAILED').toWire() };
    }
  }

  /** Signed checkpoints kept locally, oldest first. */
  checkpoints(): SignedCheckpoint[] {
    return this.#db.prepare('SELECT seq, hash, at_ms, jws FROM checkpoints ORDER BY seq').all() as unknown as SignedCheckpoint[];
  }

  /**
   * Retention by age and/or count. Refuses on a chain that does not verify (pruning would destroy the
   * evidence). Keeps the last removed record's `(seq, hash)` as the boundary the rest chains from, and
   * appends a `system` record saying what was removed, so the removal is itself in the chain.
   */
  async prune(options: PruneOptions): Promise<PruneResult> {
    if (!this.#insert) throw new AppError('AUDIT_READ_ONLY', 'This audit store was opened for reading only.');
    let cutoff = 0;
    if (options.maxAgeMs !== undefined) {
      this.#indexForQuery();
      const row = this.#db.prepare('SELECT max(seq) AS s FROM facets WHERE at_ms < ?').get(this.#now() - options.maxAgeMs) as { s: number | null };
      cutoff = Math.max(cutoff, row.s ?? 0);
    }
    if (options.keepLast !== undefined) {
      const head = this.#headStmt.get() as ChainHead | undefined;
      if (head) cutoff = Math.max(cutoff, head.seq - options.keepLast);
    }
    const first = (this.#db.prepare('SELECT min(seq) AS s FROM records').get() as { s: number | null }).s;
    if (first === null || cutoff < first) return { removed: 0, through: null };
    const check = await this.verify();
    if (!check.ok) throw new AppError('AUDIT_TAMPERED', `Retention refused: ${check.firstBad!.reason}`);
    let removed = 0;
    let through!: ChainHead;
    let note!: StoredAuditRecord;
    this.#indexForQuery();
    this.#tx(() => {
      through = this.#db.prepare('SELECT seq, hash FROM records WHERE seq = ?').get(cutoff) as unknown as ChainHead;
      removed = Number(this.#db.prepare('DELETE FROM records WHERE seq <= ?').run(cutoff).changes);
      this.#db.prepare('DELETE FROM records_fts WHERE rowid <= ?').run(cutoff);
      this.#db.prepare('DELETE FROM facets WHERE seq <= ?').run(cutoff);
      this.#db.exec(`DELETE FROM facet_counts; ${FACET_COUNTS_FROM_FACETS}`);
      this.#setMeta('pruned_seq', String(through.seq));
      this.#setMeta('pruned_hash', through.hash);
      note = this.#appendInTx(
        {
          kind: 'system',
          outcome: 'info',
          user: null,
          summary: `Retention removed ${removed} records through ${through.seq}; the chain continues from its hash ${through.hash}.`,
        },
        {},
      );
    });
    this.#scheduleIndex();
    this.#emit(note);
    return { removed, through: { seq: through.seq, hash: through.hash } };
  }

  /** Waits for background checkpoints, then closes the database. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await Promise.allSettled([...this.#pending]);
    this.#flushIndex();
    this.#closed = true;
    this.#listeners.clear();
    try {
      // Keeps the planner's statistics current so each filter keeps choosing its (filter, seq) index.
      if (!this.#opts.readOnly) this.#db.exec('PRAGMA optimize');
    } finally {
      this.#db.close();
    }
  }

  /**
   * A filter as SQL. With a search, the filter columns are terms of the full-text query too (see
   * search.ts), so a search within an outcome, a tool or a user is one FTS5 query and never joins
   * facets match by match (a common word within an outcome took ~0.5 s at a million records that way).
   */
  #where(
    f: AuditFilter,
    before: number | undefined,
    db: DatabaseSync = this.#db,
  ): Where | null {
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

  #tx(fn: () => void): void {
    if (this.#closed) throw new AppError('AUDIT_FAILED', 'The audit store is closed.');
    this.#db.exec('BEGIN IMMEDIATE');
    const pendingIndex = this.#indexPending.length;
    try {
      fn();
      this.#db.exec('COMMIT');
    } catch (e) {
      if (this.#db.isTransaction) this.#db.exec('ROLLBACK');
      // The index rows of records this transaction did not keep (a full disk at COMMIT) must not be
      // written later, under sequence numbers the next records will take.
      this.#indexPending.length = pendingIndex;
      throw e instanceof AppError ? e : AppError.from(e, 'AUDIT_FAILED', 'The audit record could not be written.');
    }
  }

  #emit(record: StoredAuditRecord): void {
    for (const l of this.#listeners) {
      try {
        l(record);
      } catch {
        // a listener's failure must not undo or block a committed record
      }
    }
  }

  #track(p: Promise<unknown>): void {
    const q = p.catch(() => undefined).finally(() => this.#pending.delete(q));
    this.#pending.add(q);
  }

  #meta(key: string, db: DatabaseSync = this.#db): string | undefined {
    return (db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined)?.value;
  }

  #setMeta(key: string, value: string): void {
    this.#db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run(key, value);
  }

  #boundary(db: DatabaseSync = this.#db): (ChainHead & { at_ms: number }) | undefined {
    const seq = this.#meta('pruned_seq', db);
    const hash = this.#meta('pruned_hash', db);
    return seq && hash ? { seq: Number(seq), hash, at_ms: 0 } : undefined;
  }

  #storedPublicKey(db: DatabaseSync = this.#db): JWK | undefined {
    const s = this.#meta('public_jwk', db);
    return s ? (JSON.parse(s) as JWK) : undefined;
  }
}

export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

function toRecord(row: Row): StoredAuditRecord {
  return { ...(JSON.parse(row.body) as Omit<StoredAuditRecord, 'hash'>), hash: row.hash } as StoredAuditRecord;
}

function toMs(v: string): number {
  const ms = Date.parse(v);
  if (!Number.isFinite(ms)) throw new AppError('INPUT_INVALID', 'A time filter is not a valid date.');
  return ms;
}

function parseOr<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const r = schema.safeParse(value);
  if (!r.success) {
    throw new AppError('INPUT_INVALID', `The audit query is malformed at: ${r.error.issues.map((i) => i.path.join('.') || '(query)').join(', ')}.`);
  }
  return r.data;
}

/** A filter as SQL: its clauses and parameters, whether it searches text, and the seq bounds of its time window. */
interface Where {
  clauses: string[];
  params: SQLInputValue[];
  fts: boolean;
  seq: { from?: number; to?: number };
}

interface IndexRow {
  seq: number;
  at_ms: number;
  kind: string;
  outcome: string;
  tier: number | null;
  tool: string | null;
  user_sub: string | null;
  user: { sub: string; name?: string; email?: string } | null;
  text: string;
}

/** The derived rows of a record: its filter columns, its search text and its user. */
function indexRow(r: Omit<StoredAuditRecord, 'hash'>): IndexRow {
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
