/**
 * Walks every node of a PostgreSQL parse tree (libpg-query's JSON) and collects what the statement
 * will do (sql-facts.ts): every action, every table (names resolved as PostgreSQL resolves them,
 * sql-resolve.ts), every function, operator and type.
 *
 * A whitelist, not a blacklist: each node type and each field of it that the walker understands is
 * listed, here or in sql-nodes.ts; any other node type, or any field the list does not know (a newer
 * grammar's addition), is refused with SQL_UNCLASSIFIABLE rather than skipped. Written by hand: no
 * library classifies a PostgreSQL tree by the effects of its nodes.
 */
import { BUILTIN_TYPES } from './sql-functions.ts';
import { CATALOG_SCHEMA, qualifiedName } from './sql-names.ts';
import { S, W, refuse, type Body, type Handler, type Rule, type Scope, type TreeFacts } from './sql-facts.ts';
import { declareTable, functionName, nameList, operatorName, rangeVar } from './sql-resolve.ts';
import { PASS_THROUGH, describeNode } from './sql-nodes.ts';

// ---- field rules ---------------------------------------------------------------------------------

function fields(type: string, spec: Record<string, Rule>, body: Body, scope: Scope | undefined, f: TreeFacts, own: readonly string[] = []): void {
  for (const key of Object.keys(body)) {
    if (own.includes(key)) continue;
    const rule = spec[key];
    if (rule === undefined) refuse(`${type}.${key}`);
    if (rule === 'w') visit(body[key], scope, f);
  }
}

const simple = (type: string, spec: Record<string, Rule>): Handler => (body, scope, f) => fields(type, spec, body, scope, f);

function typeName(tn: unknown, scope: Scope | undefined, f: TreeFacts): void {
  if (!tn || typeof tn !== 'object') refuse('a type');
  const body = tn as Body;
  fields('TypeName', { names: S, typeOid: S, setof: S, typmods: W, typemod: S, arrayBounds: S, location: S }, body, scope, f);
  const names = nameList(body.names, 'a type name');
  if (names.length === 2 && names[0] === CATALOG_SCHEMA) return;
  if (names.length === 1 && BUILTIN_TYPES.has(names[0]!)) return;
  refuse(`the type ${names.join('.')} (only PostgreSQL's built-in types are accepted in casts and column lists)`);
}

// ---- statements ----------------------------------------------------------------------------------

function withClause(wc: unknown, scope: Scope | undefined, f: TreeFacts): Scope | undefined {
  if (wc === undefined) return scope;
  const body = wc as Body;
  fields('WithClause', { ctes: S, recursive: S, location: S }, body, scope, f);
  const ctes = (body.ctes ?? []) as Array<{ CommonTableExpr?: Body }>;
  const names = ctes.map((c) => {
    const name = c.CommonTableExpr?.ctename;
    if (typeof name !== 'string') refuse('a WITH item that is not a common table expression');
    return name;
  });
  if (body.recursive === true) {
    // WITH RECURSIVE: every item sees every name of the list, itself included.
    const all: Scope = { names: new Set(names), up: scope };
    for (const c of ctes) cte(c.CommonTableExpr!, all, f);
    return all;
  }
  // Plain WITH: an item sees only the items before it; its own name still means the table inside it.
  const seen = new Set<string>();
  let current = scope;
  for (const [i, c] of ctes.entries()) {
    cte(c.CommonTableExpr!, current, f);
    seen.add(names[i]!);
    current = { names: new Set(seen), up: scope };
  }
  return current;
}

function cte(body: Body, scope: Scope | undefined, f: TreeFacts): void {
  fields(
    'CommonTableExpr',
    { ctename: S, aliascolnames: S, ctematerialized: S, ctequery: W, search_clause: S, cycle_clause: S, location: S },
    body,
    scope,
    f,
  );
  if (body.cycle_clause !== undefined) {
    fields(
      'CTECycleClause',
      { cycle_col_list: S, cycle_mark_column: S, cycle_mark_value: W, cycle_mark_default: W, cycle_path_column: S, location: S },
      body.cycle_clause as Body,
      scope,
      f,
    );
  }
  if (body.search_clause !== undefined) {
    fields('CTESearchClause', { search_col_list: S, search_breadth_first: S, search_seq_column: S, location: S }, body.search_clause as Body, scope, f);
  }
}

const LOCKS: Record<string, string> = {
  LCS_FORUPDATE: 'FOR UPDATE',
  LCS_FORNOKEYUPDATE: 'FOR NO KEY UPDATE',
  LCS_FORSHARE: 'FOR SHARE',
  LCS_FORKEYSHARE: 'FOR KEY SHARE',
};

