/**
 * Turns one PostgreSQL tool call into a CallPlan: tier (policy floor over the statement kind's default),
 * the RAR that describes the statement truthfully and completely, the limits that apply and the Vault
 * credential the IdP is expected to permit. Never decides that a call is allowed.
 */
import { z } from 'zod';
import { AppError } from '../../../../common/errors.ts';
import type { AuthorizationDetail, CallPlan, Tier } from '../types.ts';
import { defaultTierForStatement, effectiveLimits, maxTier, type Limits, type PostgresPolicy } from '../../policy/policy.ts';
import { classifySql, sqlDigest, type SqlClassification } from './sql-classify.ts';
import { builtinFunction, type FunctionEffect } from './sql-functions.ts';
import { CATALOG_SCHEMA, normaliseTableKey } from './sql-names.ts';

export const CONNECTOR_NAME = 'postgres';

const DML_WRITES = new Set(['INSERT', 'UPDATE', 'DELETE', 'MERGE']);

const ParamSchema = z.union([z.string(), z.number(), z.boolean(), z.null()]);

export const QueryArgs = z
  .object({
    sql: z.string().min(1).max(100_000).describe('One read-only SQL statement (SELECT). Use $1, $2… for values.'),
    params: z.array(ParamSchema).max(100).optional().describe('Values for $1, $2… in order.'),
    include_sensitive: z
      .boolean()
      .optional()
      .describe('Ask for sensitive rows (VIP patients) too. Needs your approval and a push step-up on your phone.'),
  })
  .strict();

export const ExecuteArgs = z
  .object({
    sql: z.string().min(1).max(100_000).describe('One statement that writes or locks rows (INSERT, UPDATE or DELETE with a WHERE clause, MERGE, SELECT … FOR UPDATE). Use $1, $2… for values.'),
    params: z.array(ParamSchema).max(100).optional().describe('Values for $1, $2… in order.'),
  })
  .strict();

export const ListTablesArgs = z.object({}).strict();
export const DescribeTableArgs = z
  .object({ table: z.string().min(1).max(200).regex(/^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$/, 'a table name') })
  .strict();

/** What `execute` needs besides the generic plan. Derived again from the plan's args when it runs. */
export interface PostgresCallDetails {
  sql: string;
  params: Array<string | number | boolean | null>;
  /** Nothing in the statement writes, locks or calls a function with effects: run in a READ ONLY transaction. */
  readOnly: boolean;
  limits: Required<Limits>;
  classification: SqlClassification;
  /** One of the fixed catalog statements (list_tables, describe_table): information_schema views, by design. */
  catalog: boolean;
}

/** SQL the catalog tools run; fixed text, classified like any other statement. */
const LIST_TABLES_SQL =
  "SELECT table_schema, table_name, table_type FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY table_schema, table_name";
const DESCRIBE_TABLE_SQL =
  'SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position';

function parseArgs<T>(schema: z.ZodType<T>, args: Record<string, unknown>, tool: string): T {
  const result = schema.safeParse(args);
  if (!result.success) {
    const issues = result.error.issues
      .slice(0, 3)
      .map((i) => `${i.path.join('.') || '(arguments)'}: ${i.message}`)
      .join('; ');
    throw new AppError('INPUT_INVALID', `Invalid arguments for ${tool}: ${issues}`);
  }
  return result.data;
}

