/**
 * Walks every node of a PostgreSQL parse tree (libpg-query's JSON) and collects what the statement
 * will do (sql-facts.ts): every action, every table (names resolved as PostgreSQL resolves them,
 * sql-resolve.ts), every function, operator and type.
 *
 * A whitelist, not a blacklist: each node type and each field of it that the walker understands is
 * listed, here, in sql-statements.ts or in sql-nodes.ts; any other node type, or any field the list
 * does not know (a newer grammar's addition), is refused with SQL_UNCLASSIFIABLE rather than skipped.
 * Written by hand: no library classifies a PostgreSQL tree by the effects of its nodes.
 */
import { BUILTIN_TYPES } from './sql-functions.ts';
import { CATALOG_SCHEMA } from './sql-names.ts';
import { S, W, refuse, type Body, type Handler, type Rule, type Scope, type TreeFacts } from './sql-facts.ts';
import { exprOperators, fieldNames, functionName, nameList, operatorName, rangeVar } from './sql-resolve.ts';
import { PASS_THROUGH, describeNode } from './sql-nodes.ts';
import { statementHandlers } from './sql-statements.ts';

// ---- field rules ---------------------------------------------------------------------------------

function fields(type: string, spec: Record<string, Rule>, body: Body, scope: Scope | undefined, f: TreeFacts, own: readonly string[] = []): void {
  for (const key of Object.keys(body)) {
    if (own.includes(key)) continue;
    // Own keys only: a field named like an Object.prototype member is unknown, not a rule.
    const rule = Object.hasOwn(spec, key) ? spec[key] : undefined;
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
  exprOperators(b, f);
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
  fieldNames((b.indirection ?? []) as Array<{ String?: { sval?: unknown } }>, f);
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
  ...statementHandlers({ fields, visit }),
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
  const handler = Object.hasOwn(HANDLERS, type) ? HANDLERS[type] : undefined;
  if (!handler) refuse(describeNode(type));
  const body = (node as Body)[type];
  handler((body ?? {}) as Body, scope, f);
}

/** The statement kinds the strict walker accepts at the top (and EXPLAIN around them). */
export const DML_NODES: ReadonlySet<string> = new Set(['SelectStmt', 'InsertStmt', 'UpdateStmt', 'DeleteStmt', 'MergeStmt']);
