import type { StatementSync } from 'node:sqlite';
import { AuditRecordInputSchema } from '../../../common/audit-record.ts';
import type { AuditRecordInput } from '../../../common/audit-record.ts';
import { canonicalJson } from '../../../common/canonical-json.ts';
import { AppError } from '../../../common/errors.ts';
import type { StoreDb } from './db.ts';
import type { DerivedIndex } from './derived-index.ts';
import type { Redactor } from './redact.ts';
import { GENESIS_HASH, sha256 } from './types.ts';
import type { AppendOptions, StoredAuditRecord } from './types.ts';

type Listener = (record: StoredAuditRecord) => void;

interface PendingAppend {
  record: AuditRecordInput;
  options: AppendOptions;
  resolve(r: StoredAuditRecord): void;
  reject(e: AppError): void;
}

/**
 * Writes records: each validated, redacted and chained (`hash = SHA-256(canonical JSON of the record
 * with seq, at and prev_hash)`), committed with synchronous=FULL, its derived rows queued for the
 * index, and its listeners told once it is durable.
 */
export class Writer {
  readonly #s: StoreDb;
  readonly #index: DerivedIndex;
  readonly #redactor: Redactor | undefined;
  readonly #now: () => number;
  /** Told the seq of each record written, to sign a checkpoint every so many. */
  readonly #checkpointDue: ((seq: number) => void) | undefined;
  readonly #insert: StatementSync | undefined;
  readonly #listeners = new Set<Listener>();
  #batch: PendingAppend[] = [];

  constructor(
    s: StoreDb,
    index: DerivedIndex,
    o: { redactor: Redactor | undefined; readOnly: boolean; now: () => number; checkpointDue?: (seq: number) => void },
  ) {
    this.#s = s;
    this.#index = index;
    this.#redactor = o.redactor;
    this.#now = o.now;
    this.#checkpointDue = o.checkpointDue;
    if (!o.readOnly) {
      this.#insert = s.db.prepare(
        'INSERT INTO records (seq, at_ms, kind, outcome, tier, tool, user_sub, body, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
      );
    }
  }

  get writable(): boolean {
    return this.#insert !== undefined;
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
      this.#s.tx(() => {
        for (const item of batch) {
          try {
            done.push({ item, stored: this.appendInTx(item.record, item.options) });
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
    this.#index.schedule();
    for (const d of done) {
      if (d.stored) {
        this.emit(d.stored);
        d.item.resolve(d.stored);
      } else d.item.reject(d.error!);
    }
  }

  /** Appends several records in one transaction (imports, bulk fills); the chain is the same as one by one. */
  appendMany(records: readonly AuditRecordInput[], options: AppendOptions = {}): StoredAuditRecord[] {
    const out: StoredAuditRecord[] = [];
    this.#s.tx(() => {
      for (const r of records) out.push(this.appendInTx(r, options));
    });
    this.#index.flush();
    for (const r of out) this.emit(r);
    return out;
  }

  appendSync(record: AuditRecordInput, options: AppendOptions = {}): StoredAuditRecord {
    let stored!: StoredAuditRecord;
    this.#s.tx(() => {
      stored = this.appendInTx(record, options);
    });
    this.#index.schedule();
    this.emit(stored);
    return stored;
  }

  appendInTx(input: AuditRecordInput, options: AppendOptions): StoredAuditRecord {
    if (!this.#insert || !this.#redactor) {
      throw new AppError('AUDIT_READ_ONLY', 'This audit store was opened for reading only.');
    }
    const parsed = serialisable(() => AuditRecordInputSchema.safeParse(input));
    if (!parsed.success) {
      const where = parsed.error.issues.map((i) => i.path.join('.') || '(record)').join(', ');
      throw new AppError('INPUT_INVALID', `The audit record is malformed at: ${where}.`);
    }
    const { value, redacted } = serialisable(() => this.#redactor!.scrubRecord(parsed.data as Record<string, unknown>, options.knownSecrets));
    const head = this.#s.headRow();
    const base = head ?? this.#s.boundary() ?? { seq: 0, hash: GENESIS_HASH, at_ms: 0 };
    const seq = base.seq + 1;
    const atMs = Math.max(this.#now(), head?.at_ms ?? 0);
    const unhashed = {
      ...value,
      seq,
      at: new Date(atMs).toISOString(),
      prev_hash: base.hash,
      ...(redacted.length > 0 ? { redacted } : {}),
    } as Omit<StoredAuditRecord, 'hash'>;
    const body = serialisable(() => canonicalJson(unhashed));
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
    this.#index.add(unhashed);
    // What get() would return: the redacted copy (plain objects throughout) with its hash.
    const stored = { ...unhashed, hash } as StoredAuditRecord;
    this.#checkpointDue?.(seq);
    return stored;
  }

  /** Live updates: called after each record commits. Returns the unsubscribe function. */
  onAppend(listener: Listener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Stops telling listeners. */
  clearListeners(): void {
    this.#listeners.clear();
  }

  emit(record: StoredAuditRecord): void {
    for (const l of this.#listeners) {
      try {
        l(record);
      } catch {
        // a listener's failure must not undo or block a committed record
      }
    }
  }
}

/**
 * Runs a step that walks the record (validation, redaction, serialisation): a record it cannot walk
 * (nested past the stack, a value JSON has no form for) is refused as malformed, like one that does not
 * validate, rather than failing the batch it was in. Each such step runs before its row is written.
 */
function serialisable<T>(step: () => T): T {
  try {
    return step();
  } catch (error) {
    if (error instanceof AppError) throw error;
    throw new AppError('INPUT_INVALID', 'The audit record could not be serialised (it nests too deeply, or holds a value JSON has no form for).', { cause: error });
  }
}
