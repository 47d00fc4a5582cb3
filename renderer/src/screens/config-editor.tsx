import { useState } from 'react';
import type { ConfigView } from '../../../common/contract.ts';
import { isManaged, valueAt } from '../../../common/dotted-path.ts';
import { Badge, ErrorNote } from '../components/common.tsx';
import { useAction, useQuery, useTransport } from '../lib/use-app.ts';

/** The fields a person changes most, by the dotted path of the configuration; the rest of the file is kept as it is. */
const FIELDS: { path: string; label: string; kind: 'text' | 'number' | 'delegation' }[] = [
  { path: 'idp.issuer', label: 'Issuer URL', kind: 'text' },
  { path: 'idp.clientId', label: 'Client ID', kind: 'text' },
  { path: 'idp.delegation', label: 'Delegation profile', kind: 'delegation' },
  { path: 'idp.exchangeClientId', label: 'Token-exchange client (optional)', kind: 'text' },
  { path: 'vault.address', label: 'Vault address', kind: 'text' },
  { path: 'vault.authMount', label: 'JWT auth mount', kind: 'text' },
  { path: 'policyFile', label: 'Policy file', kind: 'text' },
  { path: 'postgres.host', label: 'PostgreSQL host', kind: 'text' },
  { path: 'postgres.port', label: 'PostgreSQL port', kind: 'number' },
  { path: 'postgres.database', label: 'PostgreSQL database', kind: 'text' },
  { path: 'approvals.timeoutSeconds', label: 'Approval time-out (seconds)', kind: 'number' },
  { path: 'approvals.tier2CacheMinutes', label: 'A write approval covers the same writes for (minutes)', kind: 'number' },
];

const managedField = (view: ConfigView, path: string): boolean => isManaged(view.managed?.fields ?? [], path);

/** What the form sends: only the fields changed; a number field's digits as a number, an emptied field removed. */
function changesOf(edits: Record<string, string>, view: ConfigView): Record<string, string | number | null> {
  const out: Record<string, string | number | null> = {};
  for (const [path, raw] of Object.entries(edits)) {
    const before = valueAt(view.config, path);
    if (raw === String(before ?? '')) continue;
    const kind = FIELDS.find((f) => f.path === path)?.kind;
    const v = raw.trim();
    out[path] = v === '' ? null : kind === 'number' && /^\d+(\.\d+)?$/.test(v) ? Number(v) : v;
  }
  return out;
}

/**
 * The configuration, shown and changed: fields the organisation manages are shown with their value and
 * cannot be edited. A save the app refuses (a bad value, a managed field) says which field and keeps
 * everything typed; a saved change is used from the next start.
 */
export function ConfigEditor() {
  const transport = useTransport();
  const view = useQuery('settings.config', {});
  const [edits, setEdits] = useState<Record<string, string>>({});
  const [saved, setSaved] = useState<string | null>(null);
  const save = useAction();
  const v = view.data;
  if (!v) return <ErrorNote error={view.error} />;
  const pending = changesOf(edits, v);
  return (
    <form
      className="card"
      aria-label="Configuration"
      onSubmit={(e) => {
        e.preventDefault();
        void save.run(async () => {
          const r = await transport.call('settings.save', { changes: pending });
          setEdits({});
          setSaved(r.file);
          view.reload();
        });
      }}
    >
      <h2>Configuration</h2>
      <p className="small muted">
        Written to <span className="mono break">{v.file}</span>, readable by you alone, through a temporary file renamed over it.
      </p>
      {FIELDS.map((f) => {
        const locked = managedField(v, f.path);
        const value = edits[f.path] ?? String(valueAt(v.config, f.path) ?? '');
        const set = (next: string) => {
          setEdits((e) => ({ ...e, [f.path]: next }));
          setSaved(null);
        };
        return (
          <label className="field" key={f.path}>
            <span>
              {f.label} <span className="mono small muted">{f.path}</span>
              {locked && (
                <>
                  {' '}
                  <Badge tone="info">Managed by your organisation</Badge>
                </>
              )}
            </span>
            {f.kind === 'delegation' ? (
              <select value={value} disabled={locked} onChange={(e) => set(e.target.value)}>
                <option value="rar">rar</option>
                <option value="scopes">scopes</option>
              </select>
            ) : (
              <input value={value} disabled={locked} inputMode={f.kind === 'number' ? 'numeric' : undefined} spellCheck={false} onChange={(e) => set(e.target.value)} />
            )}
          </label>
        );
      })}
      <button type="submit" className="primary" disabled={save.busy || Object.keys(pending).length === 0}>
        {save.busy ? 'Saving…' : 'Save the configuration'}
      </button>
      <ErrorNote error={save.error} />
      {saved && (
        <p role="status">
          Saved to <span className="mono break">{saved}</span>. Countersign uses it from its next start.
        </p>
      )}
    </form>
  );
}
