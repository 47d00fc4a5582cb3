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

export const CONNECTOR_NAME = 'postgres';

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
    sql: z.string().min(1).max(100_000).describe('One INSERT, UPDATE or DELETE statement with a WHERE clause. Use $1, $2… for values.'),
    params: z.array(ParamSchema).max(100).optional().describe('Values for $1, $2… in order.'),
  })
  .strict();

export const ListTablesArgs = z.object({}).strict();
export const DescribeTableArgs = z
  .object({ table: z.string().min(1).max(200).regex(/^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$/, 'a table name') })
  .strict();

export type ToolName = 'query' | 'execute' | 'list_tables' | 'describe_table';

/** What `execute` needs besides the generic plan. Derived again from the plan's args when it runs. */
export interface PostgresCallDetails {
  sql: string;
  params: Array<string | number | boolean | null>;
  readOnly: boolean;
  limits: Required<Limits>;
  classification: SqlClassification;
}

/** SQL the catalog tools run; fixed text, classified like any other statement. */
export const LIST_TABLES_SQL =
  "SELECT table_schema, table_name, table_type FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY table_schema, table_name";
export const DESCRIBE_TABLE_SQL =
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
  if (tool === 'query' && !c.readOnly) {
    throw new AppError(
      'SQL_NOT_READ_ONLY',
      `The query tool runs read-only statements; this one is ${c.actions.join('/')}${c.identifier ? ` on ${c.identifier}` : ''}. Use the execute tool for writes.`,
    );
  }
  if (tool === 'execute' && c.readOnly) {
    throw new AppError('INPUT_INVALID', 'The execute tool runs writes; send read-only statements to the query tool.');
  }

  const reasons: string[] = [];
  const kindTier = defaultTierForStatement(c.kind, c.bounded);
  reasons.push(describeStatement(c));
  const tableTiers: Array<Tier | undefined> = [];
  let sensitiveTable = false;
  let sensitiveRowsPossible = false;
  const unlisted: string[] = [];
  if (!catalog) {
    for (const table of c.tables) {
      const entry = policy.tables[table];
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
  const tier = maxTier(kindTier, toolEntry?.tier, ...tableTiers, sensitive ? 3 : undefined, blockTier);

  const limits = effectiveLimits(
    policy.limits,
    toolEntry?.limits,
    ...c.tables.map((t) => policy.tables[t]?.limits),
  );
  const bytes = params.length > 0 ? JSON.stringify({ sql, params }) : sql;
  const writes = c.actions.some((a) => a !== 'SELECT');
  const role = sensitive ? policy.roles.sensitive : writes || !c.readOnly ? policy.roles.write : policy.roles.read;

  const detail: AuthorizationDetail = {
    ...(policy.rarTemplate ?? {}),
    type: 'postgres',
    locations: [policy.location],
    actions: c.actions,
    ...(c.identifier ? { identifier: c.identifier } : {}),
    tables: c.tables,
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
      ? { approvalScope: { statementClass: c.actions.join('+'), targets: c.tables, changes: c.changes, rowCeiling: limits.maxAffectedRows } }
      : {}),
  };
  return { plan, details: { sql, params, readOnly: c.readOnly, limits, classification: c } };
}

function describeStatement(c: SqlClassification): string {
  const what = c.kind === 'other' ? `unclassified statement (${c.nodeType})` : c.actions.join('+');
  const bound = c.readOnly ? '' : c.bounded ? 'bounded ' : 'unbounded ';
  return `${bound}${what}${c.tables.length > 0 ? ` of ${c.tables.join(', ')}` : ''}`;
}