export async function planPostgresCall(
  policy: PostgresPolicy,
  tool: string,
  args: Record<string, unknown>,
): Promise<{ plan: CallPlan; details: PostgresCallDetails }> {
  let sql: string;
  let params: Array<string | number | boolean | null> = [];
  let includeSensitive = false;
  let catalog = false;
  switch (tool) {
    case 'query': {
      const a = parseArgs(QueryArgs, args, tool);
      sql = a.sql;
      params = a.params ?? [];
      includeSensitive = a.include_sensitive === true;
      break;
    }
    case 'execute': {
      const a = parseArgs(ExecuteArgs, args, tool);
      sql = a.sql;
      params = a.params ?? [];
      break;
    }
    case 'list_tables':
      parseArgs(ListTablesArgs, args, tool);
      sql = LIST_TABLES_SQL;
      catalog = true;
      break;
    case 'describe_table': {
      const a = parseArgs(DescribeTableArgs, args, tool);
      const [schema, table] = a.table.includes('.') ? a.table.split('.') : ['public', a.table];
      sql = DESCRIBE_TABLE_SQL;
      params = [schema ?? 'public', table ?? a.table];
      catalog = true;
      break;
    }
    default:
      throw new AppError('TOOL_UNKNOWN', `The PostgreSQL connector has no tool named ${tool}.`);
  }

  const c = await classifySql(sql);
  const effects = catalog ? [] : governFunctions(policy, c.functions);
  if (!catalog) refuseCatalogReads(c);
  const readOnly = c.readOnly && effects.length === 0;
  if (tool === 'query' && !readOnly) {
    const what = c.readOnly ? `calls ${effects.map((e) => `${e.name} (${e.effect})`).join(', ')}` : `is ${c.actions.join('/')}${c.identifier ? ` on ${c.identifier}` : ''}`;
    throw new AppError('SQL_NOT_READ_ONLY', `The query tool runs read-only statements; this one ${what}. Use the execute tool for writes.`);
  }
  if (tool === 'execute' && readOnly) {
    throw new AppError('INPUT_INVALID', 'The execute tool runs writes; send read-only statements to the query tool.');
  }

  const reasons: string[] = [];
  const locks = c.actions.some((a) => a.startsWith('SELECT FOR'));
  // EXPLAIN without ANALYZE runs nothing; a row lock changes nothing but holds other writers back.
  // The tier is the highest any action demands: a write inside a SELECT's CTE is still a write.
  const dml = c.actions.some((a) => DML_WRITES.has(a)) ? defaultTierForStatement('UPDATE', c.bounded) : undefined;
  const kindTier = c.kind === 'EXPLAIN' ? 1 : maxTier(defaultTierForStatement(c.kind, c.bounded), dml, locks ? 2 : undefined);
  reasons.push(describeStatement(c));
  if (effects.length > 0) reasons.push(`calls ${effects.map((e) => `${e.name}, which ${e.effect}`).join('; ')}`);
  const tableTiers: Array<Tier | undefined> = [];
  let sensitiveTable = false;
  let sensitiveRowsPossible = false;
  const unlisted: string[] = [];
  const tablePolicy = tablesOf(policy);
  if (!catalog) {
    for (const table of c.tables) {
      const entry = tablePolicy.get(table);
      if (!entry) {
        unlisted.push(table);
        continue;
      }
      tableTiers.push(entry.tier);
      if (entry.sensitive) sensitiveTable = true;
      if (entry.sensitiveRows) sensitiveRowsPossible = true;
    }
  }
  let blockTier: Tier | undefined;
  if (unlisted.length > 0 && policy.unlistedTables === 'block') {
    blockTier = 4;
    reasons.push(`touches ${unlisted.join(', ')}, which the policy does not list`);
  }
  if (includeSensitive && !sensitiveRowsPossible && !sensitiveTable) {
    throw new AppError('INPUT_INVALID', 'include_sensitive applies only to tables the policy marks as holding sensitive rows.');
  }
  const sensitive = sensitiveTable || includeSensitive;
  if (sensitive) reasons.push(sensitiveTable ? 'touches a sensitive table' : 'asks for sensitive rows');
  const toolEntry = policy.tools[tool];
  const tier = maxTier(kindTier, toolEntry?.tier, ...tableTiers, sensitive ? 3 : undefined, effects.length > 0 ? 3 : undefined, blockTier);

  const limits = effectiveLimits(
    policy.limits,
    toolEntry?.limits,
    ...c.tables.map((t) => tablePolicy.get(t)?.limits),
  );
  const bytes = params.length > 0 ? JSON.stringify({ sql, params }) : sql;
  const role = sensitive ? policy.roles.sensitive : readOnly ? policy.roles.read : policy.roles.write;
  const actions = effects.length > 0 ? [...c.actions, 'EXECUTE'].sort() : c.actions;

  const detail: AuthorizationDetail = {
    ...(policy.rarTemplate ?? {}),
    type: 'postgres',
    locations: [policy.location],
    actions,
    ...(c.identifier ? { identifier: c.identifier } : {}),
    tables: c.tables,
    ...(c.functions.length > 0 ? { functions: c.functions } : {}),
    ...(sensitive ? { privileges: ['sensitive'] } : {}),
    bounded: c.bounded,
    statement_digest: bytes === sql ? c.digest : sqlDigest(bytes),
  };

  const plan: CallPlan = {
    connector: CONNECTOR_NAME,
    tool,
    tier,
    reason: reasons.join('; '),
    target: policy.location,
    authorizationDetails: [detail],
    audience: policy.audience,
    credential: { kind: 'vault-database', authMount: policy.vault.authMount, role, dbMount: policy.vault.dbMount, dbRole: role },
    bytes,
    ...(tier === 2
      ? { approvalScope: { statementClass: c.statementClass, targets: c.tables, changes: c.changes, rowCeiling: limits.maxAffectedRows } }
      : {}),
  };
  return { plan, details: { sql, params, readOnly, limits, classification: c, catalog } };
}

