/**
 * The statements the strict walker accepts at the top or nested (SELECT, INSERT, UPDATE, DELETE,
 * MERGE) and their WITH clauses: each records its actions, its target as `<CLASS> <table>`, row locks,
 * and whether its writes are bounded to named rows. sql-walk.ts builds them with its field check and
 * visit, which walk everything below a statement.
 */
import { S, W, refuse, type Body, type Handler, type Rule, type Scope, type TreeFacts } from './sql-facts.ts';
import { qualifiedName } from './sql-names.ts';
import { declareTable } from './sql-resolve.ts';

/** What the statement handlers use of the walker (sql-walk.ts). */
export interface Walker {
  fields(type: string, spec: Record<string, Rule>, body: Body, scope: Scope | undefined, f: TreeFacts, own?: readonly string[]): void;
  visit(node: unknown, scope: Scope | undefined, f: TreeFacts): void;
}

const LOCKS: Record<string, string> = {
  LCS_FORUPDATE: 'FOR UPDATE',
  LCS_FORNOKEYUPDATE: 'FOR NO KEY UPDATE',
  LCS_FORSHARE: 'FOR SHARE',
  LCS_FORKEYSHARE: 'FOR KEY SHARE',
};

const MERGE_COMMANDS: Record<string, string | undefined> = { CMD_UPDATE: 'UPDATE', CMD_INSERT: 'INSERT', CMD_DELETE: 'DELETE', CMD_NOTHING: undefined };

/** The handlers of the statement nodes, walking what is below them with `walker`. */
export function statementHandlers({ fields, visit }: Walker): Record<'SelectStmt' | 'InsertStmt' | 'UpdateStmt' | 'DeleteStmt' | 'MergeStmt', Handler> {
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

  return { SelectStmt: selectStmt, InsertStmt: insertStmt, UpdateStmt: updateStmt, DeleteStmt: deleteStmt, MergeStmt: mergeStmt };
}

/**
 * True when a WHERE can restrict rows one by one: it references at least one column. `WHERE true` does
 * not, and neither does a sub-query's own WHERE: `EXISTS (SELECT 1 FROM patients p WHERE p.id = 1)` is
 * the same for every row. The left side of `x IN (SELECT …)` is the row's.
 */
function referencesColumn(node: unknown): boolean {
  if (Array.isArray(node)) return node.some(referencesColumn);
  if (!node || typeof node !== 'object') return false;
  for (const [key, value] of Object.entries(node)) {
    if (key === 'ColumnRef') return true;
    if (key === 'SubLink') {
      if (referencesColumn((value as { testexpr?: unknown }).testexpr)) return true;
      continue;
    }
    if (referencesColumn(value)) return true;
  }
  return false;
}

/** INSERT … VALUES adds the rows it lists; INSERT … SELECT is bounded only by a LIMIT. */
function insertIsBounded(body: Body): boolean {
  const select = (body.selectStmt as { SelectStmt?: Body } | undefined)?.SelectStmt;
  if (!select) return true; // DEFAULT VALUES
  if (Array.isArray(select.valuesLists)) return true;
  // A number written in the statement: LIMIT ALL and LIMIT NULL are no limit, a parameter or an
  // expression can be any number, and WITH TIES may take more rows than its count.
  const limit = select.limitCount as { A_Const?: { ival?: unknown; isnull?: boolean } } | undefined;
  return select.limitOption === 'LIMIT_OPTION_COUNT' && limit?.A_Const?.ival !== undefined && limit.A_Const.isnull !== true;
}
