import type { DatabaseSync, StatementSync } from 'node:sqlite';
import type { JWK } from 'jose';
import { AppError } from '../../../common/errors.ts';
import type { ChainHead } from './types.ts';

/** What the `meta` table says under `key`. */
export function readMeta(db: DatabaseSync, key: string): string | undefined {
  return (db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined)?.value;
}

/** The last record removed by retention, whose hash the remaining chain starts from. */
export function prunedBoundary(db: DatabaseSync): (ChainHead & { at_ms: number }) | undefined {
  const seq = readMeta(db, 'pruned_seq');
  const hash = readMeta(db, 'pruned_hash');
  return seq && hash ? { seq: Number(seq), hash, at_ms: 0 } : undefined;
}

export function storedPublicKey(db: DatabaseSync): JWK | undefined {
  const s = readMeta(db, 'public_jwk');
  return s ? (JSON.parse(s) as JWK) : undefined;
}

/** Oldest and newest seq; two queries because SQLite answers a lone min() or max() from the index. */
export function seqRange(db: DatabaseSync): { lo: number; hi: number } | null {
  const lo = (db.prepare('SELECT min(seq) AS s FROM records').get() as { s: number | null }).s;
  const hi = (db.prepare('SELECT max(seq) AS s FROM records').get() as { s: number | null }).s;
  return lo === null || hi === null ? null : { lo, hi };
}

/**
 * The store's own connection, shared by its parts: whether it is closed, the chain's head, and the
 * write transaction every change goes through.
 */
export class StoreDb {
  readonly db: DatabaseSync;
  readonly path: string;
  closed = false;
  /** Called when a write transaction rolls back (the derived index drops what it queued inside it). */
  onRollback: (() => () => void) | undefined;
  readonly #headStmt: StatementSync;
  #setMetaStmt: StatementSync | undefined;
  // Prepared once: every append and every index flush runs them.
  readonly #begin: StatementSync;
  readonly #commit: StatementSync;

  constructor(db: DatabaseSync, path: string) {
    this.db = db;
    this.path = path;
    this.#headStmt = db.prepare('SELECT seq, hash, at_ms FROM records ORDER BY seq DESC LIMIT 1');
    this.#begin = db.prepare('BEGIN IMMEDIATE');
    this.#commit = db.prepare('COMMIT');
  }

  /** The newest record's place in the chain and its time. */
  headRow(): (ChainHead & { at_ms: number }) | undefined {
    return this.#headStmt.get() as (ChainHead & { at_ms: number }) | undefined;
  }

  /** The chain's head: the newest record, or the retention boundary when none is left. */
  head(): ChainHead | null {
    const h = this.headRow();
    return h ? { seq: h.seq, hash: h.hash } : (this.boundary() ?? null);
  }

  meta(key: string): string | undefined {
    return readMeta(this.db, key);
  }

  setMeta(key: string, value: string): void {
    this.#setMetaStmt ??= this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value');
    this.#setMetaStmt.run(key, value);
  }

  boundary(): (ChainHead & { at_ms: number }) | undefined {
    return prunedBoundary(this.db);
  }

  tx(fn: () => void): void {
    if (this.closed) throw new AppError('AUDIT_FAILED', 'The audit store is closed.');
    this.#begin.run();
    const undo = this.onRollback?.();
    try {
      fn();
      this.#commit.run();
    } catch (e) {
      if (this.db.isTransaction) this.db.exec('ROLLBACK');
      undo?.();
      throw e instanceof AppError ? e : AppError.from(e, 'AUDIT_FAILED', 'The audit record could not be written.');
    }
  }
}
