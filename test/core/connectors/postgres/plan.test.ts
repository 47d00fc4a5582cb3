import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { planPostgresCall } from '../../../../main/core/connectors/postgres/plan.ts';
import { parsePolicy, type PostgresPolicy } from '../../../../main/core/policy/policy.ts';
import { AppError } from '../../../../common/errors.ts';

const demo = parsePolicy(readFileSync(new URL('../../../../main/core/policy/demo-clinic.policy.jsonc', import.meta.url), 'utf8'))
  .postgres as PostgresPolicy;

async function errorCode(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (error) {
    return AppError.is(error) ? error.code : 'not-an-AppError';
  }
}

describe('planning a PostgreSQL call', () => {
  it('makes a read tier 1 with a RAR naming every table and the statement digest, for the read credential', async () => {
    const { plan } = await planPostgresCall(demo, 'query', {
      sql: 'SELECT a.starts_at FROM appointments a JOIN patients p ON p.id = a.patient_id',
    });
    expect(plan.tier).toBe(1);
    expect(plan.audience).toBe('countersign-vault');
    expect(plan.credential).toMatchObject({ kind: 'vault-database', role: 'clinic-read', dbRole: 'clinic-read', authMount: 'jwt' });
    expect(plan.authorizationDetails).toEqual([
      {
        type: 'postgres',
        locations: ['postgres://lab/clinic'],
        actions: ['SELECT'],
        identifier: 'appointments',
        tables: ['appointments', 'patients'],
        bounded: true,
        statement_digest: expect.stringMatching(/^sha256:[0-9a-f]{64}$/),
      },
    ]);
  });

  it('makes include_sensitive a tier-3 call asking for the sensitive privilege and credential', async () => {
    const { plan } = await planPostgresCall(demo, 'query', { sql: 'SELECT * FROM patients', include_sensitive: true });
    expect(plan.tier).toBe(3);
    expect(plan.authorizationDetails[0]?.privileges).toEqual(['sensitive']);
    expect(plan.credential).toMatchObject({ role: 'clinic-sensitive' });
  });

  it('makes a bounded write tier 2 with an approval scope and the write credential', async () => {
    const { plan, details } = await planPostgresCall(demo, 'execute', {
      sql: 'UPDATE appointments SET status = $1 WHERE id = $2',
      params: ['cancelled', 1],
    });
    expect(plan.tier).toBe(2);
    expect(plan.credential).toMatchObject({ role: 'clinic-write' });
    expect(plan.approvalScope).toEqual({ statementClass: 'UPDATE', targets: ['appointments'], changes: ['UPDATE appointments'], rowCeiling: 50 });
    expect(details.limits.statementTimeoutMs).toBe(3000);
    expect(plan.bytes).toContain('cancelled');
  });

  it('makes an unbounded delete tier 3 and DROP tier 4', async () => {
    expect((await planPostgresCall(demo, 'execute', { sql: 'DELETE FROM notes' })).plan.tier).toBe(3);
    expect((await planPostgresCall(demo, 'execute', { sql: 'DROP TABLE notes' })).plan.tier).toBe(4);
  });

  it('makes a statement touching a table the policy does not list tier 4', async () => {
    const { plan } = await planPostgresCall(demo, 'query', { sql: 'SELECT * FROM pg_authid' });
    expect(plan.tier).toBe(4);
    expect(plan.reason).toContain('pg_authid');
  });

  it('never lets a policy entry lower a tier below the statement kind', async () => {
    const lax: PostgresPolicy = { ...demo, tables: { notes: { tier: 1 } }, tools: { execute: { tier: 1 } } };
    expect((await planPostgresCall(lax, 'execute', { sql: 'TRUNCATE notes' })).plan.tier).toBe(4);
    expect((await planPostgresCall(lax, 'execute', { sql: 'DELETE FROM notes WHERE id = 1' })).plan.tier).toBe(2);
  });

  it('lets a policy entry raise a tier', async () => {
    const strict: PostgresPolicy = { ...demo, tables: { ...demo.tables, notes: { tier: 3 } } };
    expect((await planPostgresCall(strict, 'query', { sql: 'SELECT * FROM notes' })).plan.tier).toBe(3);
  });

  it('refuses a write sent to query, a read sent to execute and malformed arguments', async () => {
    expect(await errorCode(planPostgresCall(demo, 'query', { sql: "UPDATE notes SET body = 'x' WHERE id = 1" }))).toBe('SQL_NOT_READ_ONLY');
    expect(await errorCode(planPostgresCall(demo, 'query', { sql: 'WITH d AS (DELETE FROM notes WHERE id = 1 RETURNING 1) SELECT * FROM d' }))).toBe(
      'SQL_NOT_READ_ONLY',
    );
    expect(await errorCode(planPostgresCall(demo, 'execute', { sql: 'SELECT 1' }))).toBe('INPUT_INVALID');
    expect(await errorCode(planPostgresCall(demo, 'query', { sql: 42 }))).toBe('INPUT_INVALID');
    expect(await errorCode(planPostgresCall(demo, 'query', { sql: 'SELECT 1', extra: true }))).toBe('INPUT_INVALID');
    expect(await errorCode(planPostgresCall(demo, 'describe_table', { table: 'x; DROP TABLE y' }))).toBe('INPUT_INVALID');
  });

  it('plans the catalog tools as tier-1 reads', async () => {
    expect((await planPostgresCall(demo, 'list_tables', {})).plan.tier).toBe(1);
    const { plan, details } = await planPostgresCall(demo, 'describe_table', { table: 'patients' });
    expect(plan.tier).toBe(1);
    expect(details.params).toEqual(['public', 'patients']);
  });
});
