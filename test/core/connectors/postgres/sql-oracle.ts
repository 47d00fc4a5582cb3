/**
 * The engine as oracle for the SQL classifier. Each statement is planned exactly as the connector plans
 * it (classifier, policy, function governance), then run by a superuser on a real PostgreSQL inside a
 * transaction that is always rolled back, with the connector's own session settings and preflight, and
 * what PostgreSQL observed is compared with what was declared.
 *
 * What the engine shows, read in the same transaction before the rollback:
 * - rows inserted, updated or deleted per table (pg_stat_xact_user_tables n_tup_ins/upd/del);
 * - tables scanned (seq_scan + idx_scan of the same view);
 * - relation locks the statement took (pg_locks of this backend): RowExclusiveLock is taken by every
 *   INSERT/UPDATE/DELETE/MERGE on its target even when no row changes, RowShareLock by row locks;
 * - advisory locks held;
 * - calls of user-defined functions (pg_stat_xact_user_functions, with track_functions = 'all').
 *
 * What it cannot show: calls of built-in (internal or C) functions, which PostgreSQL does not track,
 * so built-ins are held to the classifier's list by name only (every FuncCall node is declared);
 * notifications and settings changed by functions; sequences (their advance is not transactional and
 * an identity column advances one on every insert). Reads and locks that a foreign key's check makes
 * on the table it references (or that references it) are the constraint's, not the statement's: they
 * are counted apart as `fk_exempt`. The superuser bypasses row-level security, so the policies' own
 * reads of patients do not appear. A statement refused by the classifier, the policy, or the
 * connector's preflight never runs: it is covered (refusal is safe) and counted apart.
 */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { AppError } from '../../../../common/errors.ts';
import { SESSION_OPTIONS } from '../../../../main/core/connectors/postgres/connector.ts';
import { queryExtended } from '../../../../main/core/connectors/postgres/extended-query.ts';
import { planPostgresCall } from '../../../../main/core/connectors/postgres/plan.ts';
import { preflight } from '../../../../main/core/connectors/postgres/preflight.ts';
import { qualifiedName } from '../../../../main/core/connectors/postgres/sql-names.ts';
import { parsePolicy, type PostgresPolicy } from '../../../../main/core/policy/policy.ts';

export interface OracleStatement {
  /** The class the statement was written for (`cte-write`, `function-effect`…). */
  cls: string;
  sql: string;
  params?: Array<string | number | boolean | null>;
}

export type Verdict = 'covered' | 'refused' | 'undeclared';

export interface OracleOutcome extends OracleStatement {
  verdict: Verdict;
  /** Who refused: the classifier or policy (an AppError code), tier 4, or the connector's preflight. */
  refusedBy?: string;
  tier?: number;
  tool?: 'query' | 'execute';
  /** SQLSTATE when PostgreSQL itself rejected the statement (it then ran nothing that stayed). */
  dbError?: string;
  /** What was observed and not declared: empty unless the verdict is `undeclared`. */
  problems: string[];
  fkExempt: number;
  observed: { changed: string[]; scanned: string[]; functions: string[]; writeLocks: string[]; rowLocks: string[]; advisory: number };
}

/**
 * Objects the corpus plays tricks with, in a cluster of its own: tracked functions that read and write,
 * a look-alike overload of a built-in, a function reachable as an attribute (`p.leak`), an operator
 * in public, a view, an inheritance pair, a sequence, a schema with a table named like a public one,
 * plain tables with a trigger and with a rule that write elsewhere.
 */
