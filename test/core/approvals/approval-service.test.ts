import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApprovalService } from '../../../main/core/approvals/approval-service.ts';
import { CALL_DEADLINE_MS } from '../../../main/core/mcp/mcp-session.ts';
import { callDigest } from '../../../main/core/approvals/prompt-view.ts';
import { ScriptedPrompterForTests } from '../../../main/core/approvals/prompter.ts';
import { AuditStore } from '../../../main/core/audit/store.ts';
import type { CallPlan } from '../../../main/core/connectors/types.ts';
import type { SecretStore } from '../../../main/core/ports.ts';
import { parseAppConfig } from '../../../main/core/config/config.ts';

const alice = { sub: 'alice-sub', name: 'Alice' };

function writePlan(sql: string, table = 'appointments', rowCeiling = 10): CallPlan {
  return scoped(sql, 'UPDATE', [table], [`UPDATE ${table}`], rowCeiling);
}

/** A tier-2 plan whose scope is written out: its class, every table it touches and every change it makes. */
function scoped(sql: string, statementClass: string, targets: string[], changes: string[], rowCeiling = 10): CallPlan {
  const table = targets[0] ?? '';
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
    approvalScope: { statementClass, targets, changes, rowCeiling },
  };
}

/** Approves one call and reports it succeeded, as the broker does after running it. */
async function approveAndRun(svc: ApprovalService, plan: CallPlan, succeeded = true) {
  const r = await svc.approve(request(plan));
  if (r.approvalId) svc.settle(r.approvalId, succeeded);
  return r;
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
    const first = await approveAndRun(svc, writePlan("UPDATE appointments SET status='done' WHERE id=1"));
    const second = await approveAndRun(svc, writePlan("UPDATE appointments SET status='done' WHERE id=2"));
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
    await approveAndRun(svc, writePlan('UPDATE appointments SET x=1 WHERE id=1'));
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
    await approveAndRun(svc, plan);
    now += 29 * 60_000;
    expect((await svc.approve(request(plan))).outcome).toBe('cached');
    now += 2 * 60_000;
    expect((await approveAndRun(svc, plan)).outcome).toBe('approved');
    svc.revoke(svc.cached()[0]!.id);
    expect(svc.cached()).toEqual([]);
    expect((await svc.approve(request(plan))).outcome).toBe('approved');
    expect(prompter.shown).toHaveLength(3);
  });

  it('are forgotten on sign-out', async () => {
    const prompter = new ScriptedPrompterForTests(['approve', 'approve']);
    const svc = new ApprovalService({ prompter });
    const plan = writePlan('UPDATE appointments SET x=1 WHERE id=1');
    await approveAndRun(svc, plan);
    svc.clear();
    expect((await svc.approve(request(plan))).outcome).toBe('approved');
  });
});

