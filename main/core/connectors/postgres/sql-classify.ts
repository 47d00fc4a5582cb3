/**
 * Classifies one SQL statement with PostgreSQL's own parser (libpg-query, the server's grammar compiled
 * to WASM), so the RAR the broker sends describes exactly what will run: every action anywhere in the
 * tree (writes inside WITH at any depth, under EXPLAIN ANALYZE, SELECT … INTO, ON CONFLICT DO UPDATE,
 * row locks, MERGE), every table schema-qualified, every function called, and whether each write is
 * bounded. What the walker does not positively understand is refused (SQL_UNCLASSIFIABLE). Nothing here
 * decides that a call is allowed; it only describes it.
 */
import { createHash } from 'node:crypto';
import { parse } from 'libpg-query';
import { AppError } from '../../../../common/errors.ts';
import { DML_NODES, visit } from './sql-walk.ts';
import { newFacts, refuse, type TreeFacts, type WrittenName } from './sql-facts.ts';
import { describeNode } from './sql-nodes.ts';
import { scanSchemaChange, SCHEMA_CHANGE_KINDS } from './sql-ddl.ts';

/** What a statement does at its top, from the grammar. */
export type StatementKind = 'SELECT' | 'INSERT' | 'UPDATE' | 'DELETE' | 'MERGE' | 'EXPLAIN' | 'DDL' | 'DROP' | 'TRUNCATE' | 'GRANT';

export interface SqlClassification {
  /** The top-level kind (a SELECT whose CTE deletes is still `SELECT` here; see `actions`). */
  kind: StatementKind;
  /** Every action anywhere in the statement, sorted (`DELETE`, `SELECT`, `SELECT FOR UPDATE`, `CREATE`…). */
  actions: string[];
  /**
   * The class a tier-2 approval is scoped to: the actions joined with `+`, and `INSERT ON CONFLICT DO
   * UPDATE` kept apart from a plain INSERT.
   */
  statementClass: string;
  /** The statement's main table: the write target, or the first table a read names. */
  identifier?: string;
  /** Every table the statement touches, schema-qualified (`public.patients`), sorted, CTE names excluded. */
  tables: string[];
  /**
   * Every change and row lock as `<class> <table>`, sorted (`UPDATE public.appointments`,
   * `INSERT_ON_CONFLICT_UPDATE public.notes`, `SELECT_FOR_UPDATE public.patients`).
   */
  changes: string[];
  /** Every function the statement calls, schema-qualified (`pg_catalog.lower`), sorted. */
  functions: string[];
  /** True when every write is restricted: UPDATE/DELETE with a WHERE that references a column, INSERT … VALUES. */
  bounded: boolean;
  /** True when nothing in the statement writes, locks rows or changes the schema (functions aside: see plan.ts). */
  readOnly: boolean;
  /** The parse-tree node name of the top-level statement, for the audit record (`SelectStmt`). */
  nodeType: string;
  /** `sha256:<hex>` of the exact statement bytes. */
  digest: string;
  /** What the connector checks against the catalog inside the call's transaction (preflight.ts). */
  names: ResolvedNames;
}

/** Names the classifier resolved without the catalog; the database proves each before the statement runs. */
export interface ResolvedNames {
  unqualifiedTables: WrittenName[];
  unqualifiedFunctions: string[];
  operators: string[];
  attributes: string[];
}

const DML_KIND: Record<string, StatementKind> = {
  SelectStmt: 'SELECT',
  InsertStmt: 'INSERT',
  UpdateStmt: 'UPDATE',
  DeleteStmt: 'DELETE',
  MergeStmt: 'MERGE',
};

const WRITE_ACTIONS = new Set(['INSERT', 'UPDATE', 'DELETE', 'MERGE', 'CREATE']);

/** Statements refused by name, with the word a person knows them by. */
const STATEMENT_WORDS: Record<string, string> = {
  CallStmt: 'CALL (a procedure can do anything its body does)',
  DoStmt: 'DO (an anonymous code block)',
  CopyStmt: 'COPY',
  VariableSetStmt: 'SET',
  VariableShowStmt: 'SHOW',
  ListenStmt: 'LISTEN',
  UnlistenStmt: 'UNLISTEN',
  NotifyStmt: 'NOTIFY',
  LockStmt: 'LOCK',
  PrepareStmt: 'PREPARE',
  ExecuteStmt: 'EXECUTE',
  DeallocateStmt: 'DEALLOCATE',
  DeclareCursorStmt: 'DECLARE (a cursor)',
  FetchStmt: 'FETCH',
  ClosePortalStmt: 'CLOSE',
  VacuumStmt: 'VACUUM or ANALYZE',
  TransactionStmt: 'a transaction command (each call is already one transaction)',
  DiscardStmt: 'DISCARD',
  LoadStmt: 'LOAD',
  CheckPointStmt: 'CHECKPOINT',
  ReindexStmt: 'REINDEX',
  ClusterStmt: 'CLUSTER',
  RefreshMatViewStmt: 'REFRESH MATERIALIZED VIEW',
  CreateFunctionStmt: 'CREATE FUNCTION',
  AlterSystemStmt: 'ALTER SYSTEM',
  VariableResetStmt: 'RESET',
};

export function sqlDigest(sql: string): string {
  return `sha256:${createHash('sha256').update(sql, 'utf8').digest('hex')}`;
}

