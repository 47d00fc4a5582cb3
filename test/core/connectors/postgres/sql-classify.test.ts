import { describe, expect, it } from 'vitest';
import { classifySql } from '../../../../main/core/connectors/postgres/sql-classify.ts';
import { planPostgresCall } from '../../../../main/core/connectors/postgres/plan.ts';
import { parsePolicy, type PostgresPolicy } from '../../../../main/core/policy/policy.ts';
import { readFileSync } from 'node:fs';

const DEMO_POLICY = parsePolicy(readFileSync(new URL('../../../../main/core/policy/demo-clinic.policy.jsonc', import.meta.url), 'utf8')).postgres as PostgresPolicy;
import { AppError } from '../../../../common/errors.ts';

async function code(sql: string): Promise<string | undefined> {
  try {
    await classifySql(sql);
    return undefined;
  } catch (error) {
    return AppError.is(error) ? error.code : 'not-an-AppError';
  }
}

describe('classifySql', () => {
  it('names every table a read touches through CTEs, joins and sub-queries, schema-qualified, without the CTE names', async () => {
    const c = await classifySql(
      'WITH recent AS (SELECT * FROM notes) SELECT p.* FROM patients p JOIN recent r ON r.patient_id = p.id WHERE p.id IN (SELECT patient_id FROM appointments)',
    );
    expect(c.kind).toBe('SELECT');
    expect(c.actions).toEqual(['SELECT']);
    expect(c.tables).toEqual(['public.appointments', 'public.notes', 'public.patients']);
    expect(c.identifier).toBe('public.notes');
    expect(c.readOnly).toBe(true);
  });

  it('names the table a COMMENT ON changes, for the table itself or one of its columns', async () => {
    for (const sql of ["COMMENT ON TABLE patients IS 'x'", "COMMENT ON COLUMN patients.mrn IS 'x'", "COMMENT ON COLUMN public.patients.mrn IS 'x'"]) {
      const c = await classifySql(sql);
      expect(c.kind, sql).toBe('DDL');
      expect(c.tables, sql).toEqual(['public.patients']);
    }
  });

  it('finds a DELETE hidden in a data-modifying CTE of a SELECT and marks it not read-only', async () => {
    const c = await classifySql('WITH gone AS (DELETE FROM notes RETURNING *) SELECT count(*) FROM gone');
    expect(c.actions).toEqual(['DELETE', 'SELECT']);
    expect(c.tables).toEqual(['public.notes']);
    expect(c.changes).toEqual(['DELETE public.notes']);
    expect(c.readOnly).toBe(false);
    expect(c.bounded).toBe(false);
  });

  it('finds writes in WITH at any depth: inside a sub-query, a nested WITH and a set operation', async () => {
    const c = await classifySql(
      'SELECT * FROM (WITH a AS (WITH b AS (UPDATE appointments SET status = $1 WHERE id = 1 RETURNING id) SELECT * FROM b) SELECT * FROM a) x UNION ALL SELECT 1',
    );
    expect(c.changes).toEqual(['UPDATE public.appointments']);
    expect(c.readOnly).toBe(false);
  });

  it('treats a DELETE without WHERE as unbounded and with a column condition as bounded', async () => {
    expect((await classifySql('DELETE FROM notes')).bounded).toBe(false);
    expect((await classifySql('DELETE FROM notes WHERE id = 3')).bounded).toBe(true);
  });

  it('does not let a WHERE that references no column (WHERE true, 1=1) count as bounded', async () => {
    expect((await classifySql('UPDATE appointments SET status = $1 WHERE true')).bounded).toBe(false);
    expect((await classifySql('DELETE FROM notes WHERE 1 = 1')).bounded).toBe(false);
  });

  it("does not count a sub-query's own WHERE as the write's: EXISTS (… p.id = 1) is the same for every row", async () => {
    expect((await classifySql('UPDATE notes SET body = body WHERE EXISTS (SELECT 1 FROM patients p WHERE p.id = 1)')).bounded).toBe(false);
    expect((await classifySql('DELETE FROM notes WHERE (SELECT count(*) FROM patients p WHERE p.vip) > 0')).bounded).toBe(false);
    // The row's own column on the left of IN, or beside the sub-query, does restrict it.
    expect((await classifySql('DELETE FROM notes WHERE patient_id IN (SELECT id FROM patients WHERE vip)')).bounded).toBe(true);
    expect((await classifySql('UPDATE notes SET body = body WHERE id = 1 AND EXISTS (SELECT 1 FROM patients)')).bounded).toBe(true);
  });

  it('names the write target as identifier and includes tables read by the write', async () => {
    const c = await classifySql("INSERT INTO notes (patient_id, body) SELECT id, 'x' FROM patients LIMIT 1");
    expect(c.kind).toBe('INSERT');
    expect(c.identifier).toBe('public.notes');
    expect(c.tables).toEqual(['public.notes', 'public.patients']);
    expect(c.bounded).toBe(true);
    expect((await classifySql("INSERT INTO notes (patient_id, body) SELECT id, 'x' FROM patients")).bounded).toBe(false);
    expect((await classifySql("INSERT INTO notes (patient_id, body) VALUES (1, 'x')")).bounded).toBe(true);
  });

  it('counts an INSERT … SELECT as bounded only by a number written in it: not LIMIT ALL, NULL, a parameter, an expression or WITH TIES', async () => {
    const insert = "INSERT INTO notes (patient_id, body) SELECT patient_id, 'x' FROM notes ";
    for (const tail of ['LIMIT 5', 'LIMIT 0', 'FETCH FIRST 3 ROWS ONLY']) expect((await classifySql(insert + tail)).bounded, tail).toBe(true);
    for (const tail of ['LIMIT ALL', 'LIMIT NULL', 'LIMIT $1', 'LIMIT (SELECT 1000000)', 'ORDER BY patient_id FETCH FIRST 1 ROWS WITH TIES'])
      expect((await classifySql(insert + tail)).bounded, tail).toBe(false);
    // Unbounded, the write is tier 3: its own approval at every call, never covered by an earlier one.
    const { plan } = await planPostgresCall(DEMO_POLICY, 'execute', { sql: `${insert}LIMIT ALL` });
    expect(plan.tier).toBe(3);
  });

  it('lists every change as its class and table, telling an upsert from an INSERT and a write target from a table read', async () => {
    expect((await classifySql('UPDATE appointments a SET status = $1 FROM patients p WHERE p.id = a.patient_id')).changes).toEqual(['UPDATE public.appointments']);
    expect((await classifySql("INSERT INTO notes (patient_id, body) VALUES (1, 'x')")).changes).toEqual(['INSERT public.notes']);
    expect((await classifySql("INSERT INTO notes (patient_id, body) VALUES (1, 'x') ON CONFLICT DO NOTHING")).changes).toEqual(['INSERT public.notes']);
    expect((await classifySql("INSERT INTO notes (patient_id, body) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET body = 'y'")).changes).toEqual([
      'INSERT_ON_CONFLICT_UPDATE public.notes',
    ]);
    expect((await classifySql('WITH d AS (DELETE FROM notes WHERE id = 1 RETURNING patient_id) UPDATE appointments SET status = $1 WHERE patient_id IN (SELECT patient_id FROM d)')).changes).toEqual([
      'DELETE public.notes',
      'UPDATE public.appointments',
    ]);
    expect((await classifySql('SELECT * FROM patients')).changes).toEqual([]);
  });

  it('includes the tables of UPDATE … FROM and DELETE … USING', async () => {
    expect((await classifySql('UPDATE appointments a SET status = $1 FROM patients p WHERE p.id = a.patient_id')).tables).toEqual([
      'public.appointments',
      'public.patients',
    ]);
    expect((await classifySql('DELETE FROM notes n USING patients p WHERE p.id = n.patient_id')).tables).toEqual(['public.notes', 'public.patients']);
  });

  it('makes INSERT … ON CONFLICT DO UPDATE an UPDATE too, and a class of its own', async () => {
    const upsert = await classifySql("INSERT INTO notes (id, patient_id, body) VALUES (1, 1, 'x') ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body");
    const plain = await classifySql("INSERT INTO notes (patient_id, body) VALUES (1, 'x') ON CONFLICT DO NOTHING");
    expect(upsert.actions).toEqual(['INSERT', 'UPDATE']);
    expect(upsert.changes).toEqual(['INSERT_ON_CONFLICT_UPDATE public.notes']);
    expect(plain.actions).toEqual(['INSERT']);
    expect(upsert.statementClass).not.toBe(plain.statementClass);
  });

  it('never lets a row lock be read-only, whatever its strength, and names the locked tables', async () => {
    for (const lock of ['FOR UPDATE', 'FOR NO KEY UPDATE', 'FOR SHARE', 'FOR KEY SHARE', 'FOR UPDATE SKIP LOCKED']) {
      const c = await classifySql(`SELECT * FROM patients WHERE id IN (SELECT patient_id FROM notes) ${lock}`);
      expect(c.readOnly, lock).toBe(false);
      expect(c.actions.some((a) => a.startsWith('SELECT FOR')), lock).toBe(true);
      expect(c.changes.some((x) => x.endsWith(' public.patients')), lock).toBe(true);
    }
    expect((await classifySql('SELECT * FROM (SELECT * FROM notes) n FOR UPDATE')).changes).toEqual(['SELECT_FOR_UPDATE public.notes']);
  });

  it('keeps a CTE name from hiding a table outside its scope, inside its own definition and as a write target', async () => {
    // A sibling sub-query outside the WITH reads the real table.
    expect((await classifySql('SELECT (WITH notes AS (SELECT 1) SELECT count(*) FROM notes), (SELECT count(*) FROM notes)')).tables).toEqual(['public.notes']);
    // A plain (non-recursive) CTE's own name inside it is the table.
    expect((await classifySql('WITH notes AS (SELECT * FROM notes) SELECT * FROM notes')).tables).toEqual(['public.notes']);
    // A later CTE sees an earlier one; an earlier one does not see a later one.
    expect((await classifySql('WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a, b')).tables).toEqual(['public.b']);
    // A write target always names a real table.
    const c = await classifySql('WITH notes AS (SELECT 1) DELETE FROM notes WHERE id = 1');
    expect(c.changes).toEqual(['DELETE public.notes']);
    expect((await classifySql('WITH patients AS (SELECT 1) INSERT INTO patients SELECT * FROM patients')).changes).toEqual(['INSERT public.patients']);
  });

  it('lets a recursive CTE see itself, and keeps a qualified name a table even when a CTE shares its bare name', async () => {
    expect((await classifySql('WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 3) SELECT * FROM t')).tables).toEqual([]);
    expect((await classifySql('WITH patients AS (SELECT 1) SELECT * FROM secret.patients, patients')).tables).toEqual(['secret.patients']);
  });

  it('classifies EXPLAIN ANALYZE by the statement it runs and plain EXPLAIN as running nothing, naming the tables either way', async () => {
    const analyze = await classifySql('EXPLAIN ANALYZE DELETE FROM notes');
    expect(analyze.kind).toBe('DELETE');
    expect(analyze.readOnly).toBe(false);
    expect((await classifySql('EXPLAIN (ANALYZE, COSTS off) WITH d AS (DELETE FROM notes WHERE id = 1 RETURNING 1) SELECT * FROM d')).readOnly).toBe(false);
    expect((await classifySql('EXPLAIN (ANALYZE false) DELETE FROM notes')).readOnly).toBe(true);
    const plain = await classifySql('EXPLAIN DELETE FROM notes');
    expect(plain.kind).toBe('EXPLAIN');
    expect(plain.actions).toEqual(['EXPLAIN']);
    expect(plain.tables).toEqual(['public.notes']);
  });

  it('makes SELECT … INTO a schema change, never a read', async () => {
    const c = await classifySql('SELECT * INTO copy_of_patients FROM patients');
    expect(c.kind).toBe('DDL');
    expect(c.readOnly).toBe(false);
    expect(c.changes).toEqual(['CREATE public.copy_of_patients']);
  });

  it('classifies MERGE with every action its clauses take, never bounded', async () => {
    const c = await classifySql('MERGE INTO notes n USING patients p ON n.patient_id = p.id WHEN MATCHED THEN UPDATE SET body = $1 WHEN NOT MATCHED THEN INSERT (patient_id, body) VALUES (p.id, $1)');
    expect(c.actions).toEqual(['INSERT', 'MERGE', 'UPDATE']);
    expect(c.changes).toEqual(['MERGE public.notes']);
    expect(c.bounded).toBe(false);
  });

  it('names every function a statement calls, in every clause, schema-qualified', async () => {
    const c = await classifySql(
      "SELECT lower(full_name), count(*) OVER (PARTITION BY date_trunc('day', now())) FROM patients WHERE upper(mrn) = $1 GROUP BY 1 HAVING max(id) > abs(-1) ORDER BY length(full_name)",
    );
    expect(c.functions).toEqual(['pg_catalog.abs', 'pg_catalog.count', 'pg_catalog.date_trunc', 'pg_catalog.length', 'pg_catalog.lower', 'pg_catalog.max', 'pg_catalog.now', 'pg_catalog.upper']);
    expect((await classifySql("SELECT public.lower('x')")).functions).toEqual(['public.lower']);
    expect((await classifySql('SELECT * FROM generate_series(1, 3) g')).functions).toEqual(['pg_catalog.generate_series']);
    expect((await classifySql("INSERT INTO notes (patient_id, body) VALUES (1, md5('x'))")).functions).toEqual(['pg_catalog.md5']);
  });

  it('classifies DROP, TRUNCATE and GRANT as their own kinds and DDL as DDL, naming their tables', async () => {
    expect((await classifySql('DROP TABLE notes')).kind).toBe('DROP');
    expect((await classifySql('TRUNCATE notes')).kind).toBe('TRUNCATE');
    expect((await classifySql('GRANT SELECT ON patients TO bob')).kind).toBe('GRANT');
    expect((await classifySql('ALTER TABLE notes ADD COLUMN x int')).kind).toBe('DDL');
    expect((await classifySql('DROP TABLE notes, clinic.archive')).tables).toEqual(['clinic.archive', 'public.notes']);
    expect((await classifySql('TRUNCATE notes')).tables).toEqual(['public.notes']);
    expect((await classifySql('GRANT SELECT ON patients TO bob')).tables).toEqual(['public.patients']);
  });

  it('refuses, with a reason, every statement kind it does not classify', async () => {
    for (const sql of [
      'SET ROLE postgres',
      'SET search_path = evil',
      'CALL do_things()',
      "DO $$ BEGIN DELETE FROM notes; END $$",
      'COPY notes TO STDOUT',
      'LISTEN x',
      "NOTIFY x, 'y'",
      'LOCK TABLE notes',
      'PREPARE p AS DELETE FROM notes',
      'EXECUTE p',
      'DECLARE c CURSOR FOR SELECT 1',
      'VACUUM notes',
      'BEGIN',
      'CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$',
      'SHOW search_path',
      'REFRESH MATERIALIZED VIEW v',
    ]) {
      expect(await code(sql), sql).toBe('SQL_UNCLASSIFIABLE');
    }
  });

  it('refuses node types it does not know anywhere in the tree, not just at the top', async () => {
    expect(await code("UPDATE notes SET body = 'x' WHERE CURRENT OF c")).toBe('SQL_UNCLASSIFIABLE');
    expect(await code("SELECT * FROM XMLTABLE('/a' PASSING '<a/>' COLUMNS x int)")).toBe('SQL_UNCLASSIFIABLE');
    expect(await code('SELECT x::public.mytype FROM patients')).toBe('SQL_UNCLASSIFIABLE');
    expect(await code('SELECT 1 OPERATOR(public.+) 1')).toBe('SQL_UNCLASSIFIABLE');
    expect(await code('SELECT * FROM other_db.public.patients')).toBe('SQL_UNCLASSIFIABLE');
    expect(await code('SELECT * FROM patients TABLESAMPLE my_sampler(10)')).toBe('SQL_UNCLASSIFIABLE');
    expect(await code('EXPLAIN CREATE TABLE t AS SELECT 1')).toBe('SQL_UNCLASSIFIABLE');
  });

  it('refuses table names a person could misread: look-alike letters, invisible characters, quotes and dots', async () => {
    expect(await code('SELECT * FROM "patіents"')).toBe('SQL_UNCLASSIFIABLE'); // Cyrillic і
    expect(await code('SELECT * FROM "patients\u200b"')).toBe('SQL_UNCLASSIFIABLE');
    expect(await code('SELECT * FROM "public.patients"')).toBe('SQL_UNCLASSIFIABLE');
    expect(await code('SELECT * FROM "a""b"')).toBe('SQL_UNCLASSIFIABLE');
    expect((await classifySql('SELECT * FROM "Patients"')).tables).toEqual(['public."Patients"']);
  });

  it('hands the connector every name it resolved without the catalog, to prove before running', async () => {
    const c = await classifySql('SELECT p.full_name, lower(p.mrn) FROM patients p WHERE p.id = 1 AND p.vip IS NOT TRUE');
    expect(c.names.unqualifiedTables).toEqual([{ written: 'patients', qualified: 'public.patients' }]);
    expect(c.names.unqualifiedFunctions).toEqual(['lower']);
    expect(c.names.operators).toEqual(['=']);
    expect(c.names.attributes).toEqual(['full_name', 'id', 'mrn', 'vip']);
  });

  it('refuses two statements in one call', async () => {
    expect(await code('SELECT 1; DELETE FROM notes')).toBe('SQL_MULTI_STATEMENT');
  });

  it('refuses SQL that PostgreSQL cannot parse, and empty SQL', async () => {
    expect(await code('SELEC * FROM patients')).toBe('SQL_UNPARSABLE');
    expect(await code('  ;  ')).toBe('SQL_UNPARSABLE');
  });

  it('gives a stable digest of the exact bytes', async () => {
    const a = await classifySql('SELECT 1');
    const b = await classifySql('SELECT  1');
    expect(a.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(a.digest).not.toBe(b.digest);
  });
});
