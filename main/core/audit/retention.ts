import { AppError } from '../../../common/errors.ts';
import type { StoreDb } from './db.ts';
import type { DerivedIndex } from './derived-index.ts';
import { FACET_COUNTS_FROM_FACETS } from './schema.ts';
import type { ChainHead, PruneOptions, PruneResult, StoredAuditRecord, VerifyResult } from './types.ts';
import type { Writer } from './writer.ts';

/** What retention works with: the connection, the index it keeps in step, the writer of its note. */
export interface RetentionParts {
  s: StoreDb;
  index: DerivedIndex;
  writer: Writer;
  verify(): Promise<VerifyResult>;
  now(): number;
}

/**
 * Retention by age and/or count. Refuses on a chain that does not verify (pruning would destroy the
 * evidence). Keeps the last removed record's `(seq, hash)` as the boundary the rest chains from, and
 * appends a `system` record saying what was removed, so the removal is itself in the chain.
 */
export async function prune(p: RetentionParts, options: PruneOptions): Promise<PruneResult> {
  if (!p.writer.writable) throw new AppError('AUDIT_READ_ONLY', 'This audit store was opened for reading only.');
  let cutoff = 0;
  if (options.maxAgeMs !== undefined) {
    p.index.forQuery();
    const row = p.s.db.prepare('SELECT max(seq) AS s FROM facets WHERE at_ms < ?').get(p.now() - options.maxAgeMs) as { s: number | null };
    cutoff = Math.max(cutoff, row.s ?? 0);
  }
  if (options.keepLast !== undefined) {
    const head = p.s.headRow();
    if (head) cutoff = Math.max(cutoff, head.seq - options.keepLast);
  }
  const first = (p.s.db.prepare('SELECT min(seq) AS s FROM records').get() as { s: number | null }).s;
  if (first === null || cutoff < first) return { removed: 0, through: null };
  const check = await p.verify();
  if (!check.ok) throw new AppError('AUDIT_TAMPERED', `Retention refused: ${check.firstBad!.reason}`);
  let removed = 0;
  let through!: ChainHead;
  let note!: StoredAuditRecord;
  p.index.forQuery();
  p.s.tx(() => {
    through = p.s.db.prepare('SELECT seq, hash FROM records WHERE seq = ?').get(cutoff) as unknown as ChainHead;
    removed = Number(p.s.db.prepare('DELETE FROM records WHERE seq <= ?').run(cutoff).changes);
    p.s.db.prepare('DELETE FROM records_fts WHERE rowid <= ?').run(cutoff);
    p.s.db.prepare('DELETE FROM facets WHERE seq <= ?').run(cutoff);
    p.s.db.exec(`DELETE FROM facet_counts; ${FACET_COUNTS_FROM_FACETS}`);
    p.s.setMeta('pruned_seq', String(through.seq));
    p.s.setMeta('pruned_hash', through.hash);
    note = p.writer.appendInTx(
      {
        kind: 'system',
        outcome: 'info',
        user: null,
        summary: `Retention removed ${removed} records through ${through.seq}; the chain continues from its hash ${through.hash}.`,
      },
      {},
    );
  });
  p.index.schedule();
  p.writer.emit(note);
  return { removed, through: { seq: through.seq, hash: through.hash } };
}