describe('a cached tier-2 approval covers only what was approved', () => {
  const UPDATE_A = scoped('UPDATE public.a SET x = 1 WHERE id = 1', 'UPDATE', ['public.a'], ['UPDATE public.a']);

  /** Approves `first` (its call succeeds), then asks for `second`: the answer says whether the cache covered it. */
  async function reuse(first: CallPlan, second: CallPlan) {
    const prompter = new ScriptedPrompterForTests(['approve', 'deny']);
    const svc = new ApprovalService({ prompter });
    expect((await approveAndRun(svc, first)).outcome).toBe('approved');
    return { outcome: (await svc.approve(request(second))).outcome, prompts: prompter.shown.length, svc };
  }

  it('covers a later call of the same class on the same tables, and a call on fewer of them', async () => {
    expect((await reuse(UPDATE_A, scoped('UPDATE public.a SET x = 2 WHERE id = 2', 'UPDATE', ['public.a'], ['UPDATE public.a']))).outcome).toBe('cached');
    const ab = scoped('UPDATE public.a SET x = b.x FROM public.b WHERE a.id = b.id', 'UPDATE', ['public.a', 'public.b'], ['UPDATE public.a']);
    expect((await reuse(ab, UPDATE_A)).outcome).toBe('cached');
  });

  it('does not carry an approval for table A to a call on A and B', async () => {
    const ab = scoped('UPDATE public.a SET x = b.x FROM public.b WHERE a.id = b.id', 'UPDATE', ['public.a', 'public.b'], ['UPDATE public.a']);
    const r = await reuse(UPDATE_A, ab);
    expect(r).toMatchObject({ outcome: 'denied', prompts: 2 });
  });

  it('does not carry an approval for table A to table B', async () => {
    expect((await reuse(UPDATE_A, scoped('UPDATE public.b SET x = 1 WHERE id = 1', 'UPDATE', ['public.b'], ['UPDATE public.b']))).outcome).toBe('denied');
  });

  it('matches schema-qualified names exactly: public.a does not cover other.a', async () => {
    expect((await reuse(UPDATE_A, scoped('UPDATE other.a SET x = 1 WHERE id = 1', 'UPDATE', ['other.a'], ['UPDATE other.a']))).outcome).toBe('denied');
    expect((await reuse(UPDATE_A, scoped('UPDATE "public.a" SET x = 1 WHERE id = 1', 'UPDATE', ['public."public.a"'], ['UPDATE public."public.a"']))).outcome).toBe('denied');
  });

  it('does not carry an approval to update A while reading B to an update of B while reading A', async () => {
    const writeA = scoped('UPDATE public.a SET x = b.x FROM public.b WHERE a.id = b.id', 'UPDATE', ['public.a', 'public.b'], ['UPDATE public.a']);
    const writeB = scoped('UPDATE public.b SET x = a.x FROM public.a WHERE a.id = b.id', 'UPDATE', ['public.a', 'public.b'], ['UPDATE public.b']);
    expect((await reuse(writeA, writeB)).outcome).toBe('denied');
  });

  it('does not carry an approval for INSERT to an INSERT … ON CONFLICT DO UPDATE', async () => {
    const insert = scoped('INSERT INTO public.a (id) VALUES (1)', 'INSERT', ['public.a'], ['INSERT public.a']);
    const upsertSameClass = scoped('INSERT INTO public.a (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET x = 1', 'INSERT', ['public.a'], ['INSERT_ON_CONFLICT_UPDATE public.a']);
    const upsert = scoped('INSERT INTO public.a (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET x = 1', 'INSERT_ON_CONFLICT_UPDATE', ['public.a'], ['INSERT_ON_CONFLICT_UPDATE public.a']);
    expect((await reuse(insert, upsertSameClass)).outcome).toBe('denied');
    expect((await reuse(insert, upsert)).outcome).toBe('denied');
  });

  it('does not carry an approval for UPDATE to a DELETE of the same rows', async () => {
    expect((await reuse(UPDATE_A, scoped('DELETE FROM public.a WHERE id = 1', 'DELETE', ['public.a'], ['DELETE public.a']))).outcome).toBe('denied');
  });

  it('keeps nothing for an approval that names no table, and an approved call covers no call that names none', async () => {
    const none = scoped("SELECT nextval('s')", 'UPDATE', [], []);
    const { outcome, svc } = await reuse(none, none);
    expect(outcome).toBe('denied');
    expect(svc.cached()).toEqual([]);
    expect((await reuse(UPDATE_A, scoped("SELECT nextval('s')", 'UPDATE', [], []))).outcome).toBe('denied');
    // Tables named but no change listed: nothing to cover either.
    expect((await reuse(UPDATE_A, scoped('UPDATE public.a SET x = 1 WHERE id = 1', 'UPDATE', ['public.a'], []))).outcome).toBe('denied');
  });

  it('does not carry an approval to a higher row ceiling', async () => {
    expect((await reuse(UPDATE_A, scoped('UPDATE public.a SET x = 1 WHERE id < 100', 'UPDATE', ['public.a'], ['UPDATE public.a'], 1000))).outcome).toBe('denied');
  });

  it('keeps nothing when the approved call fails, and drops a cached approval whose call fails', async () => {
    const prompter = new ScriptedPrompterForTests(['approve', 'approve', 'approve']);
    const svc = new ApprovalService({ prompter });
    const first = await approveAndRun(svc, UPDATE_A, false);
    expect(first.outcome).toBe('approved');
    expect(svc.cached()).toEqual([]);
    expect((await approveAndRun(svc, UPDATE_A)).outcome).toBe('approved');
    expect(svc.cached()).toHaveLength(1);
    const covered = await svc.approve(request(UPDATE_A));
    expect(covered.outcome).toBe('cached');
    svc.settle(covered.approvalId!, false);
    expect(svc.cached()).toEqual([]);
    expect((await svc.approve(request(UPDATE_A))).outcome).toBe('approved');
    expect(prompter.shown).toHaveLength(3);
  });

  it('covers nothing while the approved call is still running', async () => {
    const prompter = new ScriptedPrompterForTests(['approve', 'deny']);
    const svc = new ApprovalService({ prompter });
    const first = await svc.approve(request(UPDATE_A));
    expect(first.outcome).toBe('approved');
    expect((await svc.approve(request(UPDATE_A))).outcome).toBe('denied');
    svc.settle(first.approvalId!, true);
    expect((await svc.approve(request(UPDATE_A))).outcome).toBe('cached');
  });

  it('forgets an approval whose call ends after sign-out', async () => {
    const prompter = new ScriptedPrompterForTests(['approve']);
    const svc = new ApprovalService({ prompter });
    const first = await svc.approve(request(UPDATE_A));
    svc.clear();
    svc.settle(first.approvalId!, true);
    expect(svc.cached()).toEqual([]);
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

  it("keeps the approval's time-out inside the call's 55 s deadline: at most 50 s, a longer one refused by name", () => {
    expect(CALL_DEADLINE_MS).toBe(55_000);
    expect(parseAppConfig({ ...base, approvals: { timeoutSeconds: 50 } }).approvals.timeoutSeconds).toBe(50);
    expect(() => parseAppConfig({ ...base, approvals: { timeoutSeconds: 51 } })).toThrow(/approvals\.timeoutSeconds/);
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
