/**
 * The walker's whitelist, as data: the node types it passes through (each field either walked, W, or
 * skipped as a scalar, enum or list of names, S; any other field is refused), and the words a refusal
 * uses for node types it does not classify. Node types with effects or names of their own have
 * handlers in sql-walk.ts.
 */
import { S, W, type Rule } from './sql-facts.ts';

/** Node types with nothing to record of their own: only their fields are checked and walked. */
export const PASS_THROUGH: Readonly<Record<string, Record<string, Rule>>> = {
  RangeSubselect: { lateral: S, subquery: W, alias: S },
  JoinExpr: {
    jointype: S,
    isNatural: S,
    larg: W,
    rarg: W,
    usingClause: S,
    join_using_alias: S,
    quals: W,
    alias: S,
    rtindex: S,
  },
  ResTarget: { name: S, indirection: W, val: W, location: S },
  MultiAssignRef: { source: W, colno: S, ncolumns: S },
  ParamRef: { number: S, location: S },
  A_Const: { ival: S, fval: S, sval: S, boolval: S, bsval: S, isnull: S, location: S },
  A_ArrayExpr: { elements: W, location: S, list_start: S, list_end: S },
  A_Indices: { is_slice: S, lidx: W, uidx: W },
  BoolExpr: { boolop: S, args: W, location: S },
  NullTest: { arg: W, nulltesttype: S, argisrow: S, location: S },
  BooleanTest: { arg: W, booltesttype: S, location: S },
  CaseExpr: { arg: W, args: W, defresult: W, location: S },
  CaseWhen: { expr: W, result: W, location: S },
  CoalesceExpr: { args: W, location: S },
  MinMaxExpr: { op: S, args: W, location: S },
  RowExpr: { args: W, row_format: S, colnames: S, location: S },
  SQLValueFunction: { op: S, typmod: S, location: S },
  CollateClause: { arg: W, collname: S, location: S },
  GroupingSet: { kind: S, content: W, location: S },
  GroupingFunc: { args: W, location: S },
  SetToDefault: { location: S },
  NamedArgExpr: { arg: W, name: S, argnumber: S, location: S },
  IndexElem: { name: S, expr: W, indexcolname: S, collation: S, opclass: S, ordering: S, nulls_ordering: S },
  XmlExpr: { op: S, name: S, named_args: W, arg_names: S, args: W, xmloption: S, indent: S, type: S, typmod: S, location: S },
  List: { items: W },
  String: { sval: S },
  Integer: { ival: S },
  Float: { fval: S },
  Boolean: { boolval: S },
  BitString: { bsval: S },
  WindowDef: {
  name: S,
  refname: S,
  partitionClause: W,
  orderClause: W,
  frameOptions: S,
  startOffset: W,
  endOffset: W,
  location: S,
},
};

const NODE_WORDS: Record<string, string> = {
  CurrentOfExpr: 'WHERE CURRENT OF (a cursor)',
  RangeTableFunc: 'XMLTABLE',
  JsonTable: 'JSON_TABLE',
  JsonObjectConstructor: 'JSON_OBJECT',
  JsonArrayConstructor: 'JSON_ARRAY',
  JsonFuncExpr: 'a SQL/JSON query function',
  JsonIsPredicate: 'IS JSON',
};

export function describeNode(type: string): string {
  return (Object.hasOwn(NODE_WORDS, type) ? NODE_WORDS[type] : undefined) ?? `a ${type} node`;
}
