import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startBrokerLab, call, DEMO_POLICY, settled, type BrokerLab } from './lab.ts';
import { findSecret, labTokenSource } from './fixtures.ts';
import type { Broker } from '../../../main/core/broker/index.ts';
import { createUpstreamConnectors } from '../../../main/core/connectors/mcp-upstream/index.ts';
import type { AuditRecordInput } from '../../../common/audit-record.ts';
import { AppError } from '../../../common/errors.ts';
import { closeAbortedCalls } from '../../../main/core/broker/aborted-calls.ts';
import { SqliteCallJournal } from '../../../main/core/audit/journal.ts';
import { AuditStore } from '../../../main/core/audit/store.ts';
import { planPostgresCall } from '../../../main/core/connectors/postgres/plan.ts';
import type { ExchangeRequest, TokenExchanger } from '../../../main/core/idp/token-exchange.ts';
import type { TokenSource } from '../../../main/core/ports.ts';
import { MemorySecretStore } from '../../../main/core/secrets/memory-store.ts';
import { leaseRevocationFor, pathAccessFor } from '../../../main/core/vault/agent-mode.ts';
import { createVaultClient, type VaultClient } from '../../../main/core/vault/client.ts';

// Vault Enterprise native agent mode through the broker, against the lab: the OBO goes straight to
// Vault as X-Vault-Token, scoped by its vault:path_access entries; no login, no Vault token.
let lab: BrokerLab;

beforeAll(async () => {
  lab = await startBrokerLab();
});
afterAll(async () => {
  await lab?.stop();
});

const text = (r: { content?: unknown[] }): string => (r.content ?? []).map((c) => (c as { text?: string }).text ?? '').join('\n');
const approveAll = { approve: async () => ({ outcome: 'approved' as const }) };

