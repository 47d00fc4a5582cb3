import { describe, expect, it } from 'vitest';
import { classifySql } from '../../../../main/core/connectors/postgres/sql-classify.ts';
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
  it('names every table a read touches through CTEs, joins and sub-queries, without the CTE names', async () => {
    const c = await classifySql(
      'WITH recent AS (SELECT * FROM notes) SELECT p.* FROM patients p JOIN recent r ON r.patient_id = p.id WHERE p.id IN (SELECT patient_id FROM appointments)',
    );
    expect(c.kind).toBe('SELECT');
    expect(c.actions).toEqual(['SELECT']);
    expect(c.tables).toEqual(['appointments', 'notes', 'patients']);
    expect(c.identifier).toBe('notes');
    expect(c.readOnly).toBe(true);
  });

  it('finds a DELETE hidden in a data-modifying CTE of a SELECT and marks it not read-only', async () => {
    const c = await classifySql('WITH gone AS (DELETE FROM notes RETURNING *) SELECT count(*) FROM gone');
    expect(c.actions).toEqual(['DELETE', 'SELECT']);
    expect(c.tables).toEqual(['notes']);
    expect(c.readOnly).toBe(false);
    expect(c.bounded).toBe(false);
  });

  it('treats a DELETE without WHERE as unbounded and with a column condition as bounded', async () => {
    expect((await classifySql('DELETE FROM notes')).bounded).toBe(false);
    expect((await classifySql('DELETE FROM notes WHERE id = 3')).bounded).toBe(true);
  });

  it('does not let a WHERE that references no column (WHERE true, 1=1) count as bounded', async () => {
    expect((await classifySql('UPDATE appointments SET status = $1 WHERE true')).bounded).toBe(false);
    expect((await classifySql('DELETE FROM notes WHERE 1 = 1')).bounded).toBe(false);
  });

  it('names the write target as identifier and includes tables read by the write', async () => {
    const c = await classifySql("INSERT INTO notes (patient_id, body) SELECT id, 'x' FROM patients LIMIT 1");
    expect(c.kind).toBe('INSERT');
    expect(c.identifier).toBe('notes');
    expect(c.tables).toEqual(['notes', 'patients']);
    expect(c.bounded).toBe(true);
    expect((await classifySql("INSERT INTO notes (patient_id, body) SELECT id, 'x' FROM patients")).bounded).toBe(false);
    expect((await classifySql("INSERT INTO notes (patient_id, body) VALUES (1, 'x')")).bounded).toBe(true);
  });

  it('lists every change as its class and table, telling an upsert from an INSERT and a write target from a table read', async () => {
    expect((await classifySql('UPDATE appointments a SET status = $1 FROM patients p WHERE p.id = a.patient_id')).changes).toEqual(['UPDATE appointments']);
    expect((await classifySql("INSERT INTO notes (patient_id, body) VALUES (1, 'x')")).changes).toEqual(['INSERT notes']);
    expect((await classifySql("INSERT INTO notes (patient_id, body) VALUES (1, 'x') ON CONFLICT DO NOTHING")).changes).toEqual(['INSERT notes']);
    expect((await classifySql("INSERT INTO notes (patient_id, body) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET body = 'y'")).changes).toEqual([
      'INSERT_ON_CONFLICT_UPDATE notes',
    ]);
    expect((await classifySql('WITH d AS (DELETE FROM notes WHERE id = 1 RETURNING patient_id) UPDATE appointments SET status = $1 WHERE patient_id IN (SELECT patient_id FROM d)')).changes).toEqual([
      'DELETE notes',
      'UPDATE appointments',
    ]);
    expect((await classifySql('SELECT * FROM patients')).changes).toEqual([]);
  });

  it('includes the tables of UPDATE … FROM and DELETE … USING', async () => {
    expect((await classifySql('UPDATE appointments a SET status = $1 FROM patients p WHERE p.id = a.patient_id')).tables).toEqual([
      'appointments',
      'patients',
    ]);
    expect((await classifySql('DELETE FROM notes n USING patients p WHERE p.id = n.patient_id')).tables).toEqual(['notes', 'patients']);
  });

  it('keeps a schema-qualified table qualified, even when a CTE shares its bare name', async () => {
    const c = await classifySql('WITH patients AS (SELECT 1) SELECT * FROM secret.patients, patients');
    expect(c.tables).toEqual(['secret.patients']);
  });

  it('classifies DROP, TRUNCATE and GRANT as their own kinds and DDL as DDL', async () => {
    expect((await classifySql('DROP TABLE notes')).kind).toBe('DROP');
    expect((await classifySql('TRUNCATE notes')).kind).toBe('TRUNCATE');
    expect((await classifySql('GRANT SELECT ON patients TO bob')).kind).toBe('GRANT');
    expect((await classifySql('ALTER TABLE notes ADD COLUMN x int')).kind).toBe('DDL');
    expect((await classifySql('SELECT * INTO copy_of_patients FROM patients')).kind).toBe('DDL');
    expect((await classifySql('SET ROLE postgres')).kind).toBe('other');
  });

  it('names the tables that DROP, TRUNCATE, GRANT and ALTER act on', async () => {
    expect((await classifySql('DROP TABLE notes, clinic.archive')).tables).toEqual(['clinic.archive', 'notes']);
    expect((await classifySql('TRUNCATE notes')).tables).toEqual(['notes']);
    expect((await classifySql('GRANT SELECT ON patients TO bob')).tables).toEqual(['patients']);
    expect((await classifySql('ALTER TABLE notes ADD COLUMN x int')).tables).toEqual(['notes']);
  });

  it('classifies EXPLAIN ANALYZE by the statement it runs', async () => {
    const c = await classifySql('EXPLAIN ANALYZE DELETE FROM notes');
    expect(c.kind).toBe('DELETE');
    expect(c.readOnly).toBe(false);
  });

  it('marks SELECT … FOR UPDATE as not read-only (it takes row locks)', async () => {
    expect((await classifySql('SELECT * FROM patients FOR UPDATE')).readOnly).toBe(false);
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
