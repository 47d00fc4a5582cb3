/**
 * Name resolution for the walker, as PostgreSQL resolves names: a CTE name hides a table only inside its
 * WITH's scope and never as a write target; an unqualified pg_* relation is the catalog's; unqualified
 * functions and operators are pg_catalog's (the connector proves no look-alike is on the path).
 */
import { CATALOG_SCHEMA, TABLE_SCHEMA, assertNameable, qualifiedName } from './sql-names.ts';
import { refuse, type Body, type Handler, type Scope, type TreeFacts } from './sql-facts.ts';

function inScope(scope: Scope | undefined, name: string): boolean {
  for (let s = scope; s; s = s.up) if (s.names.has(name)) return true;
  return false;
}

/** Declares a real relation (FROM item or write target) and returns its qualified name. */
export function declareTable(rv: Body, f: TreeFacts): string {
  for (const key of Object.keys(rv)) {
    if (!['relname', 'schemaname', 'inh', 'relpersistence', 'alias', 'location'].includes(key)) refuse(`a table reference with ${key}`);
  }
  const relname = rv.relname;
  if (typeof relname !== 'string') refuse('a table without a name');
  assertNameable(relname, 'table');
  const schema = typeof rv.schemaname === 'string' ? rv.schemaname : undefined;
  if (schema !== undefined) assertNameable(schema, 'schema');
  // Unqualified: PostgreSQL looks in pg_catalog before the pinned search_path; only catalog relations are named pg_*.
  const resolved = schema ?? (relname.startsWith('pg_') ? CATALOG_SCHEMA : TABLE_SCHEMA);
  const qualified = qualifiedName(resolved, relname);
  if (!f.tables.has(qualified)) f.tables.set(qualified, typeof rv.location === 'number' ? rv.location : 0);
  if (schema === undefined) f.unqualifiedTables.set(relname, { written: relname, qualified });
  for (const from of f.fromStack) from.push(qualified);
  return qualified;
}

/** A relation in FROM: a CTE when one of that name is in scope and no schema is given, else a table. */
export const rangeVar: Handler = (rv, scope, f) => {
  if (rv.catalogname !== undefined) refuse('a three-part table name (database.schema.table)');
  if (rv.schemaname === undefined && typeof rv.relname === 'string' && inScope(scope, rv.relname)) {
    for (const key of Object.keys(rv)) if (!['relname', 'inh', 'relpersistence', 'alias', 'location'].includes(key)) refuse(`a CTE reference with ${key}`);
    return;
  }
  declareTable(rv, f);
};

export function functionName(parts: unknown, f: TreeFacts): string {
  const names = nameList(parts, 'a function name');
  if (names.length === 1) {
    f.unqualifiedFunctions.add(names[0]!);
    return qualifiedName(CATALOG_SCHEMA, names[0]!);
  }
  if (names.length === 2) return qualifiedName(names[0]!, names[1]!);
  refuse('a function named across databases');
}

export function nameList(parts: unknown, what: string): string[] {
  if (!Array.isArray(parts)) refuse(what);
  return parts.map((p) => {
    const s = (p as { String?: { sval?: unknown } }).String?.sval;
    if (typeof s !== 'string') refuse(what);
    assertNameable(s, 'name');
    return s;
  });
}

/** The operators an A_Expr uses: BETWEEN's two comparisons, or its own (qualified at most by pg_catalog). */
export function exprOperators(e: { kind?: unknown; name?: unknown }, f: TreeFacts): void {
  if (String(e.kind).includes('BETWEEN')) {
    f.operators.add('>=');
    f.operators.add('<=');
  } else operatorName(e.name, f);
}

/** Names written as fields (`x.f`, `(x).f`): a column, or a call of f when x has no column f (preflight.ts). */
export function fieldNames(parts: ReadonlyArray<{ String?: { sval?: unknown } }>, f: TreeFacts): void {
  for (const p of parts) if (typeof p.String?.sval === 'string') f.attributes.add(p.String.sval);
}

export function operatorName(parts: unknown, f: TreeFacts): void {
  if (!Array.isArray(parts)) refuse('an operator');
  const names = parts.map((p) => (p as { String?: { sval?: unknown } }).String?.sval);
  if (!names.every((n): n is string => typeof n === 'string')) refuse('an operator');
  if (names.length === 2 && names[0] !== CATALOG_SCHEMA) refuse(`an operator from schema ${names[0]}`);
  if (names.length > 2 || names.length === 0) refuse('an operator');
  f.operators.add(names[names.length - 1]!);
}