function vaultAudit(): Array<{ type: string; auth?: { metadata?: Record<string, string> | null }; request?: { path?: string }; error?: string }> {
  return readFileSync(lab.vaultAuditLogPath, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

/** Vault's refusal of an OBO's request, from its audit log (a refusal after the JWT was accepted). */
const vaultErrorFor = (jti: string): string => vaultLinesFor(jti).map((l) => l.error ?? '').join(' ');

/** Vault's own response lines for an OBO, found by the jti it logs as jwt_unique_id. */
const vaultLinesFor = (jti: string) => vaultAudit().filter((e) => e.type === 'response' && e.auth?.metadata?.['jwt_unique_id'] === jti);

function expectAgentHops(record: AuditRecordInput): void {
  const names = record.hops!.map((h) => h.name);
  expect(names).not.toContain('vault_login');
  expect(names.slice(-4)).toEqual(['vault_creds', 'execute', 'revoke', 'revoke_check']);
  expect(record.hops!.every((h) => h.outcome === 'ok' || h.outcome === 'skipped')).toBe(true);
  expect(record.hops!.find((h) => h.name === 'revoke')!.detail).toMatch(/^mode=agent lease revoked with the OBO/);
  expect(record.keys!.vault_accessor).toBeUndefined();
}

describe('agent mode: the OBO is the Vault token', () => {
  it('runs a tier-1 query: one exchange carrying the creds and revoke paths, creds with the OBO, the lease revoked with it, the role gone', async () => {
    const { broker, audit } = lab.broker({ vaultMode: 'agent' });
    const result = await broker.callTool(call('query', { sql: 'SELECT id, full_name FROM patients ORDER BY id' }));
    expect(result.isError, text(result)).toBeFalsy();
    const record = audit.records[0]!;
    expect(record.outcome).toBe('success');
    expectAgentHops(record);
    const keys = record.keys!;
    expect(keys.lease_id).toMatch(/^database\/creds\/clinic-read\//);
    expect(await lab.admin('SELECT 1 FROM pg_roles WHERE rolname = $1', [keys.db_role])).toHaveLength(0);
    expect(await settled(lab)).toEqual({ roles: [], leases: 0 });

    // Vault's audit joins the record by the OBO's jti: the creds read and the revocation, with the actor.
    const lines = vaultLinesFor(keys.obo_jti!);
    expect(lines.map((l) => l.request?.path)).toEqual(['database/creds/clinic-read', 'sys/leases/revoke']);
    for (const l of lines) {
      expect(l.error).toBeUndefined();
      expect(l.auth!.metadata!['actor_entity_name']).toBe('agent-countersign-desktop');
      expect(l.auth!.metadata!['actor_entity_id']).toMatch(/^[0-9a-f-]{36}$/);
      expect(JSON.parse(l.auth!.metadata!['jwt_authorization_details']!)).toContainEqual({ type: 'vault:path_access', path: 'database/creds/clinic-read', capabilities: ['read'] });
    }
  });

  it('runs a tier-2 write with the write role, and leaves no role or lease', async () => {
    const { broker, audit } = lab.broker({ vaultMode: 'agent', approver: approveAll });
    const r = await broker.callTool(call('execute', { sql: 'UPDATE appointments SET status = $1 WHERE id = $2', params: ['scheduled', 1] }));
    expect(r.isError, text(r)).toBeFalsy();
    const record = audit.records[0]!;
    expect(record.tier).toBe(2);
    expectAgentHops(record);
    expect(record.keys!.lease_id).toMatch(/^database\/creds\/clinic-write\//);
    expect(vaultLinesFor(record.keys!.obo_jti!).map((l) => l.request?.path)).toEqual(['database/creds/clinic-write', 'sys/leases/revoke']);
    expect(await settled(lab)).toEqual({ roles: [], leases: 0 });
  });
});

/** Vault as its administrator changes it (root token), undone after the case. */
async function vault(method: string, path: string, body?: unknown): Promise<{ data?: Record<string, unknown> } | null> {
  const res = await fetch(`${lab.vault.addr}/v1/${path}`, {
    method,
    headers: { 'x-vault-token': lab.vault.rootToken, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status >= 400) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return res.status === 204 ? null : ((await res.json()) as { data?: Record<string, unknown> });
}

/**
 * An exchanger that alters what the call asks for (the Vault paths), over the real one: the IdP then
 * issues a real OBO for the altered request, as a compromised or misconfigured client would get one.
 */
function askingFor(change: (details: ExchangeRequest['authorizationDetails']) => ExchangeRequest['authorizationDetails']): TokenExchanger {
  return { exchange: (req) => lab.exchanger.exchange({ ...req, authorizationDetails: change(req.authorizationDetails) }) };
}

const READ_SQL = 'SELECT count(*) FROM appointments';
type PathEntry = { type: string; path?: string; capabilities?: string[]; allowed_parameters?: Record<string, unknown[]> };

/** One refused call: the stable code, one audit record without an execute hop, and nothing minted. */
/** Credentials Vault handed out so far: its audit log's creds responses that are not refusals. */
const credsMinted = (): number => vaultAudit().filter((e) => e.type === 'response' && e.request?.path?.startsWith('database/creds/') && !e.error).length;

async function refused(o: Parameters<BrokerLab['broker']>[0], code: string): Promise<AuditRecordInput> {
  const leasesBefore = lab.vault.leases();
  const mintedBefore = credsMinted();
  const { broker, audit } = lab.broker({ vaultMode: 'agent', ...o });
  const r = await broker.callTool(call('query', { sql: READ_SQL }));
  expect(r.isError).toBe(true);
  expect(text(r)).toContain(`[${code}]`);
  expect(audit.records).toHaveLength(1);
  const record = audit.records[0]!;
  expect(record.error?.code).toBe(code);
  expect(record.hops!.map((h) => h.name)).not.toContain('execute');
  expect(record.keys!.lease_id).toBeUndefined();
  expect(lab.vault.leases()).toBe(leasesBefore);
  // Not minted and revoked since: Vault's audit shows no credential handed out at all.
  expect(credsMinted()).toBe(mintedBefore);
  expect(await settled(lab)).toEqual({ roles: [], leases: 0 });
  return record;
}

describe('agent mode when Vault answers the credential request after the call stopped waiting', () => {
  it('fails the call with VAULT_UNAVAILABLE in its time, then revokes the lease Vault minted: no lease or role is left', async () => {
    const slow = createVaultClient({ address: lab.vault.addr, timeoutMs: 400 });
    // Only the credential request is slow: Vault holds it 1.2 s, then mints and answers.
    const vault: VaultClient = {
      ...slow,
      databaseCreds(token, mount, role, signal, late) {
        lab.vault.setLatency(1_200);
        setTimeout(() => lab.vault.setLatency(0), 150);
        return slow.databaseCreds(token, mount, role, signal, late);
      },
    };
    const logged = lab.logs.core.length;
    try {
      const { broker, audit } = lab.broker({ vaultMode: 'agent', vault });
      const started = performance.now();
      const r = await broker.callTool(call('query', { sql: 'SELECT 1 AS one' }));
      expect(performance.now() - started).toBeLessThan(1_200);
      expect(r.isError).toBe(true);
      expect(audit.records).toHaveLength(1);
      expect(audit.records[0]).toMatchObject({ outcome: 'error', error: { code: 'VAULT_UNAVAILABLE' } });
      expect(audit.records[0]!.hops!.find((h) => h.name === 'vault_creds')).toMatchObject({ outcome: 'error', code: 'VAULT_UNAVAILABLE' });
      // Once Vault has answered (its audit log's response to the OBO's credential request), its own
      // lease count and PostgreSQL's roles: the lease it minted late is revoked, its role dropped.
      const jti = audit.records[0]!.keys!.obo_jti!;
      const answered = async (path: string): Promise<void> => {
        // Vault writes a response's audit line after it has answered: polled, not read once.
        const deadline = Date.now() + 6_000;
        while (!vaultLinesFor(jti).some((l) => l.request?.path === path) && Date.now() < deadline) await new Promise((w) => setTimeout(w, 50));
      };
      await answered('database/creds/clinic-read');
      expect(vaultLinesFor(jti).map((l) => l.request?.path)).toContain('database/creds/clinic-read');
      expect(await settled(lab, 6_000)).toEqual({ roles: [], leases: 0 });
      await answered('sys/leases/revoke');
      expect(vaultLinesFor(jti).map((l) => l.request?.path)).toEqual(['database/creds/clinic-read', 'sys/leases/revoke']);
      expect(lab.logs.core.slice(logged).join('\n')).toMatch(/lease database\/creds\/clinic-read\/\S+, minted after the call stopped waiting for it, was revoked/);
    } finally {
      lab.vault.setLatency(0);
      await slow.close();
    }
  });
});

describe('agent mode fails closed, nothing minted', () => {
  it('refuses an OBO without act (an IdP that does not name the agent) before Vault: OBO_INVALID', async () => {
    lab.idp.updatePolicy((p) => ({ ...p, agents: { 'countersign-desktop': { act: 'none' } } }));
    try {
      const record = await refused({}, 'OBO_INVALID');
      expect(record.hops!.find((h) => h.name === 'exchange')!.outcome).toBe('error');
    } finally {
      lab.idp.updatePolicy((p) => ({ ...p, agents: { 'countersign-desktop': { act: 'client_id' } } }));
    }
  });

  it('is refused by Vault when the actor has no Agent Registry record: VAULT_PERMISSION_DENIED', async () => {
    const reg = (await vault('GET', 'agent-registry/registration/display-name/countersign'))!.data!;
    await vault('DELETE', `agent-registry/registration/id/${String(reg['id'])}`);
    try {
      const record = await refused({}, 'VAULT_PERMISSION_DENIED');
      expect(record.hops!.find((h) => h.name === 'vault_creds')!.outcome).toBe('denied');
    } finally {
      await vault('POST', 'agent-registry/register', { display_name: reg['display_name'], entity_id: reg['entity_id'], ceiling_policies: ['countersign-agent-ceiling'] });
    }
  });

  // The IdP is made too generous for these two, so that Vault is the one that refuses.
  const generous = (extra: PathEntry[]): void =>
    lab.idp.updatePolicy((p) => ({ ...p, vault_path_access: { ...p.vault_path_access, 'clinic-read': [...p.vault_path_access['clinic-read']!, ...(extra as never[])] } }));
  const restore = (): void => lab.idp.updatePolicy((p) => ({ ...p, vault_path_access: { ...p.vault_path_access, 'clinic-read': p.vault_path_access['clinic-read']!.slice(0, 2) } }));

  it.each([
    ['names another role than the creds it asks for', { type: 'vault:path_access', path: 'database/creds/clinic-write', capabilities: ['read'] }],
    ['lacks the read capability on the creds path', { type: 'vault:path_access', path: 'database/creds/clinic-read', capabilities: ['list'] }],
  ] as Array<[string, PathEntry]>)('is refused by Vault when the OBO’s RAR %s', async (_what, entry) => {
    generous([entry]);
    try {
      const idp = askingFor((d) => (d as PathEntry[]).map((e) => (e.path === 'database/creds/clinic-read' ? entry : e)) as never);
      const record = await refused({ idp }, 'VAULT_PERMISSION_DENIED');
      expect(vaultErrorFor(record.keys!.obo_jti!)).toContain('RAR_NO_MATCH');
    } finally {
      restore();
    }
  });

  it('is refused by Vault when the OBO has expired by the time it reaches Vault', async () => {
    lab.idp.updatePolicy((p) => ({ ...p, obo_ttl_s: 1 }));
    await vault('POST', 'sys/config/oauth-resource-server/countersign-idp', { clock_skew_leeway: 0 });
    try {
      const idp: TokenExchanger = {
        async exchange(req) {
          const obo = await lab.exchanger.exchange(req);
          while (Date.now() / 1000 <= obo.exp + 0.2) await new Promise((r) => setTimeout(r, 100));
          return obo;
        },
      };
      await refused({ idp }, 'VAULT_PERMISSION_DENIED');
    } finally {
      lab.idp.updatePolicy((p) => ({ ...p, obo_ttl_s: undefined }));
      await vault('POST', 'sys/config/oauth-resource-server/countersign-idp', { clock_skew_leeway: 5 });
    }
  });

  it('is refused by Vault when the OBO is for another audience than the profile accepts', async () => {
    await vault('POST', 'sys/config/oauth-resource-server/countersign-idp', { audiences: ['another-vault'] });
    try {
      await refused({}, 'VAULT_PERMISSION_DENIED');
    } finally {
      await vault('POST', 'sys/config/oauth-resource-server/countersign-idp', { audiences: ['countersign-vault'] });
    }
  });

  it('is refused by Vault when the agent’s ceiling policy does not allow the creds path', async () => {
    const ceiling = String((await vault('GET', 'sys/policies/acl/countersign-agent-ceiling'))!.data!['policy']);
    await vault('PUT', 'sys/policies/acl/countersign-agent-ceiling', { policy: 'path "sys/leases/revoke" { capabilities = ["update"] }' });
    try {
      const record = await refused({}, 'VAULT_PERMISSION_DENIED');
      // The user's ACL and the RAR allow it: the ceiling alone refuses.
      const why = vaultErrorFor(record.keys!.obo_jti!);
      expect(why).toContain('permission denied');
      expect(why).not.toContain('RAR_NO_MATCH');
    } finally {
      await vault('PUT', 'sys/policies/acl/countersign-agent-ceiling', { policy: ceiling });
    }
  });

  it('is refused by the IdP when the call asks for a Vault path its policy does not allow: IDP_DENIED', async () => {
    const idp = askingFor((d) => [...d, { type: 'vault:path_access', path: 'database/creds/clinic-sensitive', capabilities: ['read'] }]);
    await refused({ idp }, 'IDP_DENIED');
  });

  it('still works after the refusals (the lab is back as it was), and Vault’s audit counts the credential it hands out', async () => {
    const before = credsMinted();
    const { broker } = lab.broker({ vaultMode: 'agent' });
    const r = await broker.callTool(call('query', { sql: READ_SQL }));
    expect(r.isError, text(r)).toBeFalsy();
    // The count the refusals are held to moves when a credential is handed out (the audit line may trail the answer).
    for (let i = 0; i < 40 && credsMinted() === before; i += 1) await new Promise((res) => setTimeout(res, 50));
    expect(credsMinted()).toBe(before + 1);
  });
});

/**
 * What a run killed mid-call leaves in agent mode, made by hand the way the broker makes it: an OBO
 * carrying the call's entry and its Vault paths, the creds read with it, and the call's journal entry
 * holding the lease (no Vault token: none exists). The restart's recovery is `closeAbortedCalls`.
 */
async function leftByAKilledRun(dir: string) {
  const { plan } = await planPostgresCall(DEMO_POLICY, 'query', { sql: READ_SQL });
  if (plan.credential.kind !== 'vault-database') throw new Error('a query needs a database credential');
  const obo = await lab.exchanger.exchange({
    subjectToken: lab.alice.accessToken,
    authorizationDetails: [...plan.authorizationDetails, ...pathAccessFor(plan.credential)],
    audience: plan.audience!,
    expectedSub: lab.alice.user()!.sub,
  });
  const creds = await lab.vaultClient.databaseCreds(obo.token, plan.credential.dbMount, plan.credential.dbRole);
  const audit = await AuditStore.open({ dataDir: dir, secrets: new MemorySecretStore('test') });
  const journal = new SqliteCallJournal(dir, { sealKey: audit.installKeys!.hmacKey });
  journal.begin('killed', {
    tool: 'query',
    startedAt: new Date().toISOString(),
    user: lab.alice.user(),
    tier: 1,
    keys: { mcp_session_id: 's', mcp_request_id: 'killed-1', obo_jti: obo.jti, lease_id: creds.leaseId, db_role: creds.username },
  });
  const close = async (): Promise<void> => {
    journal.close();
    await audit.close();
  };
  return { audit, journal, creds, obo, close };
}

const quiet = { info() {}, warn() {}, error() {} };
const recovery = (tokens = lab.alice as TokenSource, idp: TokenExchanger = lab.exchanger) => ({ tokens, idp, vault: lab.vaultClient, audience: DEMO_POLICY.audience });
const rootRevoke = (leaseId: string) => vault('PUT', 'sys/leases/revoke', { lease_id: leaseId });

describe('agent mode after a restart: the lease a killed run left', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cs-agent-recovery-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('is revoked with a revocation-only OBO, and the one aborted record says so', async () => {
    const left = await leftByAKilledRun(dir);
    try {
      expect(await lab.admin('SELECT 1 FROM pg_roles WHERE rolname = $1', [left.creds.username])).toHaveLength(1);
      expect(await closeAbortedCalls(left.journal, left.audit, quiet, lab.vaultClient, recovery())).toBe(1);
      expect(await settled(lab)).toEqual({ roles: [], leases: 0 });
      const records = left.audit.page({ limit: 10 }).records;
      expect(records).toHaveLength(1);
      expect(records[0]!.hops.map((h) => [h.name, h.outcome])).toEqual([
        ['exchange', 'ok'],
        ['revoke', 'ok'],
      ]);
      expect(records[0]!.summary).toContain('its lease was revoked on restart with a revocation-only OBO');
    } finally {
      await left.close();
    }
  });

  it('is left to its TTL, and the record says so, when the identity provider does not issue a revocation on its own', async () => {
    const left = await leftByAKilledRun(dir);
    lab.idp.updatePolicy((p) => ({ ...p, lease_revocation_alone: false }));
    try {
      await closeAbortedCalls(left.journal, left.audit, quiet, lab.vaultClient, recovery());
      const [record] = left.audit.page({ limit: 1 }).records;
      expect(record!.outcome).toBe('aborted');
      expect(record!.hops.map((h) => [h.name, h.outcome, h.code])).toEqual([
        ['exchange', 'error', 'IDP_DENIED'],
        ['revoke', 'error', 'IDP_DENIED'],
      ]);
      expect(record!.summary).toContain('could not be revoked on restart');
      expect(record!.summary).toContain('expires within its Vault TTL');
      expect(lab.vault.leaseIds()).toContain(left.creds.leaseId);
    } finally {
      lab.idp.updatePolicy((p) => ({ ...p, lease_revocation_alone: true }));
      await rootRevoke(left.creds.leaseId);
      await left.close();
    }
    expect(await settled(lab)).toEqual({ roles: [], leases: 0 });
  });

  it('is left to its TTL, without asking the identity provider, when another person is signed in now', async () => {
    const left = await leftByAKilledRun(dir);
    const bob = await labTokenSource(lab.idp, 'bob');
    let exchanges = 0;
    const counting: TokenExchanger = { exchange: (req) => (exchanges++, lab.exchanger.exchange(req)) };
    try {
      await closeAbortedCalls(left.journal, left.audit, quiet, lab.vaultClient, recovery(bob, counting));
      const [record] = left.audit.page({ limit: 1 }).records;
      expect(record!.hops).toEqual([expect.objectContaining({ name: 'revoke', outcome: 'error', code: 'NOT_SIGNED_IN' })]);
      expect(record!.summary).toContain('another person is signed in now');
      expect(exchanges).toBe(0);
      expect(bob.calls).toBe(0);
      expect(lab.vault.leaseIds()).toContain(left.creds.leaseId);
    } finally {
      await rootRevoke(left.creds.leaseId);
      await left.close();
    }
  });

  it('asks for the revocations side by side: an identity provider that does not answer delays the start once, and each record says the lease was left to its TTL', async () => {
    const audit = await AuditStore.open({ dataDir: dir, secrets: new MemorySecretStore('test') });
    const journal = new SqliteCallJournal(dir, { sealKey: audit.installKeys!.hmacKey });
    for (const n of [1, 2, 3]) {
      journal.begin(`k${n}`, { tool: 'query', startedAt: new Date().toISOString(), user: lab.alice.user(), tier: 1, keys: { mcp_request_id: `k-${n}`, lease_id: `database/creds/clinic-read/gone-${n}` } });
    }
    // An IdP that takes the request and never answers: the exchange ends only when recovery gives up.
    const silent: TokenExchanger = {
      exchange: (req) => new Promise((_, reject) => req.signal!.addEventListener('abort', () => reject(new AppError('CANCELLED', 'The call was cancelled during the token exchange.')))),
    };
    try {
      const t0 = Date.now();
      expect(await closeAbortedCalls(journal, audit, quiet, lab.vaultClient, { ...recovery(lab.alice, silent), timeoutMs: 1_500 })).toBe(3);
      expect(Date.now() - t0).toBeLessThan(2 * 1_500);
      const records = audit.page({ limit: 10 }).records;
      expect(records.map((r) => r.keys.mcp_request_id).sort()).toEqual(['k-1', 'k-2', 'k-3']);
      for (const r of records) {
        expect(r.hops.map((h) => [h.name, h.outcome, h.code])).toEqual([
          ['exchange', 'error', 'IDP_UNAVAILABLE'],
          ['revoke', 'error', 'IDP_UNAVAILABLE'],
        ]);
        expect(r.summary).toContain('expires within its Vault TTL');
      }
    } finally {
      journal.close();
      await audit.close();
    }
  });

  it('gets an OBO that revokes that one lease only: Vault refuses it another lease of the same role and any creds', async () => {
    const a = await leftByAKilledRun(dir);
    const otherDir = await mkdtemp(join(tmpdir(), 'cs-agent-recovery-b-'));
    const other = await leftByAKilledRun(otherDir);
    try {
      const obo = await lab.exchanger.exchange({ subjectToken: lab.alice.accessToken, authorizationDetails: leaseRevocationFor(a.creds.leaseId), audience: DEMO_POLICY.audience, expectedSub: lab.alice.user()!.sub });
      await expect(lab.vaultClient.revokeLease(obo.token, other.creds.leaseId)).rejects.toMatchObject({ code: 'VAULT_PERMISSION_DENIED' });
      await expect(lab.vaultClient.databaseCreds(obo.token, 'database', 'clinic-read')).rejects.toMatchObject({ code: 'VAULT_PERMISSION_DENIED' });
      expect(vaultErrorFor(obo.jti)).toContain('RAR_NO_MATCH');
      expect(lab.vault.leaseIds().sort()).toEqual([a.creds.leaseId, other.creds.leaseId].sort());
      expect(await lab.vaultClient.revokeLease(obo.token, a.creds.leaseId)).toBe('revoked');
      expect(lab.vault.leaseIds()).toEqual([other.creds.leaseId]);
    } finally {
      for (const x of [a, other]) await rootRevoke(x.creds.leaseId).catch(() => {});
      await a.close();
      await other.close();
      await rm(otherDir, { recursive: true, force: true });
    }
    expect(await settled(lab)).toEqual({ roles: [], leases: 0 });
  });

  it.each([
    ['every lease of the role (a glob)', leaseRevocationFor('database/creds/clinic-read/*'), 'alice'],
    ['a lease of a role the person does not hold', leaseRevocationFor('database/creds/clinic-write/abc'), 'bob'],
    ['a creds path with no call beside it', [{ type: 'vault:path_access', path: 'database/creds/clinic-read', capabilities: ['read'] }], 'alice'],
  ] as const)('is refused by the identity provider when a token with no call entry asks for %s: IDP_DENIED', async (_what, details, who) => {
    const tokens = who === 'alice' ? lab.alice : await labTokenSource(lab.idp, 'bob');
    await expect(
      lab.exchanger.exchange({ subjectToken: await tokens.getAccessToken(), authorizationDetails: [...details], audience: DEMO_POLICY.audience, expectedSub: tokens.user()!.sub }),
    ).rejects.toMatchObject({ code: 'IDP_DENIED' });
  });
});

const KV_PATH = 'secret/data/upstreams/apikey-demo';

/**
 * A broker in agent mode over the lab's API-key upstream, its tools listed (a listing reads the key
 * too). `exchangeWith` swaps the exchanger for the calls after the listing.
 */
async function apiKeyBroker() {
  let current: TokenExchanger = lab.exchanger;
  const idp: TokenExchanger = { exchange: (req) => current.exchange(req) };
  const { credentials, audit } = lab.credentials({ vaultMode: 'agent', idp });
  const connectors = createUpstreamConnectors(
    [{ name: 'quotes', url: lab.upstream.apiKeyUrl, auth: 'api-key', apiKey: { path: 'upstreams/apikey-demo' }, tools: [{ pattern: 'get_*', tier: 1 }], allowInsecureHttpForLoopbackOnly: true }],
    { credentials, tokens: lab.alice },
  );
  const made = lab.broker({ vaultMode: 'agent', connectors, idp, audit, credentials });
  brokers.push(made.broker);
  expect((await made.broker.listTools()).map((t) => t.name)).toContain('quotes__get_quote');
  return { ...made, exchangeWith: (idp: TokenExchanger) => void (current = idp) };
}

const brokers: Broker[] = [];

describe('agent mode: the API key read from KV v2 with the OBO', () => {
  afterAll(async () => {
    for (const b of brokers) await b.close();
  });

  it('reads the key with the OBO itself (its RAR names the secret’s path, read), no login, nothing to revoke, and Vault’s audit joins by jti', async () => {
    const { broker, audit } = await apiKeyBroker();
    const listing = audit.records.find((r) => r.kind === 'system')!;
    expect(listing.outcome).toBe('success');
    expect(listing.hops!.map((h) => h.name)).toEqual(['approval', 'exchange', 'vault_creds', 'execute']);

    const before = lab.upstream.apiKeyRequests();
    const r = await broker.callTool(call('quotes__get_quote', { symbol: 'ACME' }));
    expect(text(r)).toBe('ACME: 123.45');
    expect(lab.upstream.apiKeyRequests()).toBeGreaterThan(before);
    const record = audit.records.find((x) => x.kind === 'tool_call')!;
    expect(record.outcome).toBe('success');
    expect(record.hops!.map((h) => h.name)).toEqual(['validate', 'classify', 'approval', 'exchange', 'vault_creds', 'execute']);
    expect(record.hops!.find((h) => h.name === 'vault_creds')!.detail).toContain(`mode=agent jwt_unique_id=${record.keys!.obo_jti}`);
    expect(record.keys!.vault_accessor).toBeUndefined();
    expect(record.keys!.lease_id).toBeUndefined();

    for (const jti of [listing.keys!.obo_jti!, record.keys!.obo_jti!]) {
      const lines = vaultLinesFor(jti);
      expect(lines.map((l) => [l.request?.path, l.error])).toEqual([[KV_PATH, undefined]]);
      expect(lines[0]!.auth!.metadata!['actor_entity_name']).toBe('agent-countersign-desktop');
      expect(JSON.parse(lines[0]!.auth!.metadata!['jwt_authorization_details']!)).toEqual([
        { type: 'api_key', locations: [lab.upstream.apiKeyUrl], actions: ['read'], identifier: 'quotes' },
        { type: 'vault:path_access', path: KV_PATH, capabilities: ['read'] },
      ]);
    }
    // The key itself is in no record, log or Vault audit line.
    const everything = JSON.stringify({ records: audit.records, core: lab.logs.core, lab: lab.logs.lab, vault: readFileSync(lab.vaultAuditLogPath, 'utf8'), r });
    expect(findSecret(everything, { apiKey: lab.upstream.apiKey })).toEqual([]);
  });

  /** One refused call: the stable code, one record without an execute hop, and the upstream never given the key. */
  async function refusedKv(made: Awaited<ReturnType<typeof apiKeyBroker>>, code: string): Promise<AuditRecordInput> {
    const before = lab.upstream.apiKeyRequests();
    const listed = made.audit.records.length;
    const r = await made.broker.callTool(call('quotes__get_quote', { symbol: 'ACME' }));
    expect(r.isError).toBe(true);
    expect(text(r)).toContain(`[${code}]`);
    const records = made.audit.records.slice(listed);
    expect(records).toHaveLength(1);
    const record = records[0]!;
    expect(record.error?.code).toBe(code);
    expect(record.hops!.map((h) => h.name)).not.toContain('execute');
    expect(lab.upstream.apiKeyRequests()).toBe(before);
    // Vault answered this OBO with refusals only: no key left Vault.
    if (record.keys!.obo_jti) expect(vaultLinesFor(record.keys!.obo_jti).every((l) => l.error)).toBe(true);
    return record;
  }

  const generousKv = (extra: PathEntry): void =>
    lab.idp.updatePolicy((p) => ({ ...p, vault_path_access: { ...p.vault_path_access, 'upstream-apikey': [...p.vault_path_access['upstream-apikey']!, extra as never] } }));
  const restoreKv = (): void => lab.idp.updatePolicy((p) => ({ ...p, vault_path_access: { ...p.vault_path_access, 'upstream-apikey': p.vault_path_access['upstream-apikey']!.slice(0, 1) } }));

  it.each([
    ['names another secret than the one it reads', { type: 'vault:path_access', path: 'secret/data/upstreams/other', capabilities: ['read'] }],
    ['lacks the read capability on the secret', { type: 'vault:path_access', path: KV_PATH, capabilities: ['list'] }],
  ] as Array<[string, PathEntry]>)('is refused by Vault when the OBO’s RAR %s: VAULT_PERMISSION_DENIED', async (_what, entry) => {
    const made = await apiKeyBroker();
    generousKv(entry);
    try {
      made.exchangeWith(askingFor((d) => (d as PathEntry[]).map((e) => (e.path === KV_PATH ? entry : e)) as never));
      const record = await refusedKv(made, 'VAULT_PERMISSION_DENIED');
      expect(vaultErrorFor(record.keys!.obo_jti!)).toContain('RAR_NO_MATCH');
    } finally {
      restoreKv();
    }
  });

  it('is refused by the IdP when the call asks for a KV path its policy does not allow: IDP_DENIED', async () => {
    const made = await apiKeyBroker();
    made.exchangeWith(askingFor((d) => [...d, { type: 'vault:path_access', path: 'secret/data/upstreams/other', capabilities: ['read'] }]));
    const record = await refusedKv(made, 'IDP_DENIED');
    expect(record.keys!.obo_jti).toBeUndefined();
  });

  it('is refused by Vault when the agent’s ceiling does not allow the secret’s path: VAULT_PERMISSION_DENIED', async () => {
    const made = await apiKeyBroker();
    const ceiling = String((await vault('GET', 'sys/policies/acl/countersign-agent-ceiling'))!.data!['policy']);
    await vault('PUT', 'sys/policies/acl/countersign-agent-ceiling', { policy: 'path "database/creds/clinic-read" { capabilities = ["read"] }' });
    try {
      const record = await refusedKv(made, 'VAULT_PERMISSION_DENIED');
      const why = vaultErrorFor(record.keys!.obo_jti!);
      expect(why).toContain('permission denied');
      expect(why).not.toContain('RAR_NO_MATCH');
    } finally {
      await vault('PUT', 'sys/policies/acl/countersign-agent-ceiling', { policy: ceiling });
    }
  });
});
