/**
 * The database proves the classifier's reading of names before the statement runs, in the same
 * transaction and session (so under the same pinned search_path): every table is a plain table (a view,
 * a partitioned or inherited table, a foreign table would reach tables or code the RAR does not name),
 * every unqualified table name resolves to the schema it was declared in, and no schema on the search
 * path holds a function or operator that could be chosen instead of pg_catalog's (an overload of `lower`,
 * or a function `f(patients)` that `p.f` would call).
 */
import type pg from 'pg';
import { AppError } from '../../../../common/errors.ts';
import { queryExtended } from './extended-query.ts';
import type { SqlClassification } from './sql-classify.ts';

/**
 * The schemas on the search path, pg_catalog aside: where a look-alike of a built-in function or
 * operator could be found first.
 */
const ON_PATH = `(SELECT n.oid FROM pg_catalog.pg_namespace n
   WHERE n.nspname = ANY (pg_catalog.current_schemas(true)) AND n.nspname <> 'pg_catalog')`;

const KINDS: Record<string, string> = {
  v: 'a view',
  m: 'a materialized view',
  p: 'a partitioned table',
  f: 'a foreign table',
  S: 'a sequence',
  r: 'a table with inheritance children or a partition',
  code: 'a table with a trigger or a rule, code that runs on a write',
};

/**
 * The checks one statement needs, as one query (one round trip; each row is a problem), or none when
 * there is nothing to check. The guard and the description of its failure are both built here, so they
 * always ask the same question.
 *
 * Only what the statement has to check is sent: each call's session is new, so every catalogue the
 * query reads is read cold, and planning an arm over an empty list would still cost pg_proc's or
 * pg_operator's entries (docs/benchmarks.md, total_vs_hops_alone). Tables and unqualified names are
 * checked one per arm, a lookup by oid and a comparison with no FROM, which PostgreSQL plans in about
 * half the time of the same checks as joins over unnested arrays; function and operator names, where
 * a statement may have many, stay one array each. Both compare plain oids (`regclass` cast to `oid`,
 * the same value): PostgreSQL has no `=` between `oid` and `regclass` or between two `regclass`, so it
 * would otherwise go through every `=` operator for one it can coerce to, in a session whose catalogue
 * cache is cold (about 0.45 ms a call on the lab). Values travel as parameters, never in the text.
 */
function preflightQuery(c: SqlClassification): { text: string; values: Array<string | string[]> } | undefined {
  const values: Array<string | string[]> = [];
  const param = (value: string | string[]): string => {
    values.push(value);
    return `$${values.length}`;
  };
  const arms: string[] = [];
  // A statement that writes also reaches what a trigger or a rule on its tables runs (the trigger's
  // function, the rule's own statement); a constraint's internal triggers are the constraint's.
  const code = c.readOnly
    ? ''
    : ` OR c.relhasrules OR EXISTS (SELECT 1 FROM pg_catalog.pg_trigger tg WHERE tg.tgrelid = c.oid AND NOT tg.tgisinternal)`;
  for (const table of c.tables) {
    const t = param(table);
    arms.push(`SELECT 'kind' AS problem, ${t}::text AS name, CASE WHEN c.relkind = 'r' AND NOT (c.relhassubclass OR c.relispartition) THEN 'code' ELSE c.relkind::text END AS detail
  FROM pg_catalog.pg_class c
 WHERE c.oid = pg_catalog.to_regclass(${t}::text)::pg_catalog.oid AND (c.relkind <> 'r' OR c.relhassubclass OR c.relispartition${code})`);
  }
  for (const name of c.names.unqualifiedTables) {
    const [written, qualified] = [param(name.written), param(name.qualified)];
    arms.push(`SELECT 'resolves' AS problem, ${written}::text AS name, NULL AS detail
 WHERE pg_catalog.to_regclass(pg_catalog.quote_ident(${written}::text))::pg_catalog.oid IS DISTINCT FROM pg_catalog.to_regclass(${qualified}::text)::pg_catalog.oid`);
  }
  const functions = [...new Set([...c.names.unqualifiedFunctions, ...c.names.attributes])];
  if (functions.length > 0) {
    arms.push(`SELECT 'function' AS problem, p.proname::text AS name, NULL AS detail
  FROM pg_catalog.pg_proc p
 WHERE p.pronamespace IN ${ON_PATH} AND p.proname = ANY (${param(functions)}::text[])`);
  }
  if (c.names.attributes.length > 0) {
    // PostgreSQL reads `x.f` as the call `f(x)` when x has no column f, built-in functions included
    // (`('…'::text).ts_stat`, `(7::bigint).pg_advisory_lock`): a call written as a field, which the
    // description does not name. A name that is a column of a table the statement names is a column;
    // any other that names a function, anywhere, is refused.
    arms.push(`SELECT 'attribute' AS problem, a.name::text AS name, NULL AS detail
  FROM pg_catalog.unnest(${param(c.names.attributes)}::text[]) AS a(name)
 WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_proc p WHERE p.proname = a.name)
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute col
                    WHERE col.attrelid = ANY (SELECT pg_catalog.to_regclass(t)::pg_catalog.oid FROM pg_catalog.unnest(${param(c.tables)}::text[]) AS t)
                      AND col.attname = a.name AND col.attnum > 0 AND NOT col.attisdropped)`);
  }
  if (c.names.operators.length > 0) {
    arms.push(`SELECT 'operator' AS problem, o.oprname::text AS name, NULL AS detail
  FROM pg_catalog.pg_operator o
 WHERE o.oprnamespace IN ${ON_PATH} AND o.oprname = ANY (${param(c.names.operators)}::text[])`);
  }
  return arms.length === 0 ? undefined : { text: arms.join('\nUNION ALL\n'), values };
}

