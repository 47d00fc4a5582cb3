/**
 * Tier-2 approvals through the broker, the real ApprovalService and the lab's real PostgreSQL, IdP and
 * Vault stand-in: what a yes covers is the class, the tables and the changes the person saw, and only
 * once the call it was given for succeeded. The prompter is the scripted prompter FOR TESTS.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApprovalService } from '../../../main/core/approvals/approval-service.ts';
import { approverFor } from '../../../main/core/approvals/broker-approver.ts';
import { ScriptedPrompterForTests } from '../../../main/core/approvals/prompter.ts';
import { createPostgresConnector } from '../../../main/core/connectors/postgres/connector.ts';
import { call, DEMO_POLICY, settled, startBrokerLab, type BrokerLab } from './lab.ts';

let lab: BrokerLab;
beforeAll(async () => {
  lab = await startBrokerLab();
});
afterAll(async () => {
  await lab?.stop();
});

const text = (r: { content?: unknown[] }): string => (r.content ?? []).map((c) => (c as { text?: string }).text ?? '').join('\n');

/** A broker whose approvals come from a real ApprovalService answering from `script`. */
function governed(script: Array<'approve' | 'deny'>, policy = DEMO_POLICY) {
  const prompter = new ScriptedPrompterForTests(script);
  const approvals = new ApprovalService({ prompter });
  const connectors = [createPostgresConnector({ policy, connection: lab.connection })];
  const { broker, audit } = lab.broker({ approver: approverFor(approvals), connectors });
  const execute = (sql: string, params?: unknown[]) => broker.callTool(call('execute', { sql, ...(params ? { params } : {}) }));
  return { broker, audit, approvals, prompter, execute };
}

describe('a tier-2 approval through the broker', () => {
  it('covers a later write of the same class to the same table, and nothing else it was not given for', async () => {
    const g = governed(['approve', 'deny', 'deny', 'deny', 'deny']);
    const first = await g.execute("UPDATE appointments SET reason = reason || '' WHERE id = $1", [1]);
    expect(first.isError, text(first)).toBeFalsy();
    expect(g.approvals.cached()).toMatchObject([{ targets: ['public.appointments'], changes: ['UPDATE public.appointments'] }]);

    const same = await g.execute("UPDATE appointments SET reason = reason || '' WHERE id = $1", [2]);
    expect(same.isError, text(same)).toBeFalsy();
    expect(g.audit.records[1]!.hops!.find((h) => h.name === 'approval')).toMatchObject({ outcome: 'cached' });
    expect(g.prompter.shown).toHaveLength(1);

    // Each of these is asked again (and denied by the script), so none reaches the database.
    const others = [
      "UPDATE notes SET body = body || '' WHERE id = 1",
      "UPDATE appointments SET reason = patients.full_name FROM patients WHERE appointments.patient_id = patients.id AND appointments.id = 1",
      'DELETE FROM appointments WHERE id = -1',
    ];
    for (const sql of others) {
      const r = await g.execute(sql);
      expect(r.isError).toBe(true);
      expect(text(r)).toContain('APPROVAL_DENIED');
    }
    expect(g.prompter.shown).toHaveLength(1 + others.length);
    expect(await settled(lab)).toEqual({ roles: [], leases: 0 });
  });

  it('keeps no approval from a write that changed no row: the next write of the same scope is asked again', async () => {
    const g = governed(['approve', 'deny']);
    const [before] = await lab.admin<{ n: number }>('SELECT count(*)::int AS n FROM notes');
    // The bait: a DELETE of nothing, approved.
    const nothing = await g.execute('DELETE FROM notes WHERE id = $1', [-1]);
    expect(nothing.isError, text(nothing)).toBeFalsy();
    expect(text(nothing)).toContain('DELETE: 0 row(s) affected');
    expect(g.approvals.cached()).toEqual([]);
    // The same scope, deleting rows: asked again, denied by the script, and PostgreSQL still holds them.
    const real = await g.execute('DELETE FROM notes WHERE id > 0 AND id <= 10');
    expect(text(real)).toContain('APPROVAL_DENIED');
    expect(g.prompter.shown).toHaveLength(2);
    expect(await lab.admin<{ n: number }>('SELECT count(*)::int AS n FROM notes')).toEqual([before]);
    expect(await settled(lab)).toEqual({ roles: [], leases: 0 });
  });

  it('does not carry an approval for an INSERT to an INSERT … ON CONFLICT DO UPDATE of the same table', async () => {
    const g = governed(['approve', 'deny']);
    const insert = await g.execute('INSERT INTO notes (patient_id, body) VALUES ($1, $2)', [1, 'approval-scope test']);
    expect(insert.isError, text(insert)).toBeFalsy();
    const upsert = await g.execute('INSERT INTO notes (patient_id, body) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET body = notes.body', [1, 'upsert']);
    expect(text(upsert)).toContain('APPROVAL_DENIED');
    expect(g.prompter.shown).toHaveLength(2);
    await lab.admin("DELETE FROM notes WHERE body = 'approval-scope test'");
  });

  it('leaves nothing cached when the approved write is rolled back for its row ceiling', async () => {
    const tight = { ...DEMO_POLICY, limits: { ...DEMO_POLICY.limits, maxAffectedRows: 2 } };
    const g = governed(['approve', 'deny'], tight);
    const before = await lab.admin<{ n: number }>("SELECT count(*)::int AS n FROM appointments WHERE status = 'cancelled'");

    const over = await g.execute("UPDATE appointments SET status = 'cancelled' WHERE id <= $1", [5]);
    expect(over.isError).toBe(true);
    expect(text(over)).toContain('rolled back');
    expect(g.approvals.cached()).toEqual([]);
    const after = await lab.admin<{ n: number }>("SELECT count(*)::int AS n FROM appointments WHERE status = 'cancelled'");
    expect(after[0]!.n).toBe(before[0]!.n);

    // Within the ceiling, but the person is asked again (and says no this time): the rolled-back call proved nothing.
    const small = await g.execute("UPDATE appointments SET status = 'cancelled' WHERE id = $1", [1]);
    expect(text(small)).toContain('APPROVAL_DENIED');
    expect(g.prompter.shown).toHaveLength(2);
    const unchanged = await lab.admin<{ status: string }>('SELECT status FROM appointments WHERE id = 1');
    expect(unchanged[0]!.status).not.toBe('cancelled');
    expect(await settled(lab)).toEqual({ roles: [], leases: 0 });
  });
});
