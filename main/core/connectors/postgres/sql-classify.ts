/**
 * Classifies one SQL statement with PostgreSQL's own parser (libpg-query, the server's grammar compiled
 * to WASM), so the RAR the broker sends describes exactly what will run: the statement kind, every
 * table it touches (CTEs, sub-queries, joins, data-modifying CTEs) and whether each write is bounded.
 * Nothing here decides that a call is allowed; it only describes it.
 */
import { createHash } from 'node:crypto';
import { parse } from 'libpg-query';
import { AppError } from '../../../../common/errors.ts';

/** What a statement does, from the grammar. `other` is anything we do not classify (tier 4). */
export type StatementKind =
  | 'SELECT'
  | 'INSERT'
  | 'UPDATE'
  | 'DELETE'
  | 'MERGE'
  | 'DDL'
  | 'DROP'
  | 'TRUNCATE'
  | 'GRANT'
  | 'other';

export interface SqlClassification {
  /** The top-level kind (a SELECT whose CTE deletes is still `SELECT` here; see `actions`). */
  kind: StatementKind;
  /** Every DML action anywhere in the statement, sorted; for DDL and the rest, the kind itself. */
  actions: string[];
  /** The statement's main table: the write target, or the first table a read names. */
  identifier?: string;
  /** Every table the statement touches (schema-qualified unless `public`), sorted, CTE names excluded. */
  tables: string[];
  /**
   * Every change anywhere in the statement as `<class> <table>`, sorted (`UPDATE appointments`,
   * `INSERT_ON_CONFLICT_UPDATE notes`): what a tier-2 approval is scoped to. Empty when a changed
   * table cannot be named, so such an approval covers nothing else.
   */
  changes: string[];
  /** True when every write is restricted: UPDATE/DELETE with a WHERE that references a column, INSERT … VALUES. */
  bounded: boolean;
  /** True when nothing in the statement writes (DML) or changes the schema. */
  readOnly: boolean;
  /** The parse-tree node name of the top-level statement, for the audit record (`SelectStmt`). */
  nodeType: string;
  /** `sha256:<hex>` of the exact statement bytes. */
  digest: string;
}

const DML: Record<string, StatementKind> = {
  SelectStmt: 'SELECT',
  InsertStmt: 'INSERT',
  UpdateStmt: 'UPDATE',
  DeleteStmt: 'DELETE',
  MergeStmt: 'MERGE',
};

/** Schema changes that are tier 3 (reviewed, not blocked). Everything unlisted is `other`, tier 4. */
const DDL_NODES = new Set([
  'CreateStmt',
  'AlterTableStmt',
  'IndexStmt',
  'ViewStmt',
  'CreateTableAsStmt',
  'CommentStmt',
  'RenameStmt',
]);
const DROP_NODES = new Set(['DropStmt', 'DropRoleStmt', 'DropdbStmt', 'DropOwnedStmt']);
const GRANT_NODES = new Set(['GrantStmt', 'GrantRoleStmt', 'AlterDefaultPrivilegesStmt', 'AlterRoleStmt', 'CreateRoleStmt']);

export function sqlDigest(sql: string): string {
  return `sha256:${createHash('sha256').update(sql, 'utf8').digest('hex')}`;
}

/**
 * Parses and classifies exactly one statement. Throws SQL_UNPARSABLE when PostgreSQL's grammar rejects
 * it (or it is empty) and SQL_MULTI_STATEMENT when it holds more than one statement.
 */
export async function classifySql(sql: string): Promise<SqlClassification> {
  let tree: { stmts?: Array<{ stmt?: Record<string, unknown> }> };
  try {
    tree = (await parse(sql)) as typeof tree;
  } catch (error) {
    // The parser's message quotes the SQL back; the SQL is the caller's own text, but keep only the position.
    const position = (error as { sqlDetails?: { cursorPosition?: number } }).sqlDetails?.cursorPosition;
    throw new AppError(
      'SQL_UNPARSABLE',
      `PostgreSQL's parser rejected the SQL${typeof position === 'number' ? ` near character ${position + 1}` : ''}; fix the syntax and retry.`,
      { cause: error },
    );
  }
  const stmts = tree.stmts ?? [];
  if (stmts.length === 0) throw new AppError('SQL_UNPARSABLE', 'The SQL holds no statement.');
  if (stmts.length > 1) {
    throw new AppError(
      'SQL_MULTI_STATEMENT',
      `The SQL holds ${stmts.length} statements; send one statement per call so each is described and approved on its own.`,
    );
  }
  const stmt = stmts[0]?.stmt ?? {};
  const nodeType = Object.keys(stmt)[0] ?? 'unknown';
  let body = stmt[nodeType] as Record<string, unknown>;
  let effectiveType = nodeType;
  // EXPLAIN runs nothing unless ANALYZE, but EXPLAIN ANALYZE runs its query: classify the query inside.
  if (nodeType === 'ExplainStmt') {
    const inner = (body.query ?? {}) as Record<string, unknown>;
    effectiveType = Object.keys(inner)[0] ?? 'unknown';
    body = inner[effectiveType] as Record<string, unknown>;
  }

  const walk = collect({ [effectiveType]: body });
  // SELECT … INTO creates a table: a schema change, not a read.
  const kind = walk.selectInto ? 'DDL' : topKind(effectiveType);
  const tables = [...walk.tables.entries()]
    .filter(([name, ref]) => ref.schema !== undefined || !walk.cteNames.has(name))
    .sort((a, b) => a[1].location - b[1].location);
  const writeTarget = kind === 'INSERT' || kind === 'UPDATE' || kind === 'DELETE' || kind === 'MERGE' ? relationName(body.relation) : undefined;

  const dmlActions = [...walk.actions];
  const actions = DML[effectiveType] && kind !== 'DDL' ? dmlActions.sort() : [kind === 'other' ? effectiveType : kind];
  const writes = dmlActions.some((a) => a !== 'SELECT');
  return {
    kind,
    actions,
    identifier: writeTarget ?? tables[0]?.[0],
    tables: tables.map(([name]) => name).sort(),
    changes: walk.unnamedChange ? [] : [...walk.changes].sort(),
    bounded: walk.unboundedWrites === 0,
    readOnly: kind === 'SELECT' && !writes && !walk.lockingClause,
    nodeType,
    digest: sqlDigest(sql),
  };
}

