/**
 * Statements built from grammar pieces (fast-check) for the engine oracle: reads, writes and locks of
 * the clinic and fixture tables, nested in sub-queries, CTEs (with names that shadow tables), set
 * operations and EXPLAIN, calling safe, effectful and user-defined functions.
 */
import fc from 'fast-check';
import type { OracleStatement } from './sql-oracle.ts';

const table = fc.constantFrom('patients', 'notes', 'appointments', 'kv', 'public.notes', 'other.notes', '"Mixed Case"', 'parent_log', 'patient_names');
const cteName = fc.constantFrom('notes', 'patients', 'kv', 'x', 'y');
const id = fc.integer({ min: 1, max: 12 });
const fn = fc.constantFrom('lower(\'A\')', 'count(*)', 'now()', 'abs(-1)', "nextval('oracle_seq')", 'oracle.noop(1)', 'oracle.touch_notes()', "pg_advisory_xact_lock(7)", 'upper(1)', "md5('x')");
const lock = fc.constantFrom('', '', '', ' FOR UPDATE', ' FOR SHARE', ' FOR KEY SHARE', ' FOR NO KEY UPDATE');

const write: fc.Arbitrary<string> = fc.oneof(
  fc.tuple(fc.constantFrom('notes', 'kv', 'other.notes', '"Mixed Case"'), id).map(([t, n]) =>
    t === 'kv' ? `DELETE FROM kv WHERE k = '${'abc'[n % 3]}' RETURNING *` : `DELETE FROM ${t} WHERE id = ${n} RETURNING *`,
  ),
  id.map((n) => `UPDATE appointments SET status = status WHERE id = ${n} RETURNING *`),
  id.map((n) => `INSERT INTO notes (patient_id, body) VALUES (${n}, 'g') RETURNING *`),
  id.map((n) => `INSERT INTO kv VALUES ('${'abc'[n % 3]}', 'g') ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v RETURNING *`),
  fc.constant('UPDATE kv SET v = v RETURNING *'),
);

/** A SELECT of bounded depth: FROM a table, a sub-query or a CTE, with an optional function and lock. */
const select: fc.Arbitrary<string> = fc.letrec<{ q: string }>((tie) => ({
  q: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.tuple(table, fc.option(fn, { nil: undefined }), lock).map(([t, f, l]) => `SELECT ${f ?? '*'} FROM ${t}${f && f.includes('count') ? '' : l}`),
    fc.tuple(tie('q'), fc.constantFrom('a', 'b')).map(([q, a]) => `SELECT * FROM (${q}) ${a}`),
    fc.tuple(cteName, fc.oneof(tie('q'), write), fc.oneof(table, cteName)).map(([n, body, from]) => `WITH ${n} AS (${body}) SELECT * FROM ${from}`),
    fc.tuple(tie('q'), table).map(([q, t]) => `SELECT * FROM ${t} WHERE EXISTS (${q})`),
    fc.tuple(tie('q'), tie('q')).map(([a, b]) => `SELECT 1 FROM (${a}) a UNION ALL SELECT 1 FROM (${b}) b`),
  ),
})).q;

/** A write under a WITH whose items may write too: only at the top, where PostgreSQL accepts it. */
const withWrite = fc.tuple(cteName, fc.oneof(select, write), write).map(([n, body, w]) => `WITH ${n} AS (${body}) ${w.replace(/ RETURNING \*$/, '')}`);

const statement: fc.Arbitrary<string> = fc.oneof(
  select,
  withWrite,
  write.map((w) => w.replace(/ RETURNING \*$/, '')),
  fc.tuple(fc.constantFrom('EXPLAIN ', 'EXPLAIN ANALYZE ', 'EXPLAIN (ANALYZE false) ', 'EXPLAIN (ANALYZE, COSTS off) '), fc.oneof(select, write, withWrite)).map(([e, q]) => e + q),
);

/** `count` generated statements, the same ones for the same seed. */
export function generatedStatements(count: number, seed = 20261206): OracleStatement[] {
  return fc.sample(statement, { numRuns: count, seed }).map((sql) => ({ cls: 'generated', sql }));
}
