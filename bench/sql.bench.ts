/**
 * SQL governance, measured:
 * - sql_oracle.statements / sql_oracle.undeclared: the engine oracle (test/core/connectors/postgres/
 *   sql-oracle.ts) over the hand-written corpus and 300 generated statements, on a PostgreSQL cluster
 *   of its own: how many were tried and how many had an observed change, table, lock or user-function
 *   call that the classifier did not declare (goal 0); with the counts covered, refused and of classes;
 * - sql_classify / sql_parse_bare: per statement of the corpus that parses, the classifier (parse
 *   included, as the connector calls it) and a bare libpg-query parse of the same text, in turn in the
 *   same loop; sql_classify_vs_parse is their p50 ratio (goal <= 3).
 *
 * Run alone: `BENCH_ONLY=sql node bench/run.ts`.
 */
import { parse } from 'libpg-query';
import { startPostgres } from '../lab/postgres.ts';
import { classifySql } from '../main/core/connectors/postgres/sql-classify.ts';
import { CORPUS } from '../test/core/connectors/postgres/sql-corpus.ts';
import { generatedStatements } from '../test/core/connectors/postgres/sql-grammar.ts';
import { openOracle, summarise, type OracleOutcome } from '../test/core/connectors/postgres/sql-oracle.ts';
import { goal, percentiles, plain, ratioOf, type BenchContext, type Figures } from './figures.ts';

const ROUNDS = Number(process.env.SQL_BENCH_ROUNDS ?? 30);

async function timings(): Promise<{ classify: number[]; parse: number[] }> {
  const parseable: string[] = [];
  for (const s of CORPUS) {
    try {
      await parse(s.sql);
      if (s.sql.trim()) parseable.push(s.sql);
    } catch {
      /* not a statement both can time */
    }
  }
  const classify: number[] = [];
  const bare: number[] = [];
  const classifyOnce = async (sql: string): Promise<void> => {
    try {
      await classifySql(sql);
    } catch {
      // A refusal is a classification too: it is timed the same.
    }
  };
  for (const sql of parseable) {
    await parse(sql);
    await classifyOnce(sql);
  }
  for (let round = 0; round < ROUNDS; round += 1) {
    for (const sql of parseable) {
      let t = performance.now();
      await parse(sql);
      bare.push(performance.now() - t);
      t = performance.now();
      await classifyOnce(sql);
      classify.push(performance.now() - t);
    }
  }
  return { classify, parse: bare };
}

export async function bench(ctx: BenchContext): Promise<Figures> {
  const t = await timings();
  const classify = percentiles(t.classify);
  const bare = percentiles(t.parse);
  // The ratio from unrounded medians: the percentiles are rounded to the microsecond.
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

  const db = await startPostgres();
  const outcomes: OracleOutcome[] = [];
  try {
    const oracle = await openOracle(db.adminUrl);
    try {
      for (const s of [...CORPUS, ...generatedStatements(300)]) outcomes.push(await oracle.check(s));
    } finally {
      await oracle.close();
    }
  } finally {
    await db.stop();
  }
  const s = summarise(outcomes);
  ctx.log(`sql oracle: ${s.statements} statements, ${s.classes} classes, ${s.covered} covered, ${s.refused} refused, ${s.undeclared} undeclared`);
  return {
    'sql_oracle.statements': plain(s.statements, 'count', 'statements the engine oracle ran: the hand-written corpus and 300 generated from grammar pieces'),
    'sql_oracle.undeclared': goal(s.undeclared, 'count', '<=', 0, 'statements with a change, table, lock or user-function call PostgreSQL observed and the classifier did not declare'),
    'sql_oracle.covered': plain(s.covered, 'count', 'statements run with everything observed declared'),
    'sql_oracle.refused': plain(s.refused, 'count', 'statements refused before running (classifier, policy, tier 4 or the connector preflight): safe, counted apart'),
    'sql_oracle.classes': plain(s.classes, 'count', 'statement classes of the corpus, the generated set counted as one'),
    sql_classify: plain(classify, 'ms', 'classifySql per corpus statement, parse included'),
    sql_parse_bare: plain(bare, 'ms', 'a bare libpg-query parse of the same statements, in the same loop (baseline)'),
    sql_classify_vs_parse: goal(ratioOf(median(t.classify), median(t.parse)), 'ratio', '<=', 3, 'classifySql over the bare parse (p50)'),
  };
}
