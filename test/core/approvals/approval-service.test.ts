import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApprovalService, callDigest } from '../../../main/core/approvals/approval-service.ts';
import { ScriptedPrompterForTests } from '../../../main/core/approvals/prompter.ts';
import { AuditStore } from '../../../main/core/audit/store.ts';
import type { CallPlan } from '../../../main/core/connectors/types.ts';
import type { SecretStore } from '../../../main/core/ports.ts';
import { parseAppConfig } from '../../../main/core/config/config.ts';

const alice = { sub: 'alice-sub', name: 'Alice' };

function writePlan(sql: string, table = 'appointments', rowCeiling = 10): CallPlan {
  return {
    connector: 'postgres',
    tool: 'execute',
    tier: 2,
    reason: `bounded UPDATE of ${table}`,
    target: 'postgres://lab/clinic',
    authorizationDetails: [{ type: 'postgres', actions: ['UPDATE'], tables: [table], locations: ['postgres://lab/clinic'] }],
    audience: 'countersign-vault',
    credential: { kind: 'obo' },
    bytes: sql,
    approvalScope: { statementClass: 'UPDATE', targets: [table], rowCeiling },
  };
}

function sensitivePlan(sql: string): CallPlan {
  return { ...writePlan(sql), tool: 'query', tier: 3, reason: 'query of sensitive rows', approvalScope: undefined };
}

function request(plan: CallPlan, args: Record<string, unknown> = { sql: plan.bytes }, session = 's1', signal = new AbortController().signal) {
  return { plan, args, user: alice, sessionId: session, signal };
}

const memorySecrets = (): SecretStore => {
  const m = new Map<string, string>();
  return { kind: 'memory', get: async (k) => m.get(k) ?? null, set: async (k, v) => void m.set(k, v), delete: async (k) => void m.delete(k) };
};

let dir: string;
let audit: AuditStore;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cs-approvals-'));
  audit = await AuditStore.open({ dataDir: dir, secrets: memorySecrets() });
});
afterAll(async () => {
  await audit.close?.();
  await rm(dir, { recursive: true, force: true });
});

describe('tier 2 approvals', () => {
  it('prompt on the first write and cover a second of the same scope, recorded as cached', async () => {
    const prompter = new ScriptedPrompterForTests(['approve']);
    const svc = new ApprovalService({ prompter, audit });
    const first = await svc.approve(request(writePlan("UPDATE appointments SET status='done' WHERE id=1")));
    const second = await svc.approve(request(writePlan("UPDATE appointments SET status='done' WHERE id=2")));
    expect(first.outcome).toBe('approved');
    expect(second.outcome).toBe('cached');
    expect(prompter.shown).toHaveLength(1);
    expect(svc.cached()[0]).toMatchObject({ statementClass: 'UPDATE', targets: ['appointments'], uses: 1 });
    const page = await audit.page({ limit: 5 });
    expect(page.records.map((r) => r.summary)).toContainEqual(expect.stringContaining('cached approval'));
  });

  it('prompt again for another table, a higher row ceiling, another session', async () => {
    const prompter = new ScriptedPrompterForTests(['approve', 'approve', 'approve', 'approve']);
    const svc = new ApprovalService({ prompter });
    await svc.approve(request(writePlan('UPDATE appointments SET x=1 WHERE id=1')));
    expect((await svc.approve(request(writePlan('UPDATE notes SET x=1 WHERE id=1', 'notes')))).outcome).toBe('approved');
    expect((await svc.approve(request(writePlan('UPDATE appointments SET x=1 WHERE id<100', 'appointments', 1000)))).outcome).toBe('approved');
    expect((await svc.approve(request(writePlan('UPDATE appointments SET x=1 WHERE id=1'), undefined, 's2'))).outcome).toBe('approved');
    expect(prompter.shown).toHaveLength(4);
  });

  it('prompt again after expiry and after revocation', async () => {
    let now = Date.parse('2026-11-22T10:00:00Z');
    const prompter = new ScriptedPrompterForTests(['approve', 'approve', 'approve']);
    const svc = new ApprovalService({ prompter, now: () => now, cacheTtlMs: 30 * 60_000 });
    const plan = writePlan('UPDATE appointments SET x=1 WHERE id=1');
    await svc.approve(request(plan));
    now += 29 * 60_000;
    expect((await svc.approve(request(plan))).outcome).toBe('cached');
    now += 2 * 60_000;
    expect((await svc.approve(request(plan))).outcome).toBe('approved');
    svc.revoke(svc.cached()[0]!.id);
    expect(svc.cached()).toEqual([]);
    expect((await svc.approve(request(plan))).outcome).toBe('approved');
    expect(prompter.shown).toHaveLength(3);
  });

  it('are forgotten on sign-out', async () => {
    const prompter = new ScriptedPrompterForTests(['approve', 'approve']);
    const svc = new ApprovalService({ prompter });
    const plan = writePlan('UPDATE appointments SET x=1 WHERE id=1');
    await svc.approve(request(plan));
    svc.clear();
    expect((await svc.approve(request(plan))).outcome).toBe('approved');
  });
});

