import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import type { JWK } from 'jose';
import type { AuditRecordInput } from '../../../common/audit-record.ts';
import type { AuditFilter, AuditPageRequest } from '../../../common/contract.ts';
import { AppError } from '../../../common/errors.ts';
import type { AuditSink } from '../ports.ts';
import { privateDatabase } from '../data-dir.ts';
import { postAnchor, signCheckpoint } from './checkpoint.ts';
import type { SignedCheckpoint } from './checkpoint.ts';
import { StoreDb } from './db.ts';
import { DerivedIndex } from './derived-index.ts';
import { loadInstallKeys } from './install-keys.ts';
import type { InstallKeys } from './install-keys.ts';
import { Queries } from './queries.ts';
import { Redactor } from './redact.ts';
import { prune } from './retention.ts';
import { migrate } from './schema.ts';
import { DB_FILE } from './types.ts';
import type {
  AppendOptions,
  AuditPage,
  AuditStats,
  AuditStoreOptions,
  ChainHead,
  CheckpointResult,
  PageOptions,
  PruneOptions,
  PruneResult,
  StoredAuditRecord,
  VerifyOptions,
  VerifyResult,
} from './types.ts';
import { Verifier } from './verifier.ts';
import { Writer } from './writer.ts';

export * from './types.ts';

/**
 * The tamper-evident audit store: one SQLite database (`node:sqlite`) in WAL mode with
 * `synchronous=FULL`, so a record whose `append()` has resolved survives a crash of the process and
 * of the machine (NORMAL in WAL mode survives a process crash but may lose the last commits on power
 * loss, which an audit log cannot afford).
 *
 * A facade over its parts: the writer (append, group commit, the hash chain), the derived index
 * (filters and full-text search, written behind the durable commit), the queries (pages, counts,
 * search, stats), the verifier (over a read-only connection) and retention. `verify()` names the first
 * record edited, deleted or reordered; signed checkpoints, and above all those kept off the machine
 * (anchors), are what detect a fully re-hashed or truncated chain.
 */
export class AuditStore implements AuditSink {
  readonly path: string;
  readonly #s: StoreDb;
  readonly #opts: AuditStoreOptions;
  readonly #keys: InstallKeys | undefined;
  readonly #now: () => number;
  readonly #index: DerivedIndex;
  readonly #writer: Writer;
  readonly #queries: Queries;
  readonly #verifier: Verifier;
  /** Checkpoints signed in the background, awaited by close(). */
  readonly #pending = new Set<Promise<unknown>>();
  readonly #redactor: Redactor | undefined;

