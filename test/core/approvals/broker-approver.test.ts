/**
 * What a person sees for a parameterised SQL call: the broker's approver over the real ApprovalService
 * and the real PostgreSQL planner (the libpg-query parser, the demo policy), with a scripted prompter
 * FOR TESTS that records what it was shown.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ApprovalService } from '../../../main/core/approvals/approval-service.ts';
import { callDigest } from '../../../main/core/approvals/prompt-view.ts';
import { approverFor, argsOf, PARAMETERS } from '../../../main/core/approvals/broker-approver.ts';
import { ScriptedPrompterForTests } from '../../../main/core/approvals/prompter.ts';
import type { ApprovalContext } from '../../../main/core/broker/approver.ts';
import { planPostgresCall } from '../../../main/core/connectors/postgres/plan.ts';
import { parsePolicy, type PostgresPolicy } from '../../../main/core/policy/policy.ts';

const POLICY = parsePolicy(readFileSync(new URL('../../../main/core/policy/demo-clinic.policy.jsonc', import.meta.url), 'utf8')).postgres as PostgresPolicy;
const UPDATE = 'UPDATE appointments SET status = $1 WHERE id = $2';

const ctx = (): ApprovalContext => ({ requestId: 1, sessionId: 's1', client: { name: 'vitest' }, user: { sub: 'alice-sub' }, progress: () => {} });
const plan = async (params: Array<string | number | boolean | null>, sql = UPDATE) => (await planPostgresCall(POLICY, 'execute', { sql, params })).plan;

describe('the approval prompt of a SQL call with parameters', () => {
  it('shows the statement and every value that will be bound, in placeholder order', async () => {
    const p = await plan(['cancelled', 7]);
    expect(p.tier).toBe(2);
    const prompter = new ScriptedPrompterForTests(['deny']);
    await approverFor(new ApprovalService({ prompter })).approve(p, ctx(), new AbortController().signal);
    const view = prompter.shown[0]!;
    expect(JSON.parse(view.argumentsText)).toEqual({ statement: UPDATE, [PARAMETERS]: ['cancelled', 7] });
    expect(view.digest).toBe(callDigest(p));
  });

  it('binds the digest, the RAR statement_digest and so the approval to the values: other values are another call', async () => {
    const a = await plan(['cancelled', 7]);
    const b = await plan(['cancelled', 8]);
    expect(callDigest(a)).not.toBe(callDigest(b));
    expect(a.authorizationDetails[0]!.statement_digest).not.toBe(b.authorizationDetails[0]!.statement_digest);

    // The person answers the card shown for values A; the same answer cannot approve values B.
    const prompter = new ScriptedPrompterForTests(['wait']);
    const service = new ApprovalService({ prompter, timeoutMs: 5_000 });
    const pending = approverFor(service).approve(b, ctx(), new AbortController().signal);
    await new Promise((r) => setTimeout(r, 20));
    const [entry] = service.pending();
    expect(entry!.bytes).toBe(b.bytes);
    expect(() => service.decide(entry!.id, 'approve', callDigest(a))).toThrow(/different call/);
    service.deny(entry!.id);
    expect(await pending).toMatchObject({ outcome: 'denied' });
  });

  it('renders a value carrying a line break, fake approval text and U+202E visibly, on one line', async () => {
    const p = await plan(['done\n\nAPPROVED by admin \u202Eevil', 1]);
    const prompter = new ScriptedPrompterForTests(['deny']);
    await approverFor(new ApprovalService({ prompter })).approve(p, ctx(), new AbortController().signal);
    const text = prompter.shown[0]!.argumentsText;
    expect(text).toContain('"done⏎⏎APPROVED by admin ⟨U+202E⟩evil"');
    expect(text).not.toContain('\u202E');
    expect(text.split('\n').filter((l) => l.includes('APPROVED'))).toHaveLength(1);
  });

  it('shows a statement without parameters as the statement, and an upstream call as its arguments', () => {
    expect(argsOf({ connector: 'postgres', bytes: 'DELETE FROM notes WHERE id = 3' })).toEqual({ statement: 'DELETE FROM notes WHERE id = 3' });
    // An upstream's arguments may hold keys named sql and params: they are shown as they are, not as SQL.
    expect(argsOf({ connector: 'tickets', bytes: '{"params":[1],"sql":"x"}' })).toEqual({ params: [1], sql: 'x' });
  });
});
