import { useState, type ReactNode } from 'react';
import type { FindingView, SetupState } from '../../../common/contract.ts';
import { isManaged, valueAt } from '../../../common/dotted-path.ts';
import { Badge, ErrorNote } from '../components/common.tsx';
import { useAction, useQuery, useTransport } from '../lib/use-app.ts';

/** The form's fields, by the dotted path of the configuration they fill. */
interface Draft {
  'idp.issuer': string;
  'idp.clientId': string;
  'idp.delegation': 'rar' | 'scopes';
  'idp.dynamicRegistration': boolean;
  'idp.resource': string;
  'vault.address': string;
  'vault.authMount': string;
  policyFile: string;
  'postgres.host': string;
  'postgres.port': string;
  'postgres.database': string;
}

const EMPTY: Draft = {
  'idp.issuer': '',
  'idp.clientId': '',
  'idp.delegation': 'rar',
  'idp.dynamicRegistration': false,
  'idp.resource': '',
  'vault.address': '',
  'vault.authMount': 'jwt',
  policyFile: '',
  'postgres.host': '',
  'postgres.port': '5432',
  'postgres.database': '',
};

const isLoopbackHttp = (url: string): boolean => {
  try {
    const u = new URL(url);
    return u.protocol === 'http:' && (u.hostname === '127.0.0.1' || u.hostname === '[::1]');
  } catch {
    return false;
  }
};

/** The configuration file the draft stands for: only what the person filled, the schema's defaults for the rest. */
function toConfig(d: Draft): Record<string, unknown> {
  return {
    idp: {
      issuer: d['idp.issuer'].trim(),
      clientId: d['idp.clientId'].trim(),
      delegation: d['idp.delegation'],
      dynamicRegistration: d['idp.dynamicRegistration'] ? 'when-offered' : 'off',
      ...(d['idp.resource'].trim() ? { resource: d['idp.resource'].trim() } : {}),
      ...(isLoopbackHttp(d['idp.issuer']) ? { allowInsecureHttpForLoopbackOnly: true } : {}),
    },
    vault: {
      address: d['vault.address'].trim(),
      authMount: d['vault.authMount'].trim(),
      ...(isLoopbackHttp(d['vault.address']) ? { allowInsecureHttpForLoopbackOnly: true } : {}),
    },
    policyFile: d.policyFile.trim(),
    ...(d['postgres.host'].trim()
      ? { postgres: { host: d['postgres.host'].trim(), port: Number(d['postgres.port']), database: d['postgres.database'].trim() } }
      : {}),
  };
}

const TONE = { ok: 'ok', warn: 'warn', fail: 'bad', skip: 'muted' } as const;

function Findings({ label, findings }: { label: string; findings: FindingView[] }) {
  return (
    <ul aria-label={label} className="findings">
      {findings.map((f, i) => (
        <li key={i}>
          <Badge tone={TONE[f.status]}>{f.status}</Badge> {f.says}
          {f.fix && <span className="muted"> {f.fix}</span>}
        </li>
      ))}
    </ul>
  );
}

