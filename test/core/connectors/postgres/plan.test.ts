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
        identifier: 'public.appointments',
        tables: ['public.appointments', 'public.patients'],
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
    expect(plan.approvalScope).toEqual({ statementClass: 'UPDATE', targets: ['public.appointments'], changes: ['UPDATE public.appointments'], rowCeiling: 50 });
    expect(details.limits.statementTimeoutMs).toBe(3000);
    expect(plan.bytes).toContain('cancelled');
  });

  it('makes an unbounded delete tier 3 and DROP tier 4', async () => {
    expect((await planPostgresCall(demo, 'execute', { sql: 'DELETE FROM notes' })).plan.tier).toBe(3);
    expect((await planPostgresCall(demo, 'execute', { sql: 'DROP TABLE notes' })).plan.tier).toBe(4);
  });

  it('makes a statement touching a table the policy does not list tier 4, naming it qualified', async () => {
    const { plan } = await planPostgresCall(demo, 'query', { sql: 'SELECT * FROM billing' });
    expect(plan.tier).toBe(4);
    expect(plan.reason).toContain('public.billing');
  });

  it('refuses reads of PostgreSQL catalog relations, qualified or not', async () => {
    expect(await errorCode(planPostgresCall(demo, 'query', { sql: 'SELECT * FROM pg_authid' }))).toBe('SQL_UNCLASSIFIABLE');
    expect(await errorCode(planPostgresCall(demo, 'query', { sql: 'SELECT * FROM pg_catalog.pg_stat_activity' }))).toBe('SQL_UNCLASSIFIABLE');
    expect(await errorCode(planPostgresCall(demo, 'query', { sql: 'SELECT * FROM information_schema.tables' }))).toBe('SQL_UNCLASSIFIABLE');
  });

  it('reads policy table keys written without a schema as public tables', async () => {
    const strict: PostgresPolicy = { ...demo, tables: { ...demo.tables, 'public.notes': { tier: 3 }, patients: { tier: 2 } } };
    expect((await planPostgresCall(strict, 'query', { sql: 'SELECT * FROM notes' })).plan.tier).toBe(3);
    expect((await planPostgresCall(strict, 'query', { sql: 'SELECT * FROM public.patients' })).plan.tier).toBe(2);
  });

  it('names every function in the RAR and lets a read call only functions known to be free of side effects', async () => {
    const { plan } = await planPostgresCall(demo, 'query', { sql: 'SELECT lower(full_name), count(*) FROM patients GROUP BY 1' });
    expect(plan.tier).toBe(1);
    expect(plan.authorizationDetails[0]?.functions).toEqual(['pg_catalog.count', 'pg_catalog.lower']);
    for (const sql of [
      "SELECT nextval('patients_id_seq')",
      'SELECT pg_advisory_lock(1)',
      "SELECT pg_catalog.set_config('search_path', 'evil', false)",
      'SELECT pg_terminate_backend(1)',
      "SELECT pg_notify('c', 'x')",
      "SELECT query_to_xml('SELECT * FROM notes', true, false, '')",
      "SELECT * FROM ts_stat('SELECT body::tsvector FROM notes')",
      "SELECT pg_read_file('/etc/passwd')",
      "SELECT lo_import('/etc/passwd')",
      
      "SELECT dblink('host=x', 'DELETE FROM notes')",
      "SELECT public.lower('x')",
      'SELECT my_function()',
      'SELECT * FROM patients WHERE id = leak(id)',
    ]) {
      expect(await errorCode(planPostgresCall(demo, 'query', { sql })), sql).toBe('SQL_FUNCTION_NOT_ALLOWED');
      expect(await errorCode(planPostgresCall(demo, 'execute', { sql })), sql).toBe('SQL_FUNCTION_NOT_ALLOWED');
    }
  });

  it('admits a function with effects only where the policy lists it for review: tier 3, through execute, named in the RAR', async () => {
    const reviewed: PostgresPolicy = { ...demo, functions: { allow: ['public.mask_mrn'], review: ['nextval'] } };
    const sql = "SELECT nextval('patients_id_seq')";
    expect(await errorCode(planPostgresCall(reviewed, 'query', { sql }))).toBe('SQL_NOT_READ_ONLY');
    const { plan, details } = await planPostgresCall(reviewed, 'execute', { sql });
    expect(plan.tier).toBe(3);
    expect(details.readOnly).toBe(false);
    expect(plan.authorizationDetails[0]).toMatchObject({ actions: ['EXECUTE', 'SELECT'], functions: ['pg_catalog.nextval'] });
    expect((await planPostgresCall(reviewed, 'query', { sql: 'SELECT public.mask_mrn(mrn) FROM patients' })).plan.tier).toBe(1);
  });

  it('sends writes hidden in a read to execute at their real tier: CTE writes, locks, upserts and EXPLAIN ANALYZE', async () => {
    const cases: Array<[string, number]> = [
      ['WITH d AS (DELETE FROM notes WHERE id = 1 RETURNING 1) SELECT * FROM d', 2],
      ['SELECT * FROM appointments WHERE id = 1 FOR UPDATE', 2],
      ["INSERT INTO notes (id, patient_id, body) VALUES (1, 1, 'x') ON CONFLICT (id) DO UPDATE SET body = 'y'", 2],
      ['EXPLAIN ANALYZE DELETE FROM notes', 3],
      ['SELECT * INTO copy FROM notes', 4],
    ];
    for (const [sql, tier] of cases) {
      expect(await errorCode(planPostgresCall(demo, 'query', { sql })), sql).toBe('SQL_NOT_READ_ONLY');
      expect((await planPostgresCall(demo, 'execute', { sql })).plan.tier, sql).toBe(tier);
    }
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
