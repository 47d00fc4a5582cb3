/**
 * Results too large to answer, through the broker against the lab's real PostgreSQL, IdP and Vault
 * stand-in: a statement whose answer passes the policy's maxResultBytes is cut off after about that
 * many bytes (counted by a proxy between the core and PostgreSQL, i.e. what PostgreSQL actually sent),
 * a write behind such an answer is rolled back (PostgreSQL's own rows say so), and a result larger
 * than Claude Desktop accepts (1 MB) is withheld with a reason instead of being refused there.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultProxy, type FaultProxy } from '../../../lab/fault-proxy.ts';
import { MAX_ANSWER_BYTES } from '../../../main/core/broker/call-bounds.ts';
import { AppError } from '../../../common/errors.ts';
import { createPostgresConnector, runStatement } from '../../../main/core/connectors/postgres/connector.ts';
import { planPostgresCall } from '../../../main/core/connectors/postgres/plan.ts';
import type { Connector } from '../../../main/core/connectors/types.ts';
import { parsePolicy, type PostgresPolicy } from '../../../main/core/policy/policy.ts';
import { call, DEMO_POLICY, settled, startBrokerLab, type BrokerLab } from './lab.ts';

let lab: BrokerLab;
let proxy: FaultProxy;
beforeAll(async () => {
  lab = await startBrokerLab();
  proxy = await startFaultProxy({ host: lab.connection.host, port: lab.connection.port });
});
afterAll(async () => {
  await proxy?.stop();
  await lab?.stop();
});

const text = (r: { content?: unknown[] }): string => (r.content ?? []).map((c) => (c as { text?: string }).text ?? '').join('\n');
const MiB = 1024 * 1024;

/** A broker on the PostgreSQL connector (through the proxy), approving whatever it is asked. */
function through(policy: PostgresPolicy = DEMO_POLICY) {
  const connectors = [createPostgresConnector({ policy, connection: { ...lab.connection, port: proxy.port } })];
  return lab.broker({ connectors, approver: { approve: async () => ({ outcome: 'approved' }) } });
}