const selectStmt: Handler = (b, outer, f) => {
  const scope = withClause(b.withClause, outer, f);
  const own = ['withClause', 'larg', 'rarg', 'fromClause', 'intoClause', 'lockingClause', 'valuesLists'];
  fields(
    'SelectStmt',
    {
      distinctClause: W,
      targetList: W,
      whereClause: W,
      groupClause: W,
      groupDistinct: S,
      havingClause: W,
      windowClause: W,
      sortClause: W,
      limitOffset: W,
      limitCount: W,
      limitOption: S,
      op: S,
      all: S,
    },
    b,
    scope,
    f,
    own,
  );
  if (b.larg !== undefined || b.rarg !== undefined) {
    selectStmt(b.larg as Body, scope, f);
    selectStmt(b.rarg as Body, scope, f);
  }
  if (b.valuesLists !== undefined) visit(b.valuesLists, scope, f);
  else if (b.op === undefined || b.op === 'SETOP_NONE') f.actions.add('SELECT');
  const from: string[] = [];
  f.fromStack.push(from);
  try {
    visit(b.fromClause, scope, f);
  } finally {
    f.fromStack.pop();
  }
  if (b.intoClause !== undefined) {
    const into = b.intoClause as Body;
    fields('IntoClause', { rel: S, colNames: S, accessMethod: S, options: S, onCommit: S, tableSpaceName: S, skipData: S }, into, scope, f);
    f.selectInto = true;
    f.actions.add('CREATE');
    const rel = into.rel as Body;
    // SELECT … INTO TEMP creates the table in the session's own temporary schema.
    const temp = rel.relpersistence === 't' && rel.schemaname === undefined;
    f.changes.add(`CREATE ${temp ? qualifiedName('pg_temp', String(rel.relname)) : declareTable(rel, f)}`);
    if (temp) f.tables.set(qualifiedName('pg_temp', String(rel.relname)), 0);
  }
  for (const item of (b.lockingClause ?? []) as Array<{ LockingClause?: Body }>) {
    const lc = item.LockingClause;
    if (!lc) refuse('a locking clause');
    fields('LockingClause', { lockedRels: S, strength: S, waitPolicy: S }, lc, scope, f);
    const strength = LOCKS[String(lc.strength)];
    if (!strength) refuse(`the locking clause ${String(lc.strength)}`);
    f.actions.add(`SELECT ${strength}`);
    // Without OF the lock reaches every table in FROM, sub-queries included; with OF we still name them all.
    for (const t of from) f.changes.add(`SELECT_${strength.replace(/ /g, '_')} ${t}`);
    if (from.length === 0) refuse('a locking clause on no table');
  }
};

/** RETURNING (PostgreSQL 18 spells it as a clause with OLD/NEW aliases). */
function returning(b: Body, scope: Scope | undefined, f: TreeFacts): void {
  if (b.returningClause !== undefined) fields('ReturningClause', { options: S, exprs: W }, b.returningClause as Body, scope, f);
}

function target(b: Body, action: string, f: TreeFacts): string {
  const rel = b.relation as Body | undefined;
  if (!rel) refuse(`${action} without a target table`);
  if (rel.catalogname !== undefined) refuse('a three-part table name (database.schema.table)');
  // A write target always names a real relation, whatever CTE shares its name.
  return declareTable(rel, f);
}

const insertStmt: Handler = (b, outer, f) => {
  const scope = withClause(b.withClause, outer, f);
  fields('InsertStmt', { relation: S, cols: W, selectStmt: W, onConflictClause: S, returningList: W, returningClause: S, withClause: S, override: S }, b, scope, f);
  returning(b, scope, f);
  const table = target(b, 'INSERT', f);
  f.actions.add('INSERT');
  let upsert = false;
  if (b.onConflictClause !== undefined) {
    const oc = b.onConflictClause as Body;
    fields('OnConflictClause', { action: S, infer: S, targetList: W, whereClause: W, location: S }, oc, scope, f);
    if (oc.infer !== undefined) fields('InferClause', { indexElems: W, whereClause: W, conname: S, location: S }, oc.infer as Body, scope, f);
    if (oc.action === 'ONCONFLICT_UPDATE') upsert = true;
    else if (oc.action !== 'ONCONFLICT_NOTHING') refuse(`ON CONFLICT ${String(oc.action)}`);
  }
  if (upsert) {
    f.upsert = true;
    f.actions.add('UPDATE');
  }
  f.changes.add(`${upsert ? 'INSERT_ON_CONFLICT_UPDATE' : 'INSERT'} ${table}`);
  if (!insertIsBounded(b)) f.unboundedWrites += 1;
};