export const ORACLE_FIXTURE = `
CREATE SCHEMA oracle;
CREATE FUNCTION oracle.touch_notes() RETURNS int LANGUAGE plpgsql AS $$ BEGIN UPDATE public.notes SET body = body WHERE id = 1; RETURN 1; END $$;
CREATE FUNCTION oracle.count_patients() RETURNS bigint LANGUAGE plpgsql AS $$ BEGIN RETURN (SELECT count(*) FROM public.patients); END $$;
CREATE FUNCTION oracle.noop(x int) RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN x; END $$;
CREATE FUNCTION oracle.rows_of_notes() RETURNS SETOF public.notes LANGUAGE plpgsql AS $$ BEGIN RETURN QUERY SELECT * FROM public.notes; END $$;
CREATE FUNCTION public.upper(x integer) RETURNS text LANGUAGE plpgsql AS $$ BEGIN DELETE FROM public.notes WHERE id = x; RETURN 'shadowed'; END $$;
CREATE FUNCTION public.leak(p public.patients) RETURNS text LANGUAGE plpgsql AS $$ BEGIN INSERT INTO public.notes (patient_id, body) VALUES (p.id, 'leak'); RETURN p.mrn; END $$;
CREATE FUNCTION public.text_concat_writes(a text, b text) RETURNS text LANGUAGE plpgsql AS $$ BEGIN DELETE FROM public.appointments WHERE id = 1; RETURN a || b; END $$;
CREATE OPERATOR public.## (LEFTARG = text, RIGHTARG = text, FUNCTION = public.text_concat_writes);
CREATE VIEW public.patient_names AS SELECT id, full_name FROM public.patients;
CREATE TABLE public.parent_log (id int, note text);
CREATE TABLE public.child_log () INHERITS (public.parent_log);
INSERT INTO public.child_log VALUES (1, 'child');
CREATE SEQUENCE public.oracle_seq;
CREATE TABLE public."Mixed Case" (id int PRIMARY KEY, v text);
INSERT INTO public."Mixed Case" VALUES (1, 'a'), (2, 'b');
CREATE SCHEMA other;
CREATE TABLE other.notes (id int PRIMARY KEY, body text);
INSERT INTO other.notes VALUES (1, 'other'), (2, 'other 2');
CREATE TABLE public.kv (k text PRIMARY KEY, v text);
INSERT INTO public.kv VALUES ('a', '1'), ('b', '2'), ('c', '3');
CREATE FUNCTION oracle.audit_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN UPDATE public.notes SET body = body WHERE id = 1; RETURN NEW; END $$;
CREATE TABLE public.kv_triggered (k text PRIMARY KEY, v text);
INSERT INTO public.kv_triggered VALUES ('a', '1');
CREATE TRIGGER kv_triggered_audit AFTER UPDATE ON public.kv_triggered FOR EACH ROW EXECUTE FUNCTION oracle.audit_row();
CREATE TABLE public.kv_ruled (k text PRIMARY KEY, v text);
INSERT INTO public.kv_ruled VALUES ('a', '1');
CREATE RULE kv_ruled_also AS ON DELETE TO public.kv_ruled DO ALSO UPDATE public.kv SET v = 'ruled';
ANALYZE;
`;

/**
 * The demo clinic's policy, with tables it does not list planned by their kind (the fixture's tables
 * would otherwise all be tier 4 and never run) and a few functions with effects listed for review, so
 * the tier-3 path runs too.
 */
export function oraclePolicy(): PostgresPolicy {
  const demo = parsePolicy(readFileSync(new URL('../../../../main/core/policy/demo-clinic.policy.jsonc', import.meta.url), 'utf8')).postgres!;
  return { ...demo, unlistedTables: 'default', functions: { allow: [], review: ['nextval', 'setval', 'pg_advisory_xact_lock', 'pg_advisory_lock', 'oracle.noop'] } };
}

export interface Oracle {
  /** Plans and runs one statement; `policy` replaces the oracle's for this statement only. */
  check(statement: OracleStatement, policy?: PostgresPolicy): Promise<OracleOutcome>;
  close(): Promise<void>;
}

interface TableStats {
  name: string;
  scans: number;
  changed: number;
}

