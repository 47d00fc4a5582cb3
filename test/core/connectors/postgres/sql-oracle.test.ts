/**
 * The engine as oracle: every statement of the hand-written corpus and of a property-generated set is
 * planned as the connector plans it and run on the lab's real PostgreSQL (superuser, rolled back); what
 * PostgreSQL observed must all have been declared (see sql-oracle.ts for what it can and cannot see).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPostgres, type LabPostgres } from '../../../../lab/postgres.ts';
import { CORPUS } from './sql-corpus.ts';
import { generatedStatements } from './sql-grammar.ts';
import { openOracle, oraclePolicy, summarise, type Oracle, type OracleOutcome } from './sql-oracle.ts';

let db: LabPostgres;
let oracle: Oracle;

beforeAll(async () => {
  db = await startPostgres();
  oracle = await openOracle(db.adminUrl);
}, 60_000);

afterAll(async () => {
  await oracle?.close();
  await db?.stop();
});

async function runAll(statements: Parameters<Oracle['check']>[0][]): Promise<OracleOutcome[]> {
  const out: OracleOutcome[] = [];
  for (const s of statements) out.push(await oracle.check(s));
  return out;
}

function report(name: string, outcomes: OracleOutcome[]): void {
  const s = summarise(outcomes);
  process.stdout.write(
    `sql oracle (${name}): ${s.statements} statements tried, ${s.classes} classes, ${s.covered} covered, ${s.refused} refused, ${s.undeclared} undeclared; ` +
      `${s.db_errors} rejected by PostgreSQL itself, ${s.fk_exempt} foreign-key reads set apart\n  refused by: ${JSON.stringify(s.refused_by)}\n`,
  );
}

describe('the engine as oracle for the SQL classifier', () => {
  it('declares every change, table, lock and function PostgreSQL observed, for a hand-written corpus of every class', async () => {
    const outcomes = await runAll(CORPUS);
    report('corpus', outcomes);
    expect(outcomes.length).toBeGreaterThanOrEqual(300);
    expect(outcomes.filter((o) => o.verdict === 'undeclared').map((o) => ({ sql: o.sql, problems: o.problems }))).toEqual([]);
    // The oracle saw something to judge: rows changed, locks taken and user functions called, all declared.
    expect(outcomes.filter((o) => o.observed.changed.length > 0).length).toBeGreaterThan(30);
    expect(outcomes.filter((o) => o.observed.rowLocks.length > 0).length).toBeGreaterThan(5);
    expect(outcomes.filter((o) => o.observed.functions.length > 0).length).toBeGreaterThan(0);
    // Every trick class is either refused or run at its real tier, never as a tier-1 read.
    for (const o of outcomes.filter((x) => ['cte-write', 'locking', 'upsert', 'merge', 'function-effect'].includes(x.cls) && x.verdict === 'covered')) {
      expect(o.tool, o.sql).toBe('execute');
      expect(o.tier, o.sql).toBeGreaterThanOrEqual(2);
    }
  }, 300_000);

  it('declares everything PostgreSQL observed for property-generated statements built from grammar pieces', async () => {
    const outcomes = await runAll(generatedStatements(Number(process.env.SQL_ORACLE_GENERATED ?? 300)));
    report('generated', outcomes);
    expect(outcomes.filter((o) => o.verdict === 'undeclared').map((o) => ({ sql: o.sql, problems: o.problems }))).toEqual([]);
    expect(outcomes.filter((o) => o.verdict === 'covered').length).toBeGreaterThan(50);
  }, 300_000);

  it('is not vacuous: a policy that lists a writing function as side-effect free is caught by what the engine observed', async () => {
    const lying = { ...oraclePolicy(), functions: { allow: ['oracle.touch_notes', 'oracle.count_patients'], review: [] } };
    const write = await oracle.check({ cls: 'negative', sql: 'SELECT oracle.touch_notes()' }, lying);
    expect(write.verdict).toBe('undeclared');
    expect(write.problems).toContain('rows changed in public.notes, not declared as a change');
    const read = await oracle.check({ cls: 'negative', sql: 'SELECT oracle.count_patients()' }, lying);
    expect(read.verdict).toBe('undeclared');
    expect(read.problems).toContain('read of public.patients, not declared');
  });
});