describe('tier 3 approvals', () => {
  it('prompt on every call, even identical ones', async () => {
    const prompter = new ScriptedPrompterForTests(['approve', 'approve']);
    const svc = new ApprovalService({ prompter });
    const plan = sensitivePlan('SELECT * FROM patients WHERE vip');
    expect((await svc.approve(request(plan))).outcome).toBe('approved');
    expect((await svc.approve(request(plan))).outcome).toBe('approved');
    expect(prompter.shown).toHaveLength(2);
    expect(svc.cached()).toEqual([]);
  });

  it('cannot be replayed for different arguments: a decision carries the digest it was shown', async () => {
    const prompter = new ScriptedPrompterForTests(['wait', 'wait']);
    const svc = new ApprovalService({ prompter });
    const a = sensitivePlan('SELECT * FROM patients WHERE id = 1');
    const b = sensitivePlan('SELECT * FROM patients');
    const first = svc.approve(request(a));
    await new Promise((r) => setTimeout(r, 10));
    const [pa] = svc.pending();
    svc.decide(pa!.id, 'approve', pa!.digest);
    expect((await first).outcome).toBe('approved');
    const second = svc.approve(request(b));
    await new Promise((r) => setTimeout(r, 10));
    const [pb] = svc.pending();
    expect(pb!.digest).not.toBe(pa!.digest);
    expect(() => svc.decide(pb!.id, 'approve', pa!.digest)).toThrow(/different call/);
    expect(() => svc.decide(pa!.id, 'approve', pa!.digest)).toThrow(/no longer pending/);
    svc.deny(pb!.id);
    expect((await second).outcome).toBe('denied');
  });

  it('binds the digest to the bytes, the RAR, the tool and the target', () => {
    const a = sensitivePlan('SELECT 1');
    expect(callDigest(a)).toBe(callDigest({ ...a }));
    expect(callDigest({ ...a, bytes: 'SELECT 2' })).not.toBe(callDigest(a));
    expect(callDigest({ ...a, authorizationDetails: [{ type: 'postgres', actions: ['SELECT'] }] })).not.toBe(callDigest(a));
    expect(callDigest({ ...a, target: 'postgres://other/db' })).not.toBe(callDigest(a));
  });
});