/** Opens a superuser session on a cluster of its own and lays out the fixture. */
export async function openOracle(adminUrl: string, defaultPolicy: PostgresPolicy = oraclePolicy()): Promise<Oracle> {
  const client = new pg.Client({
    connectionString: adminUrl,
    application_name: 'countersign-sql-oracle',
    options: `${SESSION_OPTIONS} -c track_functions=all -c statement_timeout=5000`,
  });
  client.on('error', () => {});
  await client.connect();
  await client.query(ORACLE_FIXTURE);
  const fk = await client.query<{ an: string; ar: string; bn: string; br: string }>(
    `SELECT n1.nspname AS an, c1.relname AS ar, n2.nspname AS bn, c2.relname AS br
       FROM pg_constraint k JOIN pg_class c1 ON c1.oid = k.conrelid JOIN pg_namespace n1 ON n1.oid = c1.relnamespace
       JOIN pg_class c2 ON c2.oid = k.confrelid JOIN pg_namespace n2 ON n2.oid = c2.relnamespace WHERE k.contype = 'f'`,
  );
  const related = new Map<string, Set<string>>();
  for (const row of fk.rows) {
    const qa = qualifiedName(row.an, row.ar);
    const qb = qualifiedName(row.bn, row.br);
    if (!related.has(qa)) related.set(qa, new Set());
    if (!related.has(qb)) related.set(qb, new Set());
    related.get(qa)!.add(qb);
    related.get(qb)!.add(qa);
  }

  // Keyed by oid: the session's pending statistics span its transactions (so before and after are
  // compared), and a statement may rename the table it touches.
  async function tableStats(): Promise<Map<string, TableStats>> {
    const r = await client.query<{ relid: string; schemaname: string; relname: string; scans: string; changed: string }>(
      `SELECT relid::text, schemaname, relname, (coalesce(seq_scan, 0) + coalesce(idx_scan, 0))::text AS scans,
              (n_tup_ins + n_tup_upd + n_tup_del)::text AS changed FROM pg_stat_xact_user_tables`,
    );
    return new Map(
      r.rows.map((row) => [row.relid, { name: qualifiedName(tempAsDeclared(row.schemaname), row.relname), scans: Number(row.scans), changed: Number(row.changed) }]),
    );
  }
  async function functionCalls(): Promise<Map<string, number>> {
    const r = await client.query<{ schemaname: string; funcname: string; calls: string }>('SELECT schemaname, funcname, calls::text FROM pg_stat_xact_user_functions');
    return new Map(r.rows.map((row) => [qualifiedName(row.schemaname, row.funcname), Number(row.calls)]));
  }

  async function check(statement: OracleStatement, policy: PostgresPolicy = defaultPolicy): Promise<OracleOutcome> {
    const base: OracleOutcome = {
      ...statement,
      verdict: 'refused',
      problems: [],
      fkExempt: 0,
      observed: { changed: [], scanned: [], functions: [], writeLocks: [], rowLocks: [], advisory: 0 },
    };
    const args = { sql: statement.sql, ...(statement.params ? { params: statement.params } : {}) };
    let planned: Awaited<ReturnType<typeof planPostgresCall>>;
    let tool: 'query' | 'execute' = 'query';
    try {
      try {
        planned = await planPostgresCall(policy, 'query', args);
      } catch (error) {
        if (!(AppError.is(error) && error.code === 'SQL_NOT_READ_ONLY')) throw error;
        tool = 'execute';
        planned = await planPostgresCall(policy, 'execute', args);
      }
    } catch (error) {
      if (!AppError.is(error)) throw error;
      return { ...base, refusedBy: error.code };
    }
    const { plan, details } = planned;
    const c = details.classification;
    if (plan.tier === 4) return { ...base, refusedBy: 'tier 4', tier: 4, tool };

    await client.query('BEGIN');
    try {
      try {
        await preflight(client, c);
      } catch (error) {
        if (!AppError.is(error)) throw error;
        return { ...base, refusedBy: `preflight: ${error.code}`, tier: plan.tier, tool };
      }
      const beforeTables = await tableStats();
      const beforeFunctions = await functionCalls();
      await client.query('SAVEPOINT oracle_statement');
      let dbError: string | undefined;
      try {
        await queryExtended(client, statement.sql, statement.params ?? []);
      } catch (error) {
        const code = (error as { code?: unknown }).code;
        if (typeof code !== 'string') throw error;
        dbError = code;
      }
      // Locks go with an aborted sub-transaction: read them only when the statement ran.
      const locks = dbError
        ? { rows: [] as Array<{ nspname: string; relname: string; mode: string }> }
        : await client.query<{ nspname: string; relname: string; mode: string }>(
            `SELECT n.nspname, c.relname, l.mode FROM pg_locks l
               JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
                AND l.mode IN ('RowExclusiveLock', 'RowShareLock') AND n.nspname NOT IN ('pg_catalog', 'information_schema')`,
          );
      const advisory = dbError
        ? 0
        : Number((await client.query<{ n: string }>("SELECT count(*)::text AS n FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory'")).rows[0]!.n);
      if (dbError) await client.query('ROLLBACK TO SAVEPOINT oracle_statement');
      const afterTables = await tableStats();
      const afterFunctions = await functionCalls();

      const observed = base.observed;
      for (const [relid, after] of afterTables) {
        const before = beforeTables.get(relid) ?? { scans: 0, changed: 0 };
        // A renamed table answers to either name.
        const declaredName = beforeTables.get(relid)?.name ?? after.name;
        if (after.changed > before.changed) observed.changed.push(declaredName);
        if (after.scans > before.scans) observed.scanned.push(declaredName);
      }
      for (const [fn, calls] of afterFunctions) if (calls > (beforeFunctions.get(fn) ?? 0)) observed.functions.push(fn);
      for (const l of locks.rows) (l.mode === 'RowExclusiveLock' ? observed.writeLocks : observed.rowLocks).push(qualifiedName(tempAsDeclared(l.nspname), l.relname));
      observed.advisory = advisory;

      return judge({ ...base, tier: plan.tier, tool, ...(dbError ? { dbError } : {}) }, c, related);
    } finally {
      await client.query('ROLLBACK');
      // Session-level advisory locks outlive the rollback; the next statement must start with none.
      await client.query('SELECT pg_advisory_unlock_all()');
    }
  }

  return {
    check,
    close: async () => {
      await client.end().catch(() => {});
    },
  };
}

