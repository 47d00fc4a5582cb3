import { DatabaseSync } from 'node:sqlite';
import { AppError } from '../../../common/errors.ts';
import { verifyCheckpoint } from './checkpoint.ts';
import { prunedBoundary, readMeta, storedPublicKey } from './db.ts';
import type { InstallKeys } from './install-keys.ts';
import { GENESIS_HASH, sha256 } from './types.ts';
import type { ChainHead, FacetValues, Row, StoredAuditRecord, VerifyOptions, VerifyProblem, VerifyResult } from './types.ts';

interface VerifyRow extends Row, FacetValues {
  c_seq: number | null;
  c_at_ms: number | null;
  c_kind: string | null;
  c_outcome: string | null;
  c_tier: number | null;
  c_tool: string | null;
  c_user_sub: string | null;
}

/**
 * Checks a store's chain over a read-only connection of its own: the store's writes go on meanwhile,
 * and nothing the check does can change the file.
 */
export class Verifier {
  readonly #path: string;
  readonly #keys: InstallKeys | undefined;
  readonly #now: () => number;

  constructor(path: string, keys: InstallKeys | undefined, now: () => number) {
    this.#path = path;
    this.#keys = keys;
    this.#now = now;
  }

  /**
   * Walks the whole chain oldest first (streamed, one row in memory at a time) and names the first
   * record edited, deleted or reordered; then checks the local signed checkpoints and the given anchors,
   * which is what catches a chain re-hashed from some point on, or cut short.
   */
  async verify(options: VerifyOptions = {}): Promise<VerifyResult> {
    // Its own connection and read transaction: one consistent snapshot, read in batches that yield to
    // the event loop, so calls keep being recorded while a large store is checked.
    const reader = new DatabaseSync(this.#path, { readOnly: true });
    try {
      reader.exec('BEGIN');
      return await this.#verify(reader, options);
    } finally {
      reader.close();
    }
  }

  async #verify(db: DatabaseSync, options: VerifyOptions): Promise<VerifyResult> {
    const boundary = prunedBoundary(db);
    let expected = (boundary?.seq ?? 0) + 1;
    let prevHash = boundary?.hash ?? GENESIS_HASH;
    let checked = 0;
    let problem: VerifyProblem | undefined;
    let head: ChainHead | null = boundary ? { seq: boundary.seq, hash: boundary.hash } : null;
    // Records up to indexed_through must have a facets row that agrees with them: the timeline's
    // filters read facets, so an edit there would hide a record from a filtered view.
    const indexedThrough = Number(readMeta(db, 'indexed_through') ?? 0);
    // 500 rows a batch, about 10 ms of checking: a call that arrives meanwhile waits no longer than
    // that, and a batch's rows die young. At 5,000 a batch the core's event loop was held up to ~175 ms
    // at a time and its RSS rose by ~58 MB over a million-record check, against ~28 ms and ~5 MB
    // (docs/benchmarks.md, `audit_verify_1m_s`).
    const batch = db.prepare(
      `SELECT r.seq, r.at_ms, r.kind, r.outcome, r.tier, r.tool, r.user_sub, r.body, r.hash, c.seq AS c_seq, c.at_ms AS c_at_ms,
              c.kind AS c_kind, c.outcome AS c_outcome, c.tier AS c_tier, c.tool AS c_tool, c.user_sub AS c_user_sub
       FROM records r LEFT JOIN facets c ON c.seq = r.seq WHERE r.seq > ? ORDER BY r.seq LIMIT 500`,
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
      const key = options.publicKey ?? this.#keys?.publicKey ?? storedPublicKey(db);
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

}
