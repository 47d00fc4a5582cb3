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

/** One round trip; each row is a problem. Parameters are text arrays. */
const PREFLIGHT_SQL = `
WITH path AS (
  SELECT n.oid FROM pg_catalog.pg_namespace n
   WHERE n.nspname = ANY (pg_catalog.current_schemas(true)) AND n.nspname <> 'pg_catalog'
)
SELECT 'kind' AS problem, d.name, c.relkind::text AS detail
  FROM pg_catalog.unnest($1::text[]) AS d(name)
  JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(d.name)
 WHERE c.relkind <> 'r' OR c.relhassubclass OR c.relispartition
UNION ALL
SELECT 'resolves', u.written, NULL
  FROM ROWS FROM (pg_catalog.unnest($2::text[]), pg_catalog.unnest($3::text[])) AS u(written, qualified)
 WHERE pg_catalog.to_regclass(pg_catalog.quote_ident(u.written)) IS DISTINCT FROM pg_catalog.to_regclass(u.qualified)
UNION ALL
SELECT 'function', p.proname::text, NULL
  FROM pg_catalog.pg_proc p
 WHERE p.pronamespace IN (SELECT oid FROM path) AND p.proname = ANY ($4::text[])
UNION ALL
SELECT 'operator', o.oprname::text, NULL
  FROM pg_catalog.pg_operator o
 WHERE o.oprnamespace IN (SELECT oid FROM path) AND o.oprname = ANY ($5::text[])`;

const KINDS: Record<string, string> = { v: 'a view', m: 'a materialized view', p: 'a partitioned table', f: 'a foreign table', S: 'a sequence', r: 'a table with inheritance children or a partition' };

/** The parameters of PREFLIGHT_SQL for one classified statement. */
function preflightParams(c: SqlClassification): string[][] {
  const n = c.names;
  return [
    c.tables,
    n.unqualifiedTables.map((t) => t.written),
    n.unqualifiedTables.map((t) => t.qualified),
    [...new Set([...n.unqualifiedFunctions, ...n.attributes])],
    n.operators,
  ];
}

/** The guard as one step of a call's round trip (connector.ts `inOneRoundTrip`). */
export function preflightGuard(c: SqlClassification): { text: string; values: string[][]; guard: true } {
  return { text: PREFLIGHT_GUARD_SQL, values: preflightParams(c), guard: true };
}

/**
 * PREFLIGHT_SQL as a guard that fails when any problem row exists (a division by zero on the first one,
 * so that PostgreSQL never folds it away when there is none), so the call's statement can be sent
 * behind it in the same round trip: once the guard fails, the transaction is aborted and PostgreSQL
 * refuses every statement after it unparsed (SQLSTATE 25P02) until the transaction ends.
 */
const PREFLIGHT_GUARD_SQL = `SELECT pg_catalog.length(problems.problem) / 0 AS refused FROM (${PREFLIGHT_SQL}) AS problems LIMIT 1`;

/** Runs the checks on `client` (inside the call's transaction); throws SQL_UNCLASSIFIABLE on the first problem. */
export async function preflight(client: pg.Client, c: SqlClassification): Promise<void> {
  const problem = await describePreflightFailure(client, c);
  if (problem) throw problem;
}

/**
 * After PREFLIGHT_GUARD_SQL failed and its transaction ended: the problem, read again on the same
 * session. Resolves with no value when there is none (the guard failed for another reason, or the
 * catalogue changed in between).
 */
export async function describePreflightFailure(client: pg.Client, c: SqlClassification): Promise<AppError | undefined> {
  const result = await queryExtended<{ problem: string; name: string; detail: string | null }>(client, PREFLIGHT_SQL, preflightParams(c));
  return result.rows[0] ? preflightRefusal(result.rows[0]) : undefined;
}

function preflightRefusal(first: { problem: string; name: string; detail: string | null }): AppError {
  const message =
    first.problem === 'kind'
      ? `${first.name} is ${KINDS[first.detail ?? ''] ?? `a relation of kind ${first.detail}`}: reading it reaches tables or code the call's description does not name. Query the underlying tables.`
      : first.problem === 'resolves'
        ? `The table name ${first.name} does not resolve to the table the call was described with; qualify it with its schema.`
        : first.problem === 'function'
          ? `A schema on the search path holds a function named ${first.name}, which PostgreSQL could call instead of the built-in one the call was described with; write pg_catalog.${first.name}(…) or rename the column reference.`
          : `A schema on the search path holds an operator ${first.name}, which PostgreSQL could use instead of the built-in one; write OPERATOR(pg_catalog.${first.name}).`;
  return new AppError('SQL_UNCLASSIFIABLE', message);
}