function topKind(nodeType: string): StatementKind {
  const dml = DML[nodeType];
  if (dml) return dml;
  if (DDL_NODES.has(nodeType)) return 'DDL';
  if (DROP_NODES.has(nodeType)) return 'DROP';
  if (nodeType === 'TruncateStmt') return 'TRUNCATE';
  if (GRANT_NODES.has(nodeType)) return 'GRANT';
  return 'other';
}

interface TableRef {
  schema?: string;
  location: number;
}

interface Walk {
  tables: Map<string, TableRef>;
  cteNames: Set<string>;
  actions: Set<string>;
  unboundedWrites: number;
  lockingClause: boolean;
  selectInto: boolean;
  changes: Set<string>;
  unnamedChange: boolean;
}

function relationName(node: unknown): string | undefined {
  if (!node || typeof node !== 'object') return undefined;
  const rv = node as { relname?: string; schemaname?: string };
  if (!rv.relname) return undefined;
  return rv.schemaname && rv.schemaname !== 'public' ? `${rv.schemaname}.${rv.relname}` : rv.relname;
}

/** True when a WHERE can restrict rows one by one: it references at least one column. `WHERE true` does not. */
function referencesColumn(node: unknown): boolean {
  if (Array.isArray(node)) return node.some(referencesColumn);
  if (!node || typeof node !== 'object') return false;
  for (const [key, value] of Object.entries(node)) {
    if (key === 'ColumnRef') return true;
    if (referencesColumn(value)) return true;
  }
  return false;
}

/** Walks the whole parse tree: every RangeVar is a table, every DML node an action. */
function collect(root: unknown): Walk {
  const walk: Walk = {
    tables: new Map(),
    cteNames: new Set(),
    actions: new Set(),
    unboundedWrites: 0,
    lockingClause: false,
    selectInto: false,
    changes: new Set(),
    unnamedChange: false,
  };
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) {
      for (const item of node) visit(item);
      return;
    }
    if (!node || typeof node !== 'object') return;
    for (const [key, value] of Object.entries(node as Record<string, unknown>)) {
      if (key === 'RangeVar') {
        addRelation(walk, value as { relname?: string; schemaname?: string; location?: number });
      } else if (key === 'relation' && value && typeof value === 'object' && 'relname' in value) {
        // Write targets and ALTER/CREATE INDEX relations are bare RangeVar bodies, not wrapped nodes.
        addRelation(walk, value as { relname?: string; schemaname?: string; location?: number });
      } else if (key === 'DropStmt') {
        // DROP names its objects as lists of identifiers rather than RangeVars.
        const objects = ((value as { objects?: unknown[] }).objects ?? []) as Array<{ List?: { items?: Array<{ String?: { sval?: string } }> } }>;
        for (const o of objects) {
          const parts = (o.List?.items ?? []).map((i) => i.String?.sval).filter((x): x is string => typeof x === 'string');
          if (parts.length === 0) continue;
          const relname = parts[parts.length - 1]!;
          const schemaname = parts.length > 1 ? parts[parts.length - 2] : undefined;
          addRelation(walk, { relname, schemaname, location: 0 });
        }
      } else if (key === 'CommonTableExpr') {
        const name = (value as { ctename?: string }).ctename;
        if (name) walk.cteNames.add(name);
      } else if (DML[key]) {
        const action = DML[key];
        walk.actions.add(action);
        const body = value as Record<string, unknown>;
        if ((action === 'UPDATE' || action === 'DELETE') && !referencesColumn(body.whereClause)) walk.unboundedWrites += 1;
        if (action === 'INSERT' && !insertIsBounded(body)) walk.unboundedWrites += 1;
        if (action === 'MERGE') walk.unboundedWrites += 1;
        if (action !== 'SELECT') {
          const table = relationName(body.relation);
          const upsert = action === 'INSERT' && (body.onConflictClause as { action?: string } | undefined)?.action === 'ONCONFLICT_UPDATE';
          if (table) walk.changes.add(`${upsert ? 'INSERT_ON_CONFLICT_UPDATE' : action} ${table}`);
          else walk.unnamedChange = true;
        }
        if (action === 'SELECT' && Array.isArray(body.lockingClause) && body.lockingClause.length > 0) walk.lockingClause = true;
        if (action === 'SELECT' && body.intoClause) walk.selectInto = true;
      }
      visit(value);
    }
  };
  visit(root);
  return walk;
}

function addRelation(walk: Walk, rv: { relname?: string; schemaname?: string; location?: number }): void {
  const name = relationName(rv);
  if (name && !walk.tables.has(name)) walk.tables.set(name, { schema: rv.schemaname, location: rv.location ?? 0 });
}

/** INSERT … VALUES adds the rows it lists; INSERT … SELECT is bounded only by a LIMIT. */
function insertIsBounded(body: Record<string, unknown>): boolean {
  const select = (body.selectStmt as { SelectStmt?: Record<string, unknown> } | undefined)?.SelectStmt;
  if (!select) return true; // DEFAULT VALUES
  if (Array.isArray(select.valuesLists)) return true;
  return select.limitCount !== undefined;
}