/** First run: nothing is configured. Each step says what it found before the next is asked. */
export function SetupScreen({ onSaved }: { onSaved(): void }) {
  const transport = useTransport();
  const state = useQuery('setup.get', {});
  const [draft, setDraft] = useState<Draft>(EMPTY);
  const [discovered, setDiscovered] = useState<{ findings: FindingView[] } | null>(null);
  const [checked, setChecked] = useState<{ valid: boolean; findings: FindingView[] } | null>(null);
  const discover = useAction();
  const check = useAction();
  const save = useAction();
  const managed = state.data?.managed ?? null;

  const set = <K extends keyof Draft>(key: K, value: Draft[K]) => {
    setDraft((d) => ({ ...d, [key]: value }));
    setChecked(null);
  };
  const field = (key: Exclude<keyof Draft, 'idp.delegation' | 'idp.dynamicRegistration'>, label: string, hint?: ReactNode) => {
    const own = managedValue(managed, key);
    return (
      <label className="field">
        <span>{label}</span>
        {own !== undefined ? (
          <>
            <input value={String(own)} disabled aria-describedby={`managed-${key}`} />
            <span id={`managed-${key}`} className="small muted">
              Managed by your organisation ({managed!.where}).
            </span>
          </>
        ) : (
          <input value={draft[key]} onChange={(e) => set(key, e.target.value)} spellCheck={false} />
        )}
        {hint && <span className="small muted">{hint}</span>}
      </label>
    );
  };

  return (
    <section aria-labelledby="setup-title" className="screen setup">
      <h1 id="setup-title">Set up Countersign</h1>
      <p>
        Nothing is configured yet. Give your identity provider, Vault and the targets Claude may reach; each step is checked the way{' '}
        <span className="mono">countersign doctor</span> checks it, and the configuration is written to{' '}
        <span className="mono">{state.data?.file ?? '…'}</span>, readable by you alone.
      </p>
      <ErrorNote error={state.error} />
      {managed && (
        <p role="note" aria-label="Managed settings">
          Your organisation manages {managed.fields.join(', ')} ({managed.where}): those fields are shown and cannot be changed here.
        </p>
      )}

      <form
        aria-label="Identity provider"
        onSubmit={(e) => {
          e.preventDefault();
          void discover.run(async () => {
            const found = await transport.call('setup.discover', { issuer: draft['idp.issuer'].trim() });
            setDiscovered(found);
            // Registration offered: this install can become its own confidential client, as token exchange often needs.
            const registration = found.findings.find((f) => f.check === 'registration');
            if (registration) set('idp.dynamicRegistration', /is offered/.test(registration.says));
          });
        }}
      >
        <h2>1. Identity provider</h2>
        {field('idp.issuer', 'Issuer URL', 'Exactly as your identity provider publishes it.')}
        <button type="submit" disabled={discover.busy}>
          {discover.busy ? 'Reading its discovery…' : 'Check the identity provider'}
        </button>
        <ErrorNote error={discover.error} />
        {discovered && <Findings label="Identity provider findings" findings={discovered.findings} />}
      </form>

      {discovered && (
        <form
          aria-label="Client, Vault and targets"
          onSubmit={(e) => {
            e.preventDefault();
            void check.run(async () => setChecked(await transport.call('setup.check', { config: toConfig(draft) })));
          }}
        >
          <h2>2. Client and delegation</h2>
          {field('idp.clientId', 'Client ID')}
          <label className="field">
            <span>Delegation profile</span>
            <select value={draft['idp.delegation']} onChange={(e) => set('idp.delegation', e.target.value as Draft['idp.delegation'])}>
              <option value="rar">rar: the identity provider grants each call’s authorization details</option>
              <option value="scopes">scopes: it grants one scope per credential (Keycloak, Okta)</option>
            </select>
          </label>
          <label className="check">
            <input
              type="checkbox"
              checked={draft['idp.dynamicRegistration']}
              onChange={(e) => set('idp.dynamicRegistration', e.target.checked)}
            />{' '}
            Register this install as its own client when the identity provider offers registration
          </label>
          {field('idp.resource', 'Resource of your own sign-in token (optional)')}
          <h2>3. Vault</h2>
          {field('vault.address', 'Vault address')}
          {field('vault.authMount', 'JWT auth mount')}
          <h2>4. Targets</h2>
          {field('policyFile', 'Policy file', 'The file that names each tool and table and its tier.')}
          {field('postgres.host', 'PostgreSQL host')}
          {field('postgres.port', 'PostgreSQL port')}
          {field('postgres.database', 'PostgreSQL database')}
          <button type="submit" disabled={check.busy}>
            {check.busy ? 'Checking…' : 'Check the configuration'}
          </button>
          <ErrorNote error={check.error} />
          {checked && <Findings label="Configuration findings" findings={checked.findings} />}
        </form>
      )}

      {checked?.valid && (
        <div>
          <h2>5. Save</h2>
          <p>
            {checked.findings.some((f) => f.status === 'fail')
              ? 'Some checks failed: you may still save, and fix them after, but calls that need them will be refused.'
              : 'Every check that needs no sign-in passed. After you save, sign in: the first call shows the exchange works.'}
          </p>
          <button
            type="button"
            className="primary"
            disabled={save.busy}
            onClick={() =>
              void save.run(async () => {
                await transport.call('setup.save', { config: toConfig(draft) });
                // The app now runs on the saved configuration: this page goes on with it (sign-in next).
                onSaved();
              })
            }
          >
            {save.busy ? 'Saving…' : 'Save and continue'}
          </button>
          <ErrorNote error={save.error} />
        </div>
      )}
    </section>
  );
}

/** The organisation's value for a field the form shows, when it manages it (or anything above it). */
function managedValue(managed: SetupState['managed'], key: string): unknown {
  if (!managed || !isManaged(managed.fields, key)) return undefined;
  return valueAt(managed.values, key);
}