describe('a statement whose result passes maxResultBytes', () => {
  it('is refused with RESULT_TOO_LARGE after about that many bytes of a 64 MB value', async () => {
    const { broker, audit } = through();
    const before = proxy.answeredBytes;
    const r = await broker.callTool(call('query', { sql: "SELECT repeat('x', 64000000) AS big" }));
    expect(r.isError).toBe(true);
    expect(text(r)).toMatch(/passed 524288 bytes \(the policy's maxResultBytes\), so it was not read further\. .*\[RESULT_TOO_LARGE\]$/);
    // What PostgreSQL sent before the session was closed: the limit and what the sockets' buffers held, not 64 MB.
    const sent = proxy.answeredBytes - before;
    console.log(`PostgreSQL sent ${sent} bytes of a 64 MB answer before the session was closed`);
    expect(sent).toBeLessThan(16 * MiB);
    expect(audit.records).toHaveLength(1);
    expect(audit.records[0]).toMatchObject({ outcome: 'error', error: { code: 'RESULT_TOO_LARGE' } });
    expect(audit.records[0]!.hops!.find((h) => h.name === 'execute')).toMatchObject({ outcome: 'error', code: 'RESULT_TOO_LARGE' });
    expect(await settled(lab)).toEqual({ roles: [], leases: 0 });
  });

  it('rolls a write back when its RETURNING passes the limit: PostgreSQL still holds the old value', async () => {
    const { broker, audit } = through();
    const [row] = await lab.admin<{ reason: string }>('SELECT reason FROM appointments WHERE id = 3');
    const r = await broker.callTool(
      call('execute', { sql: "UPDATE appointments SET reason = 'changed by an oversized call' WHERE id = $1 RETURNING repeat('x', 3000000) AS big", params: [3] }),
    );
    expect(r.isError).toBe(true);
    expect(text(r)).toMatch(/and the statement was rolled back\. .*\[RESULT_TOO_LARGE\]$/);
    expect(await lab.admin<{ reason: string }>('SELECT reason FROM appointments WHERE id = 3')).toEqual([row]);
    expect(audit.records[0]).toMatchObject({ tier: 2, outcome: 'error', error: { code: 'RESULT_TOO_LARGE' } });
    expect(await settled(lab)).toEqual({ roles: [], leases: 0 });
  });

  it("never calls a committed write rolled back: with the limit at every byte around the write's answers, PostgreSQL's rows agree with the answer", async () => {
    // The answer to COMMIT is not the result: counted with it, a limit a few bytes over the result
    // refused a write PostgreSQL had committed, and told the model it was rolled back.
    await lab.admin('CREATE TABLE IF NOT EXISTS budget_probe (body text NOT NULL)');
    await lab.admin("DO $$ BEGIN CREATE ROLE cs_budget_probe LOGIN PASSWORD 'budget-probe-pw'; EXCEPTION WHEN duplicate_object THEN NULL; END $$");
    await lab.admin('GRANT USAGE ON SCHEMA public TO cs_budget_probe');
    await lab.admin('GRANT INSERT, SELECT ON budget_probe TO cs_budget_probe');
    let probes = 0;
    const write = async (limit: number): Promise<{ answer: string; rows: number }> => {
      const body = `probe-${limit}-${probes++}`;
      const policy = parsePolicy(JSON.stringify({ version: 1, postgres: { ...DEMO_POLICY, limits: { ...DEMO_POLICY.limits, maxResultBytes: limit } } })).postgres as PostgresPolicy;
      const { details } = await planPostgresCall(policy, 'execute', { sql: 'INSERT INTO budget_probe (body) VALUES ($1) RETURNING body', params: [body] });
      let answer = 'ok';
      try {
        await runStatement(lab.connection, 'cs_budget_probe', 'budget-probe-pw', 'budget-probe', details, new AbortController().signal);
      } catch (e) {
        answer = AppError.is(e, 'RESULT_TOO_LARGE') ? 'RESULT_TOO_LARGE' : String(e);
      }
      const [count] = await lab.admin<{ n: number }>('SELECT count(*)::int AS n FROM budget_probe WHERE body = $1', [body]);
      return { answer, rows: count!.n };
    };
    // The least limit the write is answered under, found by bisection; the answer to COMMIT is at most
    // a few dozen bytes, so every limit up to 64 bytes below it is tried.
    let lo = 1;
    let hi = 64 * 1024;
    expect((await write(hi)).answer).toBe('ok');
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if ((await write(mid)).answer === 'ok') hi = mid;
      else lo = mid;
    }
    const disagreements: string[] = [];
    const outcomes = new Set<string>();
    for (let limit = hi - 64; limit <= hi + 2; limit++) {
      const { answer, rows } = await write(limit);
      outcomes.add(answer);
      if ((answer === 'ok') !== (rows === 1)) disagreements.push(`maxResultBytes ${limit}: answered ${answer}, ${rows} row(s) in PostgreSQL`);
    }
    // The sweep crossed the limit: both answers were given.
    expect([...outcomes].sort()).toEqual(['RESULT_TOO_LARGE', 'ok']);
    expect(disagreements).toEqual([]);
  });

  it('answers a result under the limit in full, and a policy can tighten the limit for a table', async () => {
    const ok = await through().broker.callTool(call('query', { sql: "SELECT repeat('x', 400000) AS big" }));
    expect(ok.isError, text(ok)).toBeFalsy();
    expect((ok.structuredContent as { rows: Array<{ big: string }> }).rows[0]!.big).toHaveLength(400_000);
    // The answer Claude Desktop gets is under the 1 MB it accepts.
    expect(Buffer.byteLength(JSON.stringify(ok))).toBeLessThan(1_000_000);

    const tight = parsePolicy(
      JSON.stringify({ version: 1, postgres: { ...DEMO_POLICY, tables: { ...DEMO_POLICY.tables, notes: { sensitiveRows: true, limits: { maxResultBytes: 4096 } } } } }),
    ).postgres as PostgresPolicy;
    const { broker } = through(tight);
    const small = await broker.callTool(call('query', { sql: 'SELECT id FROM notes ORDER BY id LIMIT 1' }));
    expect(small.isError, text(small)).toBeFalsy();
    const big = await broker.callTool(call('query', { sql: "SELECT repeat('x', 8000) AS big FROM notes LIMIT 1" }));
    expect(text(big)).toMatch(/passed 4096 bytes .*\[RESULT_TOO_LARGE\]$/);
    // A write whose whole answer came in the chunk that passed the limit is rolled back all the same.
    const [note] = await lab.admin<{ id: number; body: string }>('SELECT id, body FROM notes ORDER BY id LIMIT 1');
    const write = await broker.callTool(call('execute', { sql: "UPDATE notes SET body = 'changed by an oversized call' WHERE id = $1 RETURNING repeat('x', 8000) AS big", params: [note!.id] }));
    expect(text(write)).toMatch(/passed 4096 bytes .*rolled back\. .*\[RESULT_TOO_LARGE\]$/);
    expect(await lab.admin<{ id: number; body: string }>('SELECT id, body FROM notes WHERE id = $1', [note!.id])).toEqual([note]);
    // Other tables keep the connector's limit.
    const other = await broker.callTool(call('query', { sql: "SELECT repeat('x', 8000) AS big FROM patients LIMIT 1" }));
    expect(other.isError, text(other)).toBeFalsy();
    expect(await settled(lab)).toEqual({ roles: [], leases: 0 });
  });

  it('is not configurable past 1 MiB, since a longer answer than Claude Desktop accepts is withheld anyway', () => {
    const policy = (n: number) => JSON.stringify({ version: 1, postgres: { ...DEMO_POLICY, limits: { ...DEMO_POLICY.limits, maxResultBytes: n } } });
    expect(() => parsePolicy(policy(MiB))).not.toThrow();
    expect(() => parsePolicy(policy(MiB + 1))).toThrow(AppError);
  });
});

describe('a result larger than the 1 MB Claude Desktop accepts', () => {
  it('is withheld with RESULT_TOO_LARGE and recorded, the call’s credential revoked as always', async () => {
    const real = createPostgresConnector({ policy: DEMO_POLICY, connection: lab.connection });
    // A connector whose target answers just over what Claude Desktop accepts: Claude would refuse it
    // after the call ran, and the record would say the call succeeded.
    const huge: Connector = {
      ...real,
      async execute(ctx) {
        await real.execute(ctx);
        return { content: [{ type: 'text', text: 'y'.repeat(MAX_ANSWER_BYTES) }] };
      },
    };
    const { broker, audit } = lab.broker({ connectors: [huge] });
    const r = await broker.callTool(call('query', { sql: 'SELECT id FROM patients LIMIT 1' }));
    expect(r.isError).toBe(true);
    expect(text(r)).toMatch(/^The tool's result is \d+ bytes, more than the 1000000 Claude Desktop accepts in one answer, so Countersign withheld it\..*\[RESULT_TOO_LARGE\]$/);
    expect(Buffer.byteLength(JSON.stringify(r))).toBeLessThan(1_000);
    expect(audit.records[0]).toMatchObject({ outcome: 'error', error: { code: 'RESULT_TOO_LARGE' } });
    expect(audit.records[0]!.hops!.map((h) => h.name)).toEqual(expect.arrayContaining(['execute', 'revoke', 'revoke_check']));
    expect(await settled(lab)).toEqual({ roles: [], leases: 0 });
  });

  it('is withheld when a statement under maxResultBytes renders to more than that, its value being in the table and in the rows', async () => {
    // 500,000 characters are under the default 512 KiB PostgreSQL may send; the answer holds them twice.
    const { broker, audit } = through();
    const r = await broker.callTool(call('query', { sql: "SELECT repeat('x', 500000) AS big" }));
    expect(r.isError).toBe(true);
    expect(text(r)).toMatch(/more than the 1000000 Claude Desktop accepts .*\[RESULT_TOO_LARGE\]$/);
    expect(audit.records[0]).toMatchObject({ outcome: 'error', error: { code: 'RESULT_TOO_LARGE' } });
    expect(await settled(lab)).toEqual({ roles: [], leases: 0 });
  });
});