const normalised = new WeakMap<PostgresPolicy['tables'], Map<string, PostgresPolicy['tables'][string]>>();

/** The policy's tables keyed as the classifier names them (`patients` in the file is `public.patients`). */
function tablesOf(policy: PostgresPolicy): Map<string, PostgresPolicy['tables'][string]> {
  let map = normalised.get(policy.tables);
  if (!map) {
    map = new Map(Object.entries(policy.tables).map(([key, entry]) => [normaliseTableKey(key), entry]));
    normalised.set(policy.tables, map);
  }
  return map;
}

/** Schemas whose relations describe the server itself: reached through list_tables and describe_table only. */
const CATALOG_SCHEMAS = [CATALOG_SCHEMA, 'information_schema'];

function refuseCatalogReads(c: SqlClassification): void {
  const catalogTables = c.tables.filter((t) => CATALOG_SCHEMAS.some((s) => t.startsWith(`${s}.`)));
  if (catalogTables.length === 0) return;
  throw new AppError(
    'SQL_UNCLASSIFIABLE',
    `The statement reads PostgreSQL's catalog (${catalogTables.join(', ')}), which is refused: catalog views can expose other sessions and settings. Use list_tables or describe_table.`,
  );
}

/**
 * Checks every function the statement calls. Safe built-ins and the policy's `allow` list pass; a
 * function with effects is refused unless the policy's `review` list names it (then the call is tier 3
 * and not read-only); anything else is unknown and refused. Returns the effectful functions admitted.
 */
function governFunctions(policy: PostgresPolicy, functions: string[]): Array<{ name: string; effect: FunctionEffect | 'is listed for review' }> {
  const allow = new Set((policy.functions?.allow ?? []).map(functionKey));
  const review = new Set((policy.functions?.review ?? []).map(functionKey));
  const admitted: Array<{ name: string; effect: FunctionEffect | 'is listed for review' }> = [];
  const refused: string[] = [];
  for (const name of functions) {
    const known = builtinFunction(name);
    if (known.kind === 'effect') {
      if (review.has(name)) admitted.push({ name, effect: known.effect });
      else refused.push(`${name} (${known.effect})`);
    } else if (known.kind === 'safe' || allow.has(name)) {
      continue;
    } else if (review.has(name)) {
      admitted.push({ name, effect: 'is listed for review' });
    } else {
      refused.push(`${name} (not known to be free of side effects)`);
    }
  }
  if (refused.length > 0) {
    throw new AppError(
      'SQL_FUNCTION_NOT_ALLOWED',
      `The statement calls ${refused.join(', ')}. Only functions known to have no side effects and no hidden table access may run, and functions with effects only where the policy lists them for review; rewrite the statement or ask for the function to be listed.`,
    );
  }
  return admitted;
}

/** A policy's function name as the classifier writes it: unqualified means pg_catalog. */
function functionKey(name: string): string {
  return normaliseTableKey(name, CATALOG_SCHEMA);
}

function describeStatement(c: SqlClassification): string {
  const what = c.statementClass;
  const bound = c.readOnly ? '' : c.bounded ? 'bounded ' : 'unbounded ';
  return `${bound}${what}${c.tables.length > 0 ? ` of ${c.tables.join(', ')}` : ''}`;
}