const updateStmt: Handler = (b, outer, f) => {
  const scope = withClause(b.withClause, outer, f);
  fields('UpdateStmt', { relation: S, targetList: W, whereClause: W, fromClause: W, returningList: W, returningClause: S, withClause: S }, b, scope, f);
  returning(b, scope, f);
  f.actions.add('UPDATE');
  f.changes.add(`UPDATE ${target(b, 'UPDATE', f)}`);
  if (!referencesColumn(b.whereClause)) f.unboundedWrites += 1;
};

const deleteStmt: Handler = (b, outer, f) => {
  const scope = withClause(b.withClause, outer, f);
  fields('DeleteStmt', { relation: S, usingClause: W, whereClause: W, returningList: W, returningClause: S, withClause: S }, b, scope, f);
  returning(b, scope, f);
  f.actions.add('DELETE');
  f.changes.add(`DELETE ${target(b, 'DELETE', f)}`);
  if (!referencesColumn(b.whereClause)) f.unboundedWrites += 1;
};

const MERGE_COMMANDS: Record<string, string | undefined> = { CMD_UPDATE: 'UPDATE', CMD_INSERT: 'INSERT', CMD_DELETE: 'DELETE', CMD_NOTHING: undefined };

const mergeStmt: Handler = (b, outer, f) => {
  const scope = withClause(b.withClause, outer, f);
  fields(
    'MergeStmt',
    { relation: S, sourceRelation: W, joinCondition: W, mergeWhenClauses: S, returningList: W, returningClause: S, withClause: S },
    b,
    scope,
    f,
  );
  returning(b, scope, f);
  const table = target(b, 'MERGE', f);
  f.actions.add('MERGE');
  for (const item of (b.mergeWhenClauses ?? []) as Array<{ MergeWhenClause?: Body }>) {
    const w = item.MergeWhenClause;
    if (!w) refuse('a MERGE clause');
    fields('MergeWhenClause', { matchKind: S, commandType: S, override: S, condition: W, targetList: W, values: W }, w, scope, f);
    const command = String(w.commandType);
    if (!(command in MERGE_COMMANDS)) refuse(`MERGE … ${command}`);
    const action = MERGE_COMMANDS[command];
    if (action) f.actions.add(action);
  }
  f.changes.add(`MERGE ${table}`);
  // A MERGE's reach is its join: never bounded to named rows.
  f.unboundedWrites += 1;
};

// ---- expressions and FROM items ------------------------------------------------------------------

const funcCall: Handler = (b, scope, f) => {
  fields(
    'FuncCall',
    {
      funcname: S,
      args: W,
      agg_order: W,
      agg_filter: W,
      over: S,
      agg_within_group: S,
      agg_star: S,
      agg_distinct: S,
      func_variadic: S,
      funcformat: S,
      location: S,
    },
    b,
    scope,
    f,
  );
  f.functions.add(functionName(b.funcname, f));
  if (b.over !== undefined) windowDef(b.over as Body, scope, f);
};

const windowDef: Handler = simple('WindowDef', PASS_THROUGH.WindowDef!);

const rangeFunction: Handler = (b, scope, f) => {
  fields('RangeFunction', { lateral: S, ordinality: S, is_rowsfrom: S, functions: S, alias: S, coldeflist: W }, b, scope, f);
  for (const entry of (b.functions ?? []) as Array<{ List?: { items?: unknown[] } }>) {
    const [call, coldefs, ...rest] = entry.List?.items ?? [];
    if (rest.length > 0 || !call || typeof call !== 'object' || !('FuncCall' in call)) refuse('a FROM item that is not a function call');
    visit(call, scope, f);
    if (coldefs !== undefined && !(typeof coldefs === 'object' && coldefs !== null && Object.keys(coldefs).length === 0)) visit(coldefs, scope, f);
  }
};

const columnDef: Handler = (b, scope, f) => {
  fields('ColumnDef', { colname: S, typeName: S, is_local: S, is_not_null: S, is_from_type: S, inhcount: S, location: S }, b, scope, f);
  typeName(b.typeName, scope, f);
};

const aExpr: Handler = (b, scope, f) => {
  fields('A_Expr', { kind: S, name: S, lexpr: W, rexpr: W, location: S, rexpr_list_start: S, rexpr_list_end: S }, b, scope, f);
  const kind = String(b.kind);
  if (kind.includes('BETWEEN')) {
    f.operators.add('>=');
    f.operators.add('<=');
    return;
  }
  operatorName(b.name, f);
};

const subLink: Handler = (b, scope, f) => {
  fields('SubLink', { subLinkType: S, subLinkId: S, testexpr: W, operName: S, subselect: W, location: S }, b, scope, f);
  if (b.operName !== undefined) operatorName(b.operName, f);
};

