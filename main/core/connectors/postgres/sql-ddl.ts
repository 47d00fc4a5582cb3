/**
 * Schema changes, TRUNCATE and privilege changes: classified by their top-level statement (tier 3 for
 * DDL, tier 4 for DROP, TRUNCATE and GRANT, which the IdP never delegates either), naming every table
 * and function they mention. A query inside one (CREATE TABLE AS, CREATE VIEW) goes through the strict
 * walker, so a write hidden there is still found.
 */
import type { StatementKind } from './sql-classify.ts';
import { DML_NODES, visit } from './sql-walk.ts';
import type { TreeFacts } from './sql-facts.ts';
import { declareTable, exprOperators, fieldNames, functionName } from './sql-resolve.ts';

export const SCHEMA_CHANGE_KINDS: Record<string, StatementKind> = {
  CreateStmt: 'DDL',
  AlterTableStmt: 'DDL',
  IndexStmt: 'DDL',
  ViewStmt: 'DDL',
  CreateTableAsStmt: 'DDL',
  CommentStmt: 'DDL',
  RenameStmt: 'DDL',
  DropStmt: 'DROP',
  DropRoleStmt: 'DROP',
  DropdbStmt: 'DROP',
  DropOwnedStmt: 'DROP',
  TruncateStmt: 'TRUNCATE',
  GrantStmt: 'GRANT',
  GrantRoleStmt: 'GRANT',
  AlterDefaultPrivilegesStmt: 'GRANT',
  AlterRoleStmt: 'GRANT',
  CreateRoleStmt: 'GRANT',
};

const RELATION_KEYS = new Set(['relation', 'rel', 'view', 'pktable']);

const RELATION_OBJECTS = new Set(['OBJECT_TABLE', 'OBJECT_VIEW', 'OBJECT_MATVIEW', 'OBJECT_INDEX', 'OBJECT_SEQUENCE', 'OBJECT_FOREIGN_TABLE']);

/** Names every table and function a schema change mentions; queries inside it are walked strictly. */
export function scanSchemaChange(stmt: Record<string, unknown>, f: TreeFacts): void {
  const type = Object.keys(stmt)[0]!;
  const kind = SCHEMA_CHANGE_KINDS[type]!;
  const before = new Set(f.tables.keys());
  const scan = (node: unknown): void => {
    if (Array.isArray(node)) {
      for (const item of node) scan(item);
      return;
    }
    if (!node || typeof node !== 'object') return;
    for (const [key, value] of Object.entries(node as Record<string, unknown>)) {
      if (DML_NODES.has(key)) {
        visit({ [key]: value }, undefined, f);
        continue;
      }
      // pktable: the table a foreign key references, which the constraint reads and locks rows of.
      if (key === 'RangeVar' || (RELATION_KEYS.has(key) && value && typeof value === 'object' && 'relname' in value)) {
        declareTable(value as Record<string, unknown>, f);
        continue;
      }
      if (key === 'FuncCall') f.functions.add(functionName((value as { funcname?: unknown }).funcname, f));
      // An expression in the change (USING, CHECK, DEFAULT) runs too: its operators and the names
      // written as fields (`x.f`, a call of f when x has no column f) go to the preflight, as a query's do.
      if (key === 'A_Expr') exprOperators(value as { kind?: unknown; name?: unknown }, f);
      if (key === 'ColumnRef') fieldNames((((value as { fields?: unknown[] }).fields ?? []) as Array<{ String?: { sval?: unknown } }>).slice(1), f);
      if (key === 'A_Indirection') fieldNames(((value as { indirection?: unknown[] }).indirection ?? []) as Array<{ String?: { sval?: unknown } }>, f);
      if (key === 'DropStmt' || key === 'TruncateStmt') dropped(value as Record<string, unknown>, f);
      if (key === 'CommentStmt') commented(value as Record<string, unknown>, f);
      scan(value);
    }
  };
  scan(stmt);
  for (const table of f.tables.keys()) if (!before.has(table)) f.changes.add(`${kind} ${table}`);
}

/** DROP names its objects as lists of identifiers rather than RangeVars. */
function dropped(body: Record<string, unknown>, f: TreeFacts): void {
  if (body.removeType !== undefined && !RELATION_OBJECTS.has(String(body.removeType))) return;
  for (const o of (body.objects ?? []) as NameList[]) declareListed(identifiers(o), f);
}

/**
 * COMMENT ON names its object as a list of identifiers: a table (`[schema,] table`), or a column
 * (`[schema,] table, column`), whose table it changes.
 */
function commented(body: Record<string, unknown>, f: TreeFacts): void {
  const type = String(body.objtype);
  if (type !== 'OBJECT_COLUMN' && !RELATION_OBJECTS.has(type)) return;
  const names = identifiers(body.object as NameList | undefined);
  declareListed(type === 'OBJECT_COLUMN' ? names.slice(0, -1) : names, f);
}

type NameList = { List?: { items?: Array<{ String?: { sval?: string } }> } };

function identifiers(o: NameList | undefined): string[] {
  return (o?.List?.items ?? []).map((i) => i.String?.sval).filter((x): x is string => typeof x === 'string');
}

/** A table named as `[schema,] table`. */
function declareListed(parts: string[], f: TreeFacts): void {
  if (parts.length === 0) return;
  declareTable({ relname: parts[parts.length - 1], ...(parts.length > 1 ? { schemaname: parts[parts.length - 2] } : {}) }, f);
}
