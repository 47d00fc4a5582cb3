import { useEffect, useState } from 'react';
import { BOUND_VALUES_KEY } from '../../../common/approval-view.ts';
import type { CachedApproval, PendingApproval, Status } from '../../../common/contract.ts';
import { Badge, ErrorNote, JsonBlock, VisibleText, formatTime } from '../components/common.tsx';
import { useAction, useQuery, useTransport } from '../lib/use-app.ts';
import { hasInvisible } from '../lib/visible-text.ts';

function useNow(intervalMs: number): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), intervalMs);
    return () => clearInterval(t);
  }, [intervalMs]);
  return now;
}

/** One line per RAR entry: type, actions, where, what. */
export function rarSummary(details: Record<string, unknown>[]): string[] {
  return details.map((d) => {
    const list = (v: unknown) => (Array.isArray(v) ? v.map(String).join(', ') : typeof v === 'string' ? v : '');
    const parts = [String(d.type ?? 'unknown')];
    if (d.actions) parts.push(list(d.actions));
    if (d.locations) parts.push(`at ${list(d.locations)}`);
    if (d.identifier) parts.push(`on ${list(d.identifier)}`);
    for (const [k, v] of Object.entries(d)) {
      if (['type', 'actions', 'locations', 'identifier'].includes(k)) continue;
      if (Array.isArray(v) || typeof v === 'string' || typeof v === 'number') parts.push(`${k}: ${list(v) || String(v)}`);
    }
    return parts.join(' · ');
  });
}

/**
 * What will run, whole: a SQL call's statement and the values bound to $1, $2… in order, or the exact
 * bytes of any other call. Read from the bytes the digest covers; the arguments only say which layout
 * applies, so an upstream tool whose arguments merely look like a statement is shown as its bytes.
 */
export function whatWillRun(p: Pick<PendingApproval, 'args' | 'bytes'>): { statement: string; values?: unknown[] } {
  const statement = p.args.statement;
  const values = p.args[BOUND_VALUES_KEY];
  if (typeof statement === 'string') {
    if (values === undefined && p.bytes === statement) return { statement };
    try {
      const b = JSON.parse(p.bytes) as { sql?: unknown; params?: unknown };
      if (b.sql === statement && Array.isArray(b.params) && JSON.stringify(b.params) === JSON.stringify(values)) return { statement, values: b.params };
    } catch {
      // the bytes are not a statement with values: shown as they are
    }
  }
  return { statement: p.bytes };
}

function PendingCard({ p, host, now }: { p: PendingApproval; host: Status['host']; now: number }) {
  const transport = useTransport();
  const act = useAction();
  const left = Math.max(0, Math.round((Date.parse(p.expiresAt) - now) / 1000));
  const run = whatWillRun(p);
  const suspicious = hasInvisible(p.bytes) || hasInvisible(JSON.stringify(p.args));
  return (
    <article className={`card approval tier-${p.tier}`} aria-labelledby={`ap-${p.id}`} data-testid="pending-approval">
      <header className="row">
        <h3 id={`ap-${p.id}`}>
          <span className="mono">
            <VisibleText text={p.tool} keepNewlines={false} />
          </span>
        </h3>
        <Badge tone={p.tier === 3 ? 'bad' : 'warn'} label={`Tier ${p.tier}`}>
          Tier {p.tier}
        </Badge>
        <span className="muted small" aria-label="Time left">
          Denied automatically in {left} s
        </span>
      </header>
      <dl className="kv">
        <dt>Target</dt>
        <dd className="mono break">
          <VisibleText text={p.target} keepNewlines={false} />
        </dd>
        <dt>Why asked</dt>
        <dd>
          <VisibleText text={p.reason} keepNewlines={false} />
        </dd>
        <dt>Requested by</dt>
        <dd>
          {p.client?.name ?? 'unknown client'} {p.client?.pid ? `(pid ${p.client.pid})` : ''} · {formatTime(p.requestedAt)}
        </dd>
        <dt>Authorization</dt>
        <dd>
          <ul className="plain">
            {rarSummary(p.authorization_details).map((line, i) => (
              <li key={i}>
                <VisibleText text={line} keepNewlines={false} />
              </li>
            ))}
          </ul>
        </dd>
      </dl>
      {suspicious && (
        <p className="warn-text" role="note">
          This call contains invisible or direction-changing characters, shown as ⟦…⟧ below.
        </p>
      )}
      <h4>What will run</h4>
      {/* Whole, never cut: the box scrolls (and takes keyboard focus to scroll without a mouse). */}
      <pre className="code run" aria-label="What will run" dir="ltr" tabIndex={0}>
        <VisibleText text={run.statement} />
      </pre>
      {run.values && (
        <>
          <h4>Values bound to it ({run.values.length})</h4>
          <ol className="code run bound-values" aria-label="Values bound to it" tabIndex={0}>
            {run.values.map((v, i) => (
              <li key={i}>
                <span className="muted">${i + 1} = </span>
                <VisibleText text={JSON.stringify(v)} keepNewlines={false} />
              </li>
            ))}
          </ol>
        </>
      )}
      <h4>Arguments</h4>
      <JsonBlock value={p.args} label="Arguments as canonical JSON" />
      <p className="muted small mono">sha256 {p.digest.slice(0, 16)}…</p>
      <div className="actions">
        <button
          type="button"
          className="danger"
          autoFocus
          disabled={act.busy}
          onClick={() => void act.run(() => transport.call('approvals.deny', { id: p.id }))}
        >
          Deny
        </button>
        {host === 'headless' ? (
          <button
            type="button"
            className="primary"
            disabled={act.busy}
            onClick={() => void act.run(() => transport.call('approvals.decide', { id: p.id, decision: 'approve', digest: p.digest }))}
          >
            Approve
          </button>
        ) : (
          <span className="muted small">Approve in the Countersign dialog.</span>
        )}
      </div>
      <ErrorNote error={act.error} />
    </article>
  );
}