const sortBy: Handler = (b, scope, f) => {
  fields('SortBy', { node: W, sortby_dir: S, sortby_nulls: S, useOp: S, location: S }, b, scope, f);
  if (b.useOp !== undefined) operatorName(b.useOp, f);
};

const columnRef: Handler = (b, scope, f) => {
  fields('ColumnRef', { fields: S, location: S }, b, scope, f);
  const parts = (b.fields ?? []) as Array<{ String?: { sval?: string }; A_Star?: unknown }>;
  for (const [i, p] of parts.entries()) {
    if (p.A_Star !== undefined) continue;
    const name = p.String?.sval;
    if (typeof name !== 'string') refuse('a column reference');
    if (i > 0) f.attributes.add(name);
  }
};

const aIndirection: Handler = (b, scope, f) => {
  fields('A_Indirection', { arg: W, indirection: W }, b, scope, f);
  for (const p of (b.indirection ?? []) as Array<{ String?: { sval?: string } }>) if (typeof p.String?.sval === 'string') f.attributes.add(p.String.sval);
};

const typeCast: Handler = (b, scope, f) => {
  fields('TypeCast', { arg: W, typeName: S, location: S }, b, scope, f);
  typeName(b.typeName, scope, f);
};

const rangeTableSample: Handler = (b, scope, f) => {
  fields('RangeTableSample', { relation: W, method: S, args: W, repeatable: W, location: S }, b, scope, f);
  const method = nameList(b.method, 'a TABLESAMPLE method');
  if (method.length !== 1 || !['system', 'bernoulli'].includes(method[0]!)) refuse(`the TABLESAMPLE method ${method.join('.')}`);
};

const xmlSerialize: Handler = (b, scope, f) => {
  fields('XmlSerialize', { xmloption: S, expr: W, typeName: S, indent: S, location: S }, b, scope, f);
  typeName(b.typeName, scope, f);
};

const scalar: Handler = () => {};

const HANDLERS: Record<string, Handler> = {
  ...Object.fromEntries(Object.entries(PASS_THROUGH).map(([type, spec]) => [type, simple(type, spec)])),
  SelectStmt: selectStmt,
  InsertStmt: insertStmt,
  UpdateStmt: updateStmt,
  DeleteStmt: deleteStmt,
  MergeStmt: mergeStmt,
  RangeVar: rangeVar,
  RangeFunction: rangeFunction,
  RangeTableSample: rangeTableSample,
  ColumnRef: columnRef,
  A_Expr: aExpr,
  A_Indirection: aIndirection,
  A_Star: scalar,
  SubLink: subLink,
  SortBy: sortBy,
  FuncCall: funcCall,
  TypeCast: typeCast,
  ColumnDef: columnDef,
  XmlSerialize: xmlSerialize,
};

/** Walks a wrapped node (`{ SelectStmt: {...} }`) or a list of them. */
export function visit(node: unknown, scope: Scope | undefined, f: TreeFacts): void {
  if (node === undefined || node === null) return;
  if (Array.isArray(node)) {
    for (const item of node) visit(item, scope, f);
    return;
  }
  if (typeof node !== 'object') return;
  const keys = Object.keys(node);
  if (keys.length === 0) return;
  if (keys.length !== 1) refuse('a malformed parse tree node');
  const type = keys[0]!;
  const handler = HANDLERS[type];
  if (!handler) refuse(describeNode(type));
  const body = (node as Body)[type];
  handler((body ?? {}) as Body, scope, f);
}

/** The statement kinds the strict walker accepts at the top (and EXPLAIN around them). */
export const DML_NODES: ReadonlySet<string> = new Set(['SelectStmt', 'InsertStmt', 'UpdateStmt', 'DeleteStmt', 'MergeStmt']);

/** True when a WHERE can restrict rows one by one: it references at least one column. `WHERE true` does not. */
export function referencesColumn(node: unknown): boolean {
  if (Array.isArray(node)) return node.some(referencesColumn);
  if (!node || typeof node !== 'object') return false;
  for (const [key, value] of Object.entries(node)) {
    if (key === 'ColumnRef') return true;
    if (referencesColumn(value)) return true;
  }
  return false;
}

/** INSERT … VALUES adds the rows it lists; INSERT … SELECT is bounded only by a LIMIT. */
function insertIsBounded(body: Body): boolean {
  const select = (body.selectStmt as { SelectStmt?: Body } | undefined)?.SelectStmt;
  if (!select) return true; // DEFAULT VALUES
  if (Array.isArray(select.valuesLists)) return true;
  return select.limitCount !== undefined;
}
