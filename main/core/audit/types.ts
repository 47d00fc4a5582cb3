import { hash } from 'node:crypto';
import type { JWK } from 'jose';
import type { AuditRecord } from '../../../common/audit-record.ts';
import type { WireError } from '../../../common/errors.ts';
import type { SecretStore } from '../ports.ts';
import type { SignedCheckpoint } from './checkpoint.ts';
import type { RedactionPolicy } from './redact.ts';

/** The audit store's shapes and constants, shared by its parts (store.ts re-exports them). */

export type StoredAuditRecord = AuditRecord;

/** The `prev_hash` of the first record ever written. */
export const GENESIS_HASH = '0'.repeat(64);

/**
 * A page counts the records its filter matches up to this many (the timeline then says "10,000+"):
 * an exact count costs time in proportion to the matches, so a filter that keeps a third of a million
 * records would make every page of it ~30x slower than at ten thousand. A search counts its matches
 * among this many of the newest records below the page's head (queries.ts #search). A filter that is
 * only a time window, or none, is counted exactly at no cost (seq is contiguous).
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
  /** Values the call held (OBO token, database password): masked wherever they appear, in any encoded form. */
  knownSecrets?: Iterable<string>;
}

/** A page as common/contract.ts's `audit.page` returns it, plus the cursor for the next one. */
export interface AuditPage {
  /** Newest first. */
  records: StoredAuditRecord[];
  /**
   * Records matching the filter below `before` (omitted when `withTotal` is false): exact for filter
   * columns, a time window or nothing; filter columns within a time window are counted up to
   * AUDIT_COUNT_CAP, and a search through the newest AUDIT_COUNT_CAP records (see Queries#search).
   */
  total?: number;
  /**
   * More records match than `total` says: counting stopped at AUDIT_COUNT_CAP matches or, for a
   * search, at the end of its window. `total` is then a floor, always above the page's last row.
   */
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


/** A record's filter columns, as `records` and `facets` hold them. */
export interface FacetValues {
  at_ms: number;
  kind: string;
  outcome: string;
  tier: number | null;
  tool: string | null;
  user_sub: string | null;
}

/** A record as a row of `records`: its canonical JSON and its hash. */
export interface Row {
  seq: number;
  body: string;
  hash: string;
}

export function toRecord(row: Row): StoredAuditRecord {
  return { ...(JSON.parse(row.body) as Omit<StoredAuditRecord, 'hash'>), hash: row.hash } as StoredAuditRecord;
}

export function sha256(text: string): string {
  return hash('sha256', text, 'hex');
}
