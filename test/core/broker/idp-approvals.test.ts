/**
 * Tier-3 approvals carried by the identity provider (approvals.tier3 = idp-when-offered): the broker
 * over the real lab (IdP with its Verify-style push and lab "phone", Vault stand-in, PostgreSQL), the
 * real ApprovalService with a scripted prompter FOR TESTS that denies anything it is shown, so a local
 * prompt would fail the call and is counted.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startIdp, type LabIdp } from '../../../lab/idp/index.ts';
import { ApprovalService } from '../../../main/core/approvals/approval-service.ts';
import { approverFor } from '../../../main/core/approvals/broker-approver.ts';
import { ScriptedPrompterForTests } from '../../../main/core/approvals/prompter.ts';
import { createPostgresConnector } from '../../../main/core/connectors/postgres/connector.ts';
import { authorizationDetailsDigest, createTokenExchanger } from '../../../main/core/idp/token-exchange.ts';
import { parsePolicy, type PostgresPolicy } from '../../../main/core/policy/policy.ts';
import { labTokenSource } from './fixtures.ts';
import { call, DEMO_POLICY, settled, startBrokerLab, type BrokerLab } from './lab.ts';

let lab: BrokerLab;
/** A second lab IdP whose policy issues the sensitive credential without a push (a step-up policy removed). */
let lax: LabIdp;
let laxDir: string;
const laxLog: string[] = [];

beforeAll(async () => {
  lab = await startBrokerLab();
  laxDir = await mkdtemp(join(tmpdir(), 'countersign-lax-idp-'));
  const policy = JSON.parse(await readFile(new URL('../../../lab/idp/policy.json', import.meta.url), 'utf8')) as { rules: Array<Record<string, unknown>> };
  const withoutPush = policy.rules.map((r) => {
    if (r.step_up === undefined) return r;
    const { step_up: _dropped, ...rest } = r;
    return rest;
  });
  expect(withoutPush).not.toEqual(policy.rules);
  await writeFile(join(laxDir, 'policy.json'), JSON.stringify({ ...policy, rules: withoutPush }));
  lax = await startIdp({ policyFile: join(laxDir, 'policy.json'), log: (l) => laxLog.push(l) });
}, 60_000);
afterAll(async () => {
  await lax?.stop();
  await lab?.stop();
  if (laxDir) await rm(laxDir, { recursive: true, force: true });
});

const text = (r: { content?: unknown[] }): string => (r.content ?? []).map((c) => (c as { text?: string }).text ?? '').join('\n');
const SENSITIVE = { sql: 'SELECT count(*)::int AS n FROM patients WHERE vip', include_sensitive: true };

function idpApprovals(tier3: 'local' | 'idp-when-offered' = 'idp-when-offered') {
  const prompter = new ScriptedPrompterForTests([]);
  const service = new ApprovalService({ prompter, tier3 });
  return { prompter, service, approver: approverFor(service) };
}