describe('every approval', () => {
  it('defaults to deny when the prompter has no answer', async () => {
    const svc = new ApprovalService({ prompter: new ScriptedPrompterForTests([]) });
    expect((await svc.approve(request(sensitivePlan('SELECT 1')))).outcome).toBe('denied');
  });

  it('times out as a deny before the MCP client would give up, with progress while waiting', async () => {
    expect(() => new ApprovalService({ prompter: new ScriptedPrompterForTests(), timeoutMs: 60_000 })).toThrow(/shorter/);
    expect(new ApprovalService({ prompter: new ScriptedPrompterForTests() }).timeoutMs).toBe(45_000);
    const svc = new ApprovalService({ prompter: new ScriptedPrompterForTests(['wait']), timeoutMs: 300 });
    const progress: string[] = [];
    const r = await svc.approve({ ...request(sensitivePlan('SELECT 1')), progress: (m: string) => progress.push(m) });
    expect(r.outcome).toBe('timeout');
    expect(progress[0]).toMatch(/Waiting for your approval/);
    expect(svc.pending()).toEqual([]);
  });

  it("closes the prompt when Claude cancels the call", async () => {
    const prompter = new ScriptedPrompterForTests(['wait']);
    const svc = new ApprovalService({ prompter });
    const c = new AbortController();
    const pending = svc.approve(request(sensitivePlan('SELECT 1'), undefined, 's1', c.signal));
    await new Promise((r) => setTimeout(r, 10));
    expect(svc.pending()).toHaveLength(1);
    c.abort();
    expect((await pending).outcome).toBe('cancelled');
    expect(svc.pending()).toEqual([]);
  });

  it('gives parallel calls their own decisions, prompted in arrival order', async () => {
    const prompter = new ScriptedPrompterForTests(['approve', 'deny', 'approve']);
    const svc = new ApprovalService({ prompter });
    const results = await Promise.all(['SELECT 1', 'SELECT 2', 'SELECT 3'].map((s) => svc.approve(request(sensitivePlan(s)))));
    expect(results.map((r) => r.outcome)).toEqual(['approved', 'denied', 'approved']);
    expect(prompter.shown.map((v) => v.argumentsText)).toEqual([
      expect.stringContaining('SELECT 1'),
      expect.stringContaining('SELECT 2'),
      expect.stringContaining('SELECT 3'),
    ]);
  });

  it('asks nothing for tier 1 and refuses tier 4', async () => {
    const prompter = new ScriptedPrompterForTests([]);
    const svc = new ApprovalService({ prompter });
    expect((await svc.approve(request({ ...sensitivePlan('SELECT 1'), tier: 1 }))).outcome).toBe('not_required');
    await expect(svc.approve(request({ ...sensitivePlan('DROP TABLE x'), tier: 4 }))).rejects.toMatchObject({ code: 'POLICY_BLOCKED' });
    expect(prompter.shown).toEqual([]);
  });
});

describe('approvals.tier3 in the configuration', () => {
  const base = {
    idp: { issuer: 'https://idp.example', clientId: 'countersign-desktop' },
    vault: { address: 'https://vault.example' },
    policyFile: 'policy.jsonc',
  };

  it('defaults to the local prompt, accepts idp-when-offered, and refuses anything else by name', () => {
    expect(parseAppConfig(base).approvals.tier3).toBe('local');
    expect(parseAppConfig({ ...base, approvals: { tier3: 'idp-when-offered' } }).approvals).toMatchObject({ tier3: 'idp-when-offered', timeoutSeconds: 45 });
    expect(() => parseAppConfig({ ...base, approvals: { tier3: 'none' } })).toThrow(/approvals\.tier3/);
  });

  it('with idp-when-offered, does not prompt for a tier-3 call that asks the IdP for a privilege, and still prompts for tier 2', async () => {
    const prompter = new ScriptedPrompterForTests(['approve']);
    const svc = new ApprovalService({ prompter, tier3: 'idp-when-offered' });
    const sensitive = sensitivePlan('SELECT * FROM patients');
    sensitive.authorizationDetails = [{ ...sensitive.authorizationDetails[0]!, privileges: ['sensitive'] }];
    expect((await svc.approve(request(sensitive))).outcome).toBe('idp');
    expect(prompter.shown).toHaveLength(0);
    expect((await svc.approve(request(writePlan('UPDATE appointments SET x=1 WHERE id=1')))).outcome).toBe('approved');
    expect(prompter.shown).toHaveLength(1);
  });
});