  private constructor(db: DatabaseSync, path: string, opts: AuditStoreOptions, keys: InstallKeys | undefined) {
    this.path = path;
    this.#opts = opts;
    this.#keys = keys;
    this.#now = opts.now ?? Date.now;
    this.#s = new StoreDb(db, path);
    const readOnly = opts.readOnly ?? false;
    this.#index = new DerivedIndex(this.#s, readOnly);
    const every = opts.checkpointEvery;
    this.#redactor = keys ? new Redactor(opts.redaction, keys.hmacKey) : undefined;
    this.#writer = new Writer(this.#s, this.#index, {
      redactor: this.#redactor,
      readOnly,
      now: this.#now,
      checkpointDue: (seq) => {
        if (every && seq % every === 0) queueMicrotask(() => this.#track(this.checkpoint()));
      },
    });
    this.#queries = new Queries(this.#s, this.#index);
    this.#verifier = new Verifier(path, keys, this.#now);
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
    if (!opts.readOnly) store.#index.catchUp();
    return store;
  }

  /** Writes the deferred index rows now rather than at the next timer (the benchmark times this work). */
  flushIndex(): void {
    this.#index.flush();
  }

  /** The install's public key (JWK, `kid` = RFC 7638 thumbprint): what a receiver needs to check checkpoints and SETs. */
  publicKeyJwk(): JWK {
    if (this.#keys) return { ...this.#keys.publicJwk };
    const stored = this.#s.meta('public_jwk');
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
  /**
   * With `redaction.onSecret: 'refuse'`, where `value` (a call's arguments, before the call runs)
   * carries what a record would be refused for; empty otherwise.
   */
  refusals(value: Record<string, unknown>, options: AppendOptions = {}): string[] {
    return this.#redactor?.refusals(value, options.knownSecrets) ?? [];
  }

  append(record: AuditRecordInput, options: AppendOptions = {}): Promise<StoredAuditRecord> {
    return this.#writer.append(record, options);
  }

  /** Appends several records in one transaction (imports, bulk fills); the chain is the same as one by one. */
  appendMany(records: readonly AuditRecordInput[], options: AppendOptions = {}): StoredAuditRecord[] {
    return this.#writer.appendMany(records, options);
  }

  appendSync(record: AuditRecordInput, options: AppendOptions = {}): StoredAuditRecord {
    return this.#writer.appendSync(record, options);
  }

  /** Live updates: called after each record commits. Returns the unsubscribe function. */
  onAppend(listener: (record: StoredAuditRecord) => void): () => void {
    return this.#writer.onAppend(listener);
  }

  /** See Queries.hasCallRecord: whether a call's record was already written. */
  hasCallRecord(sessionId: string, requestId: string | number, sinceMs: number): boolean {
    return this.#queries.hasCallRecord(sessionId, requestId, sinceMs);
  }

  get(seq: number): StoredAuditRecord | null {
    return this.#queries.get(seq);
  }

  /** The newest records first (common/contract.ts `audit.page`), with the count the list shows. */
  page(request: AuditPageRequest = {}, options: PageOptions = {}): AuditPage {
    return this.#queries.page(request, options);
  }

  /** Records matching the filter (all of them when it is empty). */
  count(filter: AuditFilter = {}): number {
    return this.#queries.count(filter);
  }

  /** Records oldest first, for export and forwarding, from one consistent snapshot. */
  iterate(filter: AuditFilter = {}): Generator<StoredAuditRecord> {
    return this.#queries.iterate(filter);
  }

  stats(): AuditStats {
    return this.#queries.stats();
  }

  head(): ChainHead | null {
    return this.#s.head();
  }

  /** Walks the whole chain and the checkpoints (see Verifier), over a read-only connection. */
  verify(options: VerifyOptions = {}): Promise<VerifyResult> {
    return this.#verifier.verify(options);
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
    const db = this.#s.db;
    if (this.#s.closed) return { checkpoint: signed, anchored: false, error: { code: 'AUDIT_FAILED', message: 'The audit store is closed.' } };
    db.prepare('INSERT INTO checkpoints (seq, hash, at_ms, jws) VALUES (?, ?, ?, ?) ON CONFLICT (seq) DO UPDATE SET hash = excluded.hash, at_ms = excluded.at_ms, jws = excluded.jws').run(
      signed.seq,
      signed.hash,
      signed.at_ms,
      signed.jws,
    );
    if (!this.#opts.anchorUrl) return { checkpoint: signed, anchored: false };
    try {
      await postAnchor(this.#opts.anchorUrl, signed, this.#opts.fetch);
      if (!this.#s.closed) db.prepare('UPDATE checkpoints SET anchored_at_ms = ? WHERE seq = ?').run(this.#now(), signed.seq);
      return { checkpoint: signed, anchored: true };
    } catch (e) {
      return { checkpoint: signed, anchored: false, error: AppError.from(e, 'AUDIT_ANCHOR_FAILED').toWire() };
    }
  }

  /** Signed checkpoints kept locally, oldest first. */
  checkpoints(): SignedCheckpoint[] {
    return this.#s.db.prepare('SELECT seq, hash, at_ms, jws FROM checkpoints ORDER BY seq').all() as unknown as SignedCheckpoint[];
  }

  /** Retention by age and/or count (see retention.ts); refuses on a chain that does not verify. */
  prune(options: PruneOptions): Promise<PruneResult> {
    return prune({ s: this.#s, index: this.#index, writer: this.#writer, verify: () => this.verify(), now: this.#now }, options);
  }

  /** Waits for background checkpoints, then closes the database. */
  async close(): Promise<void> {
    if (this.#s.closed) return;
    await Promise.allSettled([...this.#pending]);
    this.#index.flush();
    this.#s.closed = true;
    this.#writer.clearListeners();
    try {
      // Keeps the planner's statistics current so each filter keeps choosing its (filter, seq) index.
      if (!this.#opts.readOnly) this.#s.db.exec('PRAGMA optimize');
    } finally {
      this.#s.db.close();
    }
  }

  #track(p: Promise<unknown>): void {
    const q = p.catch(() => undefined).finally(() => this.#pending.delete(q));
    this.#pending.add(q);
  }
}