/** The one call into libpg-query: PostgreSQL's grammar, as WASM. */
async function parseSql(sql: string): Promise<{ stmts?: Array<{ stmt?: Record<string, unknown> }> }> {
  try {
    return (await parse(sql)) as { stmts?: Array<{ stmt?: Record<string, unknown> }> };
  } catch (error) {
    // The parser's message quotes the SQL back; the SQL is the caller's own text, but keep only the position.
    const position = (error as { sqlDetails?: { cursorPosition?: number } }).sqlDetails?.cursorPosition;
    throw new AppError(
      'SQL_UNPARSABLE',
      `PostgreSQL's parser rejected the SQL${typeof position === 'number' ? ` near character ${position + 1}` : ''}; fix the syntax and retry.`,
      { cause: error },
    );
  }
}

/**
 * Parses and classifies exactly one statement. Throws SQL_UNPARSABLE when PostgreSQL's grammar rejects
 * it (or it is empty), SQL_MULTI_STATEMENT when it holds more than one statement and SQL_UNCLASSIFIABLE
 * when any part of it is not something Countersign classifies.
 */
export async function classifySql(sql: string): Promise<SqlClassification> {
  return classifyTree(await parseSql(sql), sql);
}

/** Classifies an already parsed statement (the benchmark times this apart from the parse). */
function classifyTree(tree: { stmts?: Array<{ stmt?: Record<string, unknown> }> }, sql: string): SqlClassification {
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
  const body = (stmt[nodeType] ?? {}) as Record<string, unknown>;
  const f = newFacts();
  let kind: StatementKind;
  let explainOnly = false;

  if (DML_NODES.has(nodeType)) {
    visit(stmt, undefined, f);
    kind = DML_KIND[nodeType]!;
  } else if (nodeType === 'ExplainStmt') {
    const inner = (body.query ?? {}) as Record<string, unknown>;
    const innerType = Object.keys(inner)[0] ?? 'unknown';
    if (!DML_NODES.has(innerType)) refuse(`EXPLAIN of ${describeNode(innerType)}`);
    for (const key of Object.keys(body)) if (key !== 'query' && key !== 'options') refuse(`EXPLAIN with ${key}`);
    visit(inner, undefined, f);
    // EXPLAIN runs nothing unless ANALYZE; EXPLAIN ANALYZE runs its statement, effects and all.
    explainOnly = !explainAnalyzes(body.options);
    kind = explainOnly ? 'EXPLAIN' : DML_KIND[innerType]!;
    f.actions.add('EXPLAIN');
  } else if (SCHEMA_CHANGE_KINDS[nodeType]) {
    kind = SCHEMA_CHANGE_KINDS[nodeType];
    scanSchemaChange(stmt, f);
    f.actions.add(kind);
  } else {
    refuse(STATEMENT_WORDS[nodeType] ?? `the statement ${nodeType.replace(/Stmt$/, '')}`);
  }

  if (f.selectInto) kind = 'DDL';
  const tables = [...f.tables.entries()].sort((a, b) => a[1] - b[1]);
  const actions = explainOnly ? ['EXPLAIN'] : [...f.actions].sort();
  const changes = explainOnly ? [] : [...f.changes].sort();
  const writes = actions.some((a) => WRITE_ACTIONS.has(a) || a.startsWith('SELECT FOR'));
  const readOnly = (kind === 'SELECT' || kind === 'EXPLAIN') && !writes;
  const writeTarget = changes.find((c) => !c.startsWith('SELECT_'))?.split(' ')[1];
  return {
    kind,
    actions,
    statementClass: `${actions.join('+')}${f.upsert && !explainOnly ? ' (ON CONFLICT DO UPDATE)' : ''}`,
    ...(writeTarget ?? tables[0]?.[0] ? { identifier: writeTarget ?? tables[0]![0] } : {}),
    tables: tables.map(([name]) => name).sort(),
    changes,
    functions: [...f.functions].sort(),
    bounded: explainOnly || f.unboundedWrites === 0,
    readOnly,
    nodeType,
    digest: sqlDigest(sql),
    names: namesOf(f),
  };
}

function namesOf(f: TreeFacts): ResolvedNames {
  return {
    unqualifiedTables: [...f.unqualifiedTables.values()],
    unqualifiedFunctions: [...f.unqualifiedFunctions].sort(),
    operators: [...f.operators].sort(),
    attributes: [...f.attributes].sort(),
  };
}

/** ANALYZE is on when any of its options says so, unless it says false/off/0 (`EXPLAIN (ANALYZE false)`). */
function explainAnalyzes(options: unknown): boolean {
  let analyze = false;
  for (const o of (options ?? []) as Array<{ DefElem?: { defname?: string; arg?: Record<string, { sval?: string; boolval?: boolean; ival?: number }> } }>) {
    const d = o.DefElem;
    if (!d || d.defname !== 'analyze') continue;
    const arg = d.arg;
    const value = arg ? (arg.String?.sval ?? arg.Boolean?.boolval ?? arg.Integer?.ival) : true;
    // An argument of a shape not listed here counts as on: the walk then covers what it would run.
    const off = value === false || value === 0 || (typeof value === 'string' && ['false', 'off', '0', 'no'].includes(value.toLowerCase()));
    if (!off) analyze = true;
  }
  return analyze;
}