/** The lab "phone": answers the first push that arrives, and hands back what it showed. */
function phone(idp: LabIdp, answer: 'approve' | 'deny'): Promise<unknown> {
  return (async () => {
    for (let i = 0; i < 400; i += 1) {
      const p = idp.push.pending()[0];
      if (p) {
        idp.push[answer](p.id);
        return p.transactionData;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error('no push arrived at the lab phone');
  })();
}

describe('tier-3 approvals carried by the identity provider', () => {
  it('runs a sensitive query approved on the lab phone without any local prompt, and records the approval as an IdP push bound to the call', async () => {
    const { prompter, approver } = idpApprovals();
    const { broker, audit } = lab.broker({ approver });
    const shown = phone(lab.idp, 'approve');
    const r = await broker.callTool(call('query', SENSITIVE));
    const transaction = (await shown) as { callDigest: string };
    expect(r.isError, text(r)).toBeFalsy();
    expect((r.structuredContent as { rows: Array<{ n: number }> }).rows[0]!.n).toBeGreaterThan(0);
    expect(prompter.shown).toHaveLength(0);

    const record = audit.records[0]!;
    expect(record.outcome).toBe('success');
    expect(record.tier).toBe(3);
    const digest = authorizationDetailsDigest(record.authorization_details);
    expect(transaction.callDigest).toBe(digest);
    const approval = record.hops!.find((h) => h.name === 'approval')!;
    expect(approval).toMatchObject({ outcome: 'ok' });
    expect(approval.detail).toBe(`via=idp-push amr=mfa,push push_digest=${digest}`);
    expect(record.hops!.map((h) => h.name)).toEqual(['validate', 'classify', 'approval', 'exchange', 'step_up', 'vault_login', 'vault_creds', 'execute', 'revoke', 'revoke_check']);
    expect(record.keys!.lease_id).toMatch(/clinic-sensitive/);
    expect(await settled(lab)).toEqual({ roles: [], leases: 0 });
  });

  it('answers "You denied …" when the person denies the push, and mints no credential', async () => {
    const { prompter, approver } = idpApprovals();
    const { broker, audit } = lab.broker({ approver });
    const shown = phone(lab.idp, 'deny');
    const r = await broker.callTool(call('query', SENSITIVE));
    await shown;
    expect(r.isError).toBe(true);
    expect(text(r)).toMatch(/^You denied query on postgres:\/\/lab\/clinic .*\[APPROVAL_DENIED\]$/);
    expect(prompter.shown).toHaveLength(0);
    const record = audit.records[0]!;
    expect(record).toMatchObject({ outcome: 'denied', error: { code: 'APPROVAL_DENIED' } });
    expect(record.hops!.find((h) => h.name === 'approval')).toMatchObject({ outcome: 'denied', code: 'APPROVAL_DENIED', detail: 'via=idp-push denied on the push' });
    expect(record.hops!.some((h) => h.name === 'vault_login')).toBe(false);
  });

  it('answers with a time-out when nobody answers the push, shorter than the client would wait', async () => {
    const { approver } = idpApprovals();
    const { broker, audit } = lab.broker({ approver });
    const started = Date.now();
    const r = await broker.callTool(call('query', SENSITIVE));
    expect(Date.now() - started).toBeLessThan(20_000);
    for (const p of lab.idp.push.pending()) lab.idp.push.deny(p.id);
    expect(r.isError).toBe(true);
    expect(text(r)).toMatch(/^Nobody approved query on your phone in time.*\[APPROVAL_TIMEOUT\]$/);
    expect(audit.records[0]).toMatchObject({ outcome: 'timeout', error: { code: 'APPROVAL_TIMEOUT' } });
    expect(audit.records[0]!.hops!.find((h) => h.name === 'approval')).toMatchObject({ outcome: 'timeout', detail: 'via=idp-push not answered' });
  });

  it('refuses a tier-3 call whose IdP issued the OBO without a push (fail closed, before Vault), and records why', async () => {
    const { prompter, approver } = idpApprovals();
    const aliceAtLax = await labTokenSource(lax, 'alice');
    const exchanger = createTokenExchanger({ issuer: lax.issuer, clientId: 'countersign-desktop', allowInsecureHttpForLoopbackOnly: true, timeoutMs: 15_000 });
    const { broker, audit } = lab.broker({ approver, tokens: aliceAtLax, idp: exchanger });
    const leasesBefore = lab.vault.leases();
    const r = await broker.callTool(call('query', SENSITIVE));
    expect(r.isError).toBe(true);
    expect(text(r)).toContain('without a push approval');
    expect(text(r)).toContain('[APPROVAL_NOT_PROVEN]');
    expect(prompter.shown).toHaveLength(0);
    // The lax IdP did issue the sensitive credential's OBO: the refusal is Countersign's.
    expect(laxLog.some((l) => l.includes('obo issued') && l.includes('vault_role=clinic-sensitive'))).toBe(true);
    const record = audit.records[0]!;
    expect(record).toMatchObject({ outcome: 'denied', error: { code: 'APPROVAL_NOT_PROVEN' } });
    const approval = record.hops!.find((h) => h.name === 'approval')!;
    expect(approval).toMatchObject({ outcome: 'denied', code: 'APPROVAL_NOT_PROVEN' });
    expect(approval.detail).toContain('via=idp-push refused: the OBO was issued without a push approval');
    expect(record.hops!.map((h) => h.name)).toEqual(['validate', 'classify', 'approval', 'exchange']);
    expect(lab.vault.leases()).toBe(leasesBefore);
  });

  it('with approvals.tier3 = local the same IdP asks locally first, and the hop says so', async () => {
    const prompter = new ScriptedPrompterForTests(['approve']);
    const approver = approverFor(new ApprovalService({ prompter }));
    const { broker, audit } = lab.broker({ approver });
    const shown = phone(lab.idp, 'approve');
    const r = await broker.callTool(call('query', SENSITIVE));
    await shown;
    expect(r.isError, text(r)).toBeFalsy();
    expect(prompter.shown).toHaveLength(1);
    expect(audit.records[0]!.hops!.find((h) => h.name === 'approval')!.detail).toMatch(/^via=local-prompt approval=[0-9a-f-]{36}$/);
  });

  it('keeps the local prompt for a tier-3 call the IdP has nothing to push for (no privilege in its RAR)', async () => {
    const raised = parsePolicy(
      JSON.stringify({ version: 1, postgres: { ...DEMO_POLICY, tables: { ...DEMO_POLICY.tables, notes: { ...DEMO_POLICY.tables.notes, tier: 3 } } } }),
    ).postgres as PostgresPolicy;
    const { prompter, approver } = idpApprovals();
    prompter.push('approve');
    const { broker, audit } = lab.broker({ approver, connectors: [createPostgresConnector({ policy: raised, connection: lab.connection })] });
    const r = await broker.callTool(call('query', { sql: 'SELECT count(*)::int AS n FROM notes' }));
    expect(r.isError, text(r)).toBeFalsy();
    expect(prompter.shown).toHaveLength(1);
    expect(audit.records[0]!.tier).toBe(3);
    expect(audit.records[0]!.hops!.find((h) => h.name === 'approval')!.detail).toMatch(/^via=local-prompt /);
  });
});
