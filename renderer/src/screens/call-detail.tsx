import { useEffect, useRef } from 'react';
import type { AuditRecord, Hop } from '../../../common/audit-record.ts';
import { Badge, CopyButton, ErrorNote, JsonBlock, OUTCOME_TONE, VisibleText, formatMs, formatTime } from '../components/common.tsx';
import { useQuery } from '../lib/use-app.ts';

const HOP_LABEL: Record<Hop['name'], string> = {
  validate: 'Validate arguments',
  classify: 'Classify',
  approval: 'Approval',
  exchange: 'Token exchange',
  step_up: 'Step-up',
  vault_login: 'Vault login',
  vault_creds: 'Vault credential',
  execute: 'Execute',
  revoke: 'Revoke',
  revoke_check: 'Check revoked',
};

const HOP_TONE: Record<Hop['outcome'], 'ok' | 'warn' | 'bad' | 'info' | 'muted'> = {
  ok: 'ok',
  cached: 'info',
  skipped: 'muted',
  denied: 'warn',
  timeout: 'warn',
  cancelled: 'muted',
  error: 'bad',
};

const KEY_LABEL: Record<string, string> = {
  mcp_request_id: 'MCP request id',
  mcp_session_id: 'MCP session',
  obo_jti: 'OBO jti',
  vault_request_id: 'Vault request_id',
  vault_accessor: 'Vault accessor',
  lease_id: 'Lease id',
  db_role: 'Database role',
  upstream_request_id: 'Upstream request id',
};

/** Hops laid end to end, each bar as long as its share of the call. */
export function Waterfall({ hops }: { hops: Hop[] }) {
  const total = hops.reduce((n, h) => n + h.ms, 0) || 1;
  let start = 0;
  return (
    <ol className="waterfall" aria-label="Hops with durations">
      {hops.map((h, i) => {
        const left = (start / total) * 100;
        const width = Math.max(0.5, (h.ms / total) * 100);
        start += h.ms;
        return (
          <li key={i} className="hop" aria-label={`${HOP_LABEL[h.name]}: ${h.outcome}, ${formatMs(h.ms)}`}>
            <span className="hop-name">{HOP_LABEL[h.name]}</span>
            <span className="hop-track">
              <span className={`hop-bar tone-${HOP_TONE[h.outcome]}`} style={{ left: `${left}%`, width: `${width}%` }} />
            </span>
            <span className="hop-ms mono">{formatMs(h.ms)}</span>
            <Badge tone={HOP_TONE[h.outcome]}>{h.outcome}</Badge>
            {(h.code || h.detail) && (
              <span className="hop-detail small">
                {h.code && <span className="mono">{h.code}</span>} {h.detail && <VisibleText text={h.detail} keepNewlines={false} />}
              </span>
            )}
          </li>
        );
      })}
    </ol>
  );
}

function DetailBody({ r }: { r: AuditRecord }) {
  const approval = r.hops.find((h) => h.name === 'approval');
  const keys = Object.entries(r.keys).filter(([, v]) => v !== undefined && v !== '');
  return (
    <>
      <dl className="kv">
        <dt>Outcome</dt>
        <dd>
          <Badge tone={OUTCOME_TONE[r.outcome] ?? 'muted'}>{r.outcome}</Badge> {r.demo && <span className="lab-tag">lab</span>}
        </dd>
        <dt>When</dt>
        <dd>
          {formatTime(r.at)} {r.duration_ms !== undefined && <>· {formatMs(r.duration_ms)}</>}
        </dd>
        <dt>User</dt>
        <dd>{r.user ? `${r.user.name ?? r.user.sub} (${r.user.email ?? r.user.sub})` : '—'}</dd>
        <dt>Through</dt>
        <dd>
          {r.client?.name ?? 'unknown client'} {r.client?.version ?? ''} {r.client?.pid ? `· pid ${r.client.pid}` : ''}{' '}
          <span className="muted small">(self-described)</span>
        </dd>
        {r.tool && (
          <>
            <dt>Tool</dt>
            <dd className="mono">
              <VisibleText text={r.tool} keepNewlines={false} />
            </dd>
          </>
        )}
        {r.tier !== undefined && (
          <>
            <dt>Tier</dt>
            <dd>{r.tier}</dd>
          </>
        )}
        {r.target && (
          <>
            <dt>Target</dt>
            <dd className="mono break">
              <VisibleText text={r.target} keepNewlines={false} />
            </dd>
          </>
        )}
        {r.delegation && (
          <>
            <dt>Delegation</dt>
            <dd>{r.delegation === 'scopes' ? 'scopes: the identity provider decided at scope level' : 'rar: the identity provider decided on the authorization details'}</dd>
          </>
        )}
        <dt>Approval</dt>
        <dd>{approval ? `${approval.outcome}${approval.ms ? ` after ${formatMs(approval.ms)}` : ''}` : 'not asked'}</dd>
        {r.summary && (
          <>
            <dt>Summary</dt>
            <dd>
              <VisibleText text={r.summary} />
            </dd>
          </>
        )}
      </dl>
      {r.error && (
        <p className="error-note" role="note">
          <strong className="mono">{r.error.code}</strong> <VisibleText text={r.error.message} />
        </p>
      )}
      {r.hops.length > 0 && (
        <>
          <h3>Hops</h3>
          <Waterfall hops={r.hops} />
        </>
      )}
      <h3>Join keys</h3>
      {keys.length ? (
        <table className="table keys" aria-label="Join keys">
          <tbody>
            {keys.map(([k, v]) => (
              <tr key={k}>
                <th scope="row">{KEY_LABEL[k] ?? k}</th>
                <td className="mono break">
                  <VisibleText text={String(v)} keepNewlines={false} />
                </td>
                <td>
                  <CopyButton value={String(v)} label={KEY_LABEL[k] ?? k} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <p className="muted">None.</p>
      )}
      {r.authorization_details && (
        <>
          <h3>Authorization details (RAR)</h3>
          <JsonBlock value={r.authorization_details} label="Authorization details as canonical JSON" />
        </>
      )}
      {r.args && (
        <>
          <h3>Arguments</h3>
          <JsonBlock value={r.args} label="Arguments as canonical JSON" />
        </>
      )}
      <p className="muted small mono break">
        #{r.seq} · hash {r.hash.slice(0, 16)}… · previous {r.prev_hash.slice(0, 16)}…
      </p>
    </>
  );
}

export function CallDetail({ seq, onClose }: { seq: number; onClose(): void }) {
  const record = useQuery('audit.get', { seq });
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => heading.current?.focus(), [seq]);
  return (
    <aside
      className="detail-pane"
      aria-labelledby="detail-title"
      onKeyDown={(e) => {
        if (e.key === 'Escape') onClose();
      }}
    >
      <header className="row">
        <h2 id="detail-title" ref={heading} tabIndex={-1}>
          Call #{seq}
        </h2>
        <span className="spacer" />
        <button type="button" aria-label="Close call detail" onClick={onClose}>
          Close
        </button>
      </header>
      <ErrorNote error={record.error} />
      {record.data && <DetailBody r={record.data} />}
    </aside>
  );
}