/** A session's temporary schema (pg_temp_3) is what a statement names as pg_temp. */
function tempAsDeclared(schema: string): string {
  return /^pg_temp_\d+$/.test(schema) ? 'pg_temp' : schema;
}

type Classification = Awaited<ReturnType<typeof planPostgresCall>>['details']['classification'];

function judge(o: OracleOutcome, c: Classification, related: Map<string, Set<string>>): OracleOutcome {
  const problems: string[] = [];
  const explainOnly = c.kind === 'EXPLAIN';
  const declared = new Set(c.tables);
  const changes = c.changes.map((x) => ({ cls: x.slice(0, x.indexOf(' ')), table: x.slice(x.indexOf(' ') + 1) }));
  const writes = new Set(changes.filter((x) => !x.cls.startsWith('SELECT_')).map((x) => x.table));
  const touched = new Set(changes.map((x) => x.table));
  const functions = new Set(c.functions);
  let fkExempt = 0;
  // A foreign key's check reads (and key-share locks) the table related to one the statement writes or locks.
  const byConstraint = (table: string): boolean => [...touched].some((t) => related.get(t)?.has(table));

  for (const t of o.observed.changed) if (!writes.has(t)) problems.push(`rows changed in ${t}, not declared as a change`);
  for (const t of o.observed.writeLocks) {
    if (writes.has(t) || (explainOnly && declared.has(t))) continue;
    problems.push(`write lock on ${t}, not declared as a change`);
  }
  for (const t of o.observed.rowLocks) {
    if (touched.has(t) || (explainOnly && declared.has(t))) continue;
    if (byConstraint(t)) fkExempt += 1;
    else problems.push(`row locks in ${t}, not declared`);
  }
  for (const t of o.observed.scanned) {
    if (declared.has(t)) continue;
    if (byConstraint(t)) fkExempt += 1;
    else problems.push(`read of ${t}, not declared`);
  }
  for (const f of o.observed.functions) if (!functions.has(f)) problems.push(`call of ${f}, not declared`);
  if (o.observed.advisory > 0 && !c.functions.some((f) => /^pg_catalog\.pg_(try_)?advisory_/.test(f))) problems.push('advisory lock taken, no advisory function declared');
  // Plain EXPLAIN plans the statement, and planning takes the locks the statement would: not an effect.
  const planning = (t: string): boolean => explainOnly && declared.has(t);
  const effect =
    o.observed.changed.length > 0 || o.observed.writeLocks.some((t) => !planning(t)) || o.observed.rowLocks.some((t) => !planning(t)) || o.observed.advisory > 0;
  if (effect && ((o.tier ?? 1) < 2 || o.tool !== 'execute')) problems.push(`an effect was observed but the call was tier ${o.tier} through ${o.tool}`);
  return { ...o, verdict: problems.length > 0 ? 'undeclared' : 'covered', problems, fkExempt };
}

export interface OracleSummary {
  statements: number;
  covered: number;
  refused: number;
  undeclared: number;
  db_errors: number;
  fk_exempt: number;
  classes: number;
  by_class: Record<string, { tried: number; covered: number; refused: number; undeclared: number }>;
  refused_by: Record<string, number>;
}

export function summarise(outcomes: readonly OracleOutcome[]): OracleSummary {
  const byClass: OracleSummary['by_class'] = {};
  const refusedBy: Record<string, number> = {};
  for (const o of outcomes) {
    const k = (byClass[o.cls] ??= { tried: 0, covered: 0, refused: 0, undeclared: 0 });
    k.tried += 1;
    k[o.verdict] += 1;
    if (o.refusedBy) refusedBy[o.refusedBy] = (refusedBy[o.refusedBy] ?? 0) + 1;
  }
  return {
    statements: outcomes.length,
    covered: outcomes.filter((o) => o.verdict === 'covered').length,
    refused: outcomes.filter((o) => o.verdict === 'refused').length,
    undeclared: outcomes.filter((o) => o.verdict === 'undeclared').length,
    db_errors: outcomes.filter((o) => o.dbError).length,
    fk_exempt: outcomes.reduce((n, o) => n + o.fkExempt, 0),
    classes: Object.keys(byClass).length,
    by_class: byClass,
    refused_by: refusedBy,
  };
}
