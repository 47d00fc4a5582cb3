/**
 * The local policy: a JSON-with-comments file, validated with zod, that maps tools and tables to a tier,
 * a RAR template and limits. Local policy only ever adds approvals or refuses: a tier from the file is a
 * floor, combined with the statement kind's default by `max`, so no entry can make a call less guarded
 * than its kind. What a call may actually do is decided by the IdP from the RAR and enforced by Vault's
 * role binding and the database's grants.
 */
import { readFile } from 'node:fs/promises';
import { findNodeAtLocation, getNodePath, parseTree, printParseErrorCode, type Node, type ParseError } from 'jsonc-parser';
import { z } from 'zod';
import { AppError } from '../../../common/errors.ts';
import type { Tier } from '../connectors/types.ts';

const TierSchema = z.union([z.literal(1), z.literal(2), z.literal(3), z.literal(4)]);

const LimitsSchema = z
  .object({
    /** Rows returned to Claude; more are cut with a note. */
    rowCap: z.number().int().positive().max(100_000).optional(),
    /** PostgreSQL `statement_timeout` for the call. */
    statementTimeoutMs: z.number().int().positive().max(600_000).optional(),
    /** Writes affecting more rows than this are rolled back (the tier-2 approval's row ceiling). */
    maxAffectedRows: z.number().int().positive().optional(),
    /**
     * Bytes a call's statement may send back (PostgreSQL's wire bytes, after the login): past them
     * the session is closed, nothing more is read, and a write is rolled back. 512 KiB by default:
     * Claude Desktop refuses a tool result over 1 MB, and an answer carries each value twice (the
     * table Claude reads and the structured rows). At most 1 MiB: the broker withholds any answer over
     * the 1 MB Claude Desktop accepts (main/core/broker/call-bounds.ts), so reading more is for nothing.
     */
    maxResultBytes: z.number().int().positive().max(1024 * 1024).optional(),
  })
  .strict();

const TableSchema = z
  .object({
    /** A floor for every call that touches this table. */
    tier: TierSchema.optional(),
    /** The whole table is sensitive: any call touching it is tier 3 and asks for the `sensitive` privilege. */
    sensitive: z.boolean().optional(),
    /**
     * Some rows are sensitive (the clinic's VIP patients): row-level security hides them unless the call
     * asks with `include_sensitive: true`, which makes it tier 3 and asks for the `sensitive` privilege.
     */
    sensitiveRows: z.boolean().optional(),
    limits: LimitsSchema.optional(),
  })
  .strict();

const FunctionsSchema = z
  .object({
    /**
     * Functions a read may call besides PostgreSQL's built-ins known to have no side effect and no table
     * access. Schema-qualified (`public.mask_mrn`); an unqualified name means pg_catalog's.
     */
    allow: z.array(z.string().min(1)).default([]),
    /** Functions with effects (nextval, pg_advisory_lock…) a call may still use through `execute`, at tier 3. */
    review: z.array(z.string().min(1)).default([]),
  })
  .strict();

const ToolSchema = z.object({ tier: TierSchema.optional(), limits: LimitsSchema.optional() }).strict();

const PostgresConnectorSchema = z
  .object({
    /** The RAR `locations` entry and the audit target (`postgres://lab/clinic`). */
    location: z.string().min(1),
    /** RFC 8693 `audience` for Vault-bound exchanges. */
    audience: z.string().min(1),
    vault: z.object({ authMount: z.string().min(1), dbMount: z.string().min(1) }).strict(),
    /** The Vault role (and database role) the IdP is expected to name for each class of call. */
    roles: z.object({ read: z.string().min(1), write: z.string().min(1), sensitive: z.string().min(1) }).strict(),
    /** Extra fields merged into every RAR object this connector writes (never overriding computed ones). */
    rarTemplate: z.record(z.string(), z.unknown()).optional(),
    limits: LimitsSchema.optional(),
    tables: z.record(z.string(), TableSchema).default({}),
    /** `block`: a call touching a table the policy does not list is tier 4. `default`: tier from its kind. */
    unlistedTables: z.enum(['block', 'default']).default('default'),
    tools: z.record(z.string(), ToolSchema).default({}),
    functions: FunctionsSchema.optional(),
  })
  .strict();

export const PolicySchema = z
  .object({
    version: z.literal(1),
    postgres: PostgresConnectorSchema.optional(),
  })
  .strict();