/** The guard as one step of a call's round trip (connector.ts `inOneRoundTrip`); none when there is nothing to check. */
export function preflightGuard(c: SqlClassification): Array<{ text: string; values: Array<string | string[]>; guard: true }> {
  const q = preflightQuery(c);
  return q ? [{ text: guardOf(q.text), values: q.values, guard: true }] : [];
}

/**
 * The checks as a guard that fails when any problem row exists (a division by zero on the first one),
 * so the call's statement can be sent behind it in the same round trip: once the guard fails, the
 * transaction is aborted and PostgreSQL refuses every statement after it unparsed (SQLSTATE 25P02)
 * until the transaction ends. OFFSET 0 keeps the problems a subquery of their own: with one arm,
 * PostgreSQL would otherwise pull it up, read `problem` as the constant it is there and fold the
 * division while planning, failing even when there is no problem.
 */
function guardOf(problems: string): string {
  return `SELECT pg_catalog.length(problems.problem) / 0 AS refused FROM (${problems}\nOFFSET 0) AS problems LIMIT 1`;
}

/** Runs the checks on `client` (inside the call's transaction); throws SQL_UNCLASSIFIABLE on the first problem. */
export async function preflight(client: pg.Client, c: SqlClassification): Promise<void> {
  const problem = await describePreflightFailure(client, c);
  if (problem) throw problem;
}

/**
 * After the guard failed and its transaction ended: the problem, read again on the same session.
 * Resolves with no value when there is none (the guard failed for another reason, or the catalogue
 * changed in between).
 */
export async function describePreflightFailure(client: pg.Client, c: SqlClassification): Promise<AppError | undefined> {
  const q = preflightQuery(c);
  if (!q) return undefined;
  const result = await queryExtended<{ problem: string; name: string; detail: string | null }>(client, q.text, q.values);
  return result.rows[0] ? preflightRefusal(result.rows[0]) : undefined;
}

function preflightRefusal(first: { problem: string; name: string; detail: string | null }): AppError {
  return new AppError('SQL_UNCLASSIFIABLE', refusalMessage(first));
}

function refusalMessage(first: { problem: string; name: string; detail: string | null }): string {
  switch (first.problem) {
    case 'kind':
      if (first.detail === 'code') {
        return `${first.name} is ${KINDS.code}: writing it reaches tables or functions the call's description does not name. Ask the database's owner to make this change.`;
      }
      return `${first.name} is ${KINDS[first.detail ?? ''] ?? `a relation of kind ${first.detail}`}: reading it reaches tables or code the call's description does not name. Query the underlying tables.`;
    case 'resolves':
      return `The table name ${first.name} does not resolve to the table the call was described with; qualify it with its schema.`;
    case 'function':
      return `A schema on the search path holds a function named ${first.name}, which PostgreSQL could call instead of the built-in one the call was described with; write pg_catalog.${first.name}(…) or rename the column reference.`;
    case 'attribute':
      return `.${first.name} is not a column of a table the statement names, and PostgreSQL would read it as a call of the function ${first.name}, which the call's description does not name; call functions by name, and select columns of the tables in FROM.`;
    default:
      return `A schema on the search path holds an operator ${first.name}, which PostgreSQL could use instead of the built-in one; write OPERATOR(pg_catalog.${first.name}).`;
  }
}
