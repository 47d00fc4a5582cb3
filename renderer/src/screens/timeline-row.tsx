/** One row of the timeline's list: a record's summary, or a placeholder while its page loads. */
import type { AuditRecord } from '../../../common/audit-record.ts';
import { Badge, OUTCOME_TONE, formatMs, formatTime } from '../components/common.tsx';

export function TimelineRow({ record: r }: { record: AuditRecord | undefined }) {
  return r ? (
    <>
      <span className="mono muted">{r.seq}</span>
      <span>{formatTime(r.at)}</span>
      <span className="mono ellipsis">{r.tool ?? r.kind}</span>
      <span>{r.tier ?? '—'}</span>
      <span className="ellipsis">{r.user?.name ?? r.user?.sub ?? '—'}</span>
      <span>
        <Badge tone={OUTCOME_TONE[r.outcome] ?? 'muted'}>{r.outcome}</Badge>
        {r.demo && <span className="lab-tag">lab</span>}
      </span>
      <span className="mono">{r.duration_ms !== undefined ? formatMs(r.duration_ms) : ''}</span>
    </>
  ) : (
    <span className="muted">…</span>
  );
}
