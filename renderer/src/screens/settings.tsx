import { isManaged } from '../../../common/dotted-path.ts';
import { Badge, ErrorNote } from '../components/common.tsx';
import { ConfigEditor } from './config-editor.tsx';
import { useAction, useQuery, useTransport } from '../lib/use-app.ts';
import type { Theme } from '../lib/theme.ts';

function Managed({ fields, path }: { fields: readonly string[] | undefined; path: string }) {
  return isManaged(fields ?? [], path) ? (
    <>
      {' '}
      <Badge tone="info">Managed by your organisation</Badge>
    </>
  ) : null;
}

export function SettingsScreen({ theme, setTheme }: { theme: Theme; setTheme(t: Theme): void }) {
  const transport = useTransport();
  const settings = useQuery('settings.get', {}, ['status.changed']);
  const connect = useAction();
  const s = settings.data;
  return (
    <section aria-labelledby="settings-title" className="screen">
      <h1 id="settings-title">Settings</h1>
      <ErrorNote error={settings.error} />
      <fieldset className="card">
        <legend>Appearance</legend>
        <label>
          Theme{' '}
          <select value={theme} onChange={(e) => setTheme(e.target.value as Theme)} aria-label="Theme">
            <option value="system">Same as the system</option>
            <option value="light">Light</option>
            <option value="dark">Dark</option>
          </select>
        </label>
      </fieldset>
      {s && (
        <>
          {s.managed && (
            <p className="card" role="note" aria-label="Managed settings">
              Your organisation manages the settings marked below ({s.managed.fields.join(', ')}), from{' '}
              <span className="mono break">{s.managed.where}</span>. They cannot be changed here, and your own
              configuration does not override them.
            </p>
          )}
          <div className="cards">
            <article className="card" aria-label="Identity provider settings">
              <h2>Identity provider</h2>
              <dl className="kv">
                <dt>Issuer</dt>
                <dd className="mono break">
                  {s.idp.issuer}
                  <Managed fields={s.managed?.fields} path="idp.issuer" />
                </dd>
                <dt>Client</dt>
                <dd className="mono">
                  {s.idp.clientId}
                  <Managed fields={s.managed?.fields} path="idp.clientId" />
                </dd>
                <dt>Scopes</dt>
                <dd className="mono">
                  {s.idp.scopes.join(' ')}
                  <Managed fields={s.managed?.fields} path="idp.scopes" />
                </dd>
                <dt>DPoP</dt>
                <dd>{s.idp.dpop ? 'Tokens are bound to this install’s key' : 'Bearer tokens'}</dd>
              </dl>
            </article>
            <article className="card" aria-label="Vault settings">
              <h2>Vault</h2>
              <dl className="kv">
                <dt>Address</dt>
                <dd className="mono break">
                  {s.vault.address}
                  <Managed fields={s.managed?.fields} path="vault.address" />
                </dd>
                <dt>JWT auth mount</dt>
                <dd className="mono">
                  {s.vault.authMount}
                  <Managed fields={s.managed?.fields} path="vault.authMount" />
                </dd>
                <dt>Roles</dt>
                <dd className="mono">{s.vault.roles.join(', ') || '—'}</dd>
              </dl>
            </article>
            <article className="card" aria-label="Claude Desktop settings">
              <h2>Claude Desktop</h2>
              <p>
                <Badge tone={s.claudeDesktop.configured ? 'ok' : 'warn'}>
                  {s.claudeDesktop.configured ? 'Configured' : 'Not configured'}
                </Badge>
              </p>
              {s.claudeDesktop.configPath && <p className="mono break small">{s.claudeDesktop.configPath}</p>}
              <button
                type="button"
                disabled={connect.busy}
                onClick={() =>
                  void connect.run(async () => {
                    const r = await transport.call('claude.connect', {});
                    settings.reload();
                    return r;
                  })
                }
              >
                Connect Claude Desktop
              </button>
              <ErrorNote error={connect.error} />
            </article>
          </div>
          <ConfigEditor />
          <h2 id="policy-title">
            Policy (read-only)
            <Managed fields={s.managed?.fields} path="policyFile" />
          </h2>
          <p className="mono small">{s.policy.path}</p>
          <pre className="code policy" aria-labelledby="policy-title" tabIndex={0}>
            {s.policy.text}
          </pre>
          <p className="muted small">
            Data: <span className="mono">{s.dataDir}</span>
          </p>
        </>
      )}
    </section>
  );
}