export type Policy = z.infer<typeof PolicySchema>;
export type PostgresPolicy = z.infer<typeof PostgresConnectorSchema>;
export type Limits = z.infer<typeof LimitsSchema>;

const DEFAULT_LIMITS: Required<Limits> = { rowCap: 200, statementTimeoutMs: 5_000, maxAffectedRows: 100, maxResultBytes: 512 * 1024 };

/** Parses policy text (JSON with comments); every problem names its line, column and field. */
export function parsePolicy(text: string, source = 'policy'): Policy {
  const errors: ParseError[] = [];
  const tree = parseTree(text, errors, { allowTrailingComma: true, disallowComments: false });
  if (errors.length > 0 || !tree) {
    const first = errors[0];
    const where = first ? locate(text, first.offset) : { line: 1, column: 1 };
    throw new AppError(
      'POLICY_INVALID',
      `${source}:${where.line}:${where.column}: ${first ? printParseErrorCode(first.error) : 'empty file'}`,
    );
  }
  const value = nodeValue(tree);
  const result = PolicySchema.safeParse(value);
  if (result.success) return result.data;
  const lines = result.error.issues.slice(0, 5).map((issue) => {
    const path = issue.path.filter((p): p is string | number => typeof p !== 'symbol');
    const node = nearestNode(tree, path);
    const where = locate(text, node.offset);
    const field = path.length > 0 ? path.join('.') : '(root)';
    return `${source}:${where.line}:${where.column}: ${field}: ${issue.message}`;
  });
  throw new AppError('POLICY_INVALID', `The policy file is invalid:\n${lines.join('\n')}`);
}

export async function loadPolicyFile(path: string): Promise<Policy> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new AppError('CONFIG_MISSING', `The policy file ${path} could not be read.`, { cause: error });
  }
  return parsePolicy(text, path);
}

function nodeValue(node: Node): unknown {
  switch (node.type) {
    case 'object':
      return Object.fromEntries(
        (node.children ?? []).map((prop) => [prop.children?.[0]?.value as string, prop.children?.[1] ? nodeValue(prop.children[1]) : undefined]),
      );
    case 'array':
      return (node.children ?? []).map(nodeValue);
    default:
      return node.value;
  }
}

/** The node at `path`, or its nearest existing ancestor (a missing field is reported at its parent). */
function nearestNode(tree: Node, path: Array<string | number>): Node {
  for (let n = path.length; n >= 0; n -= 1) {
    const node = findNodeAtLocation(tree, path.slice(0, n));
    if (node) {
      // Point at the property key rather than its value when there is one.
      const parent = node.parent;
      if (parent?.type === 'property' && parent.children?.[0] && getNodePath(node).length > 0) return parent.children[0];
      return node;
    }
  }
  return tree;
}

function locate(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < offset && i < text.length; i += 1) {
    if (text.charCodeAt(i) === 10) {
      line += 1;
      lineStart = i + 1;
    }
  }
  return { line, column: offset - lineStart + 1 };
}

/** Tier defaults from the statement kind (docs/call-chain.md, "What each tier admits (SQL)"). */
export function defaultTierForStatement(kind: string, bounded: boolean): Tier {
  switch (kind) {
    case 'SELECT':
      return 1;
    case 'INSERT':
    case 'UPDATE':
    case 'DELETE':
    case 'MERGE':
      return bounded ? 2 : 3;
    case 'DDL':
      return 3;
    default:
      // DROP, TRUNCATE, GRANT and anything unclassifiable.
      return 4;
  }
}

export function maxTier(...tiers: Array<Tier | undefined>): Tier {
  let tier: Tier = 1;
  for (const t of tiers) if (t !== undefined && t > tier) tier = t;
  return tier;
}

/** Limits for a call: the connector's (or the defaults), tightened by the tool's and every touched table's. */
export function effectiveLimits(base: Limits | undefined, ...tighter: Array<Limits | undefined>): Required<Limits> {
  const out = { ...DEFAULT_LIMITS, ...stripUndefined(base) };
  for (const layer of tighter) {
    if (!layer) continue;
    for (const key of Object.keys(out) as Array<keyof Limits>) {
      const value = layer[key];
      if (value !== undefined) out[key] = Math.min(out[key], value);
    }
  }
  return out;
}

function stripUndefined(limits: Limits | undefined): Limits {
  return Object.fromEntries(Object.entries(limits ?? {}).filter(([, v]) => v !== undefined));
}
