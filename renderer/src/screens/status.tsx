import type { Status } from '../../../common/contract.ts';
import { Badge, ErrorNote, formatTime } from '../components/common.tsx';
import { useAction, useTransport } from '../lib/use-app.ts';

const STATE_TONE = { ok: 'ok', unreachable: 'bad', sealed: 'bad', unknown: 'muted' } as const;
const STATE_TEXT = { ok: 'Reachable', unreachable: 'Unreachable', sealed: 'Sealed', unknown: 'Unknown' } as const;
const VAULT_TONE = { ok: 'ok', standby: 'warn', sealed: 'bad', uninitialized: 'bad', unreachable: 'bad', unknown: 'muted' } as const;
const VAULT_TEXT = {
  ok: 'Unsealed',
  standby: 'Standby',
  sealed: 'Sealed',
  uninitialized: 'Not initialized',
  unreachable: 'Unreachable',
  unknown: 'Checking…',
} as const;

export function StatusScreen({ status }: { status: Status }) {
  const transport = useTransport();
  const signOut = useAction();
  return (
    <section aria-labelledby="status-title" className="screen">
      <h1 id="status-title">Status</h1>
      <div className="cards">
        <article className="card" aria-label="Signed-in user">
          <h2>Signed in</h2>
          {status.user ? (
            <>
              <p className="big">{status.user.name ?? status.user.sub}</p>
              <p className="muted">{status.user.email ?? status.user.sub}</p>
              <button type="button" onClick={() => void signOut.run(() => transport.call('session.signOut', {}))} disabled={signOut.busy}>
                Sign out
              </button>
              <ErrorNote error={signOut.error} />
            </>
          ) : (
            <p>Nobody is signed in.</p>
          )}
        </article>
        <article className="card" aria-label="Identity provider">
          <h2>Identity provider</h2>
          <p className="mono break">{status.idp.issuer}</p>
          <Badge tone={STATE_TONE[status.idp.state]}>{STATE_TEXT[status.idp.state]}</Badge>
          <p data-testid="delegation-profile">
            {status.idp.delegation === 'scopes'
              ? 'Delegation: scopes. Your identity provider decides each call by the credential’s scope; the call’s details are shown and recorded here, not checked by it.'
              : 'Delegation: rar. Your identity provider decides each call from its full description (authorization details).'}
          </p>
        </article>
        <article className="card" aria-label="Vault">
          <h2>Vault</h2>
          <p className="mono break">{status.vault.address}</p>
          <Badge tone={VAULT_TONE[status.vault.state]}>{VAULT_TEXT[status.vault.state]}</Badge>
          {status.vault.version && <p className="muted small">Vault {status.vault.version}, from its health endpoint</p>}
        </article>
        <article className="card" aria-label="Calls">
          <h2>Calls</h2>
          <p className="big">{status.calls}</p>
          <p className="muted">tool call{status.calls === 1 ? '' : 's'} on the audit timeline</p>
        </article>
        <article className="card" aria-label="Claude Desktop">
          <h2>Claude Desktop</h2>
          <p>
            <Badge tone={status.claudeDesktop.connected ? 'ok' : 'muted'}>{status.claudeDesktop.connected ? 'Connected' : 'Not connected'}</Badge>{' '}
            <Badge tone={status.claudeDesktop.configured ? 'info' : 'warn'}>{status.claudeDesktop.configured ? 'Configured' : 'Not configured'}</Badge>
          </p>
          {status.pendingApprovals > 0 && <p className="warn-text">{status.pendingApprovals} call(s) waiting for your approval</p>}
        </article>
      </div>
      <h2 id="sessions-title">Bridge sessions</h2>
      {status.bridgeSessions.length === 0 ? (
        <p className="muted">No MCP client is connected.</p>
      ) : (
        <table className="table" aria-labelledby="sessions-title">
          <thead>
            <tr>
              <th scope="col">Client (self-described)</th>
              <th scope="col">Process</th>
              <th scope="col">Connected</th>
              <th scope="col">Calls</th>
            </tr>
          </thead>
          <tbody>
            {status.bridgeSessions.map((s) => (
              <tr key={s.id}>
                <td>
                  {s.clientName ?? 'unknown'} {s.clientVersion ?? ''}
                </td>
                <td className="mono">{s.pid ?? '—'}</td>
                <td>{formatTime(s.connectedAt)}</td>
                <td>{s.calls}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <p className="muted small">
        Countersign {status.version} · {status.host === 'headless' ? 'headless (countersign serve)' : 'desktop'}
      </p>
    </section>
  );
}