function CachedRow({ c }: { c: CachedApproval }) {
  const transport = useTransport();
  const act = useAction();
  return (
    <tr>
      <td className="mono">{c.tool}</td>
      <td>
        {c.statementClass} on <span className="mono">{c.targets.join(', ')}</span>
        {c.rowCeiling !== undefined && <> · up to {c.rowCeiling} rows</>}
        {c.changes && c.changes.length > 0 && (
          <div className="muted small">
            changes: <span className="mono">{c.changes.join(', ')}</span>
          </div>
        )}
      </td>
      <td>{formatTime(c.expiresAt)}</td>
      <td>{c.uses}</td>
      <td>
        <button type="button" aria-label={`Revoke approval for ${c.tool} ${c.statementClass}`} disabled={act.busy} onClick={() => void act.run(() => transport.call('approvals.revoke', { id: c.id }))}>
          Revoke
        </button>
        <ErrorNote error={act.error} />
      </td>
    </tr>
  );
}

export function ApprovalsScreen({ host }: { host: Status['host'] }) {
  const pending = useQuery('approvals.pending', {}, ['approvals.changed']);
  const cached = useQuery('approvals.cached', {}, ['approvals.changed']);
  const now = useNow(1000);
  return (
    <section aria-labelledby="approvals-title" className="screen">
      <h1 id="approvals-title">Approvals</h1>
      <ErrorNote error={pending.error ?? cached.error} />
      <h2>Waiting for you</h2>
      <div aria-live="polite">
        {pending.data?.length ? (
          <div className="approval-list">
            {pending.data.map((p) => (
              <PendingCard key={p.id} p={p} host={host} now={now} />
            ))}
          </div>
        ) : (
          <p className="muted">No call is waiting for approval.</p>
        )}
      </div>
      <h2 id="cached-title">Standing approvals</h2>
      <p className="muted small">A tier-2 approval covers writes of the same class to the same tables, under its row ceiling, for 30 minutes.</p>
      {cached.data?.length ? (
        <table className="table" aria-labelledby="cached-title">
          <thead>
            <tr>
              <th scope="col">Tool</th>
              <th scope="col">Covers</th>
              <th scope="col">Until</th>
              <th scope="col">Used</th>
              <th scope="col">
                <span className="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {cached.data.map((c) => (
              <CachedRow key={c.id} c={c} />
            ))}
          </tbody>
        </table>
      ) : (
        <p className="muted">None.</p>
      )}
    </section>
  );
}
