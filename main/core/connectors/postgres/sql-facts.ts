/**
 * What one walk of a PostgreSQL parse tree finds (every action, table, function, operator and change),
 * the shape every node handler has, and the one refusal the walker gives for what it does not know.
 */
import { AppError } from '../../../../common/errors.ts';

export type Body = Record<string, unknown>;

/** CTE names visible at a point of the tree, innermost first. */
export interface Scope {
  names: ReadonlySet<string>;
  up: Scope | undefined;
}

/** An unqualified table name as written and the qualified name it was declared as. */
export interface WrittenName {
  written: string;
  qualified: string;
}

/** Everything one walk finds. */
export interface TreeFacts {
  /** Qualified table name → first location. */
  tables: Map<string, number>;
  /** Tables written without a schema: the connector proves each resolves to the declared one. */
  unqualifiedTables: Map<string, WrittenName>;
  /** Qualified function names. */
  functions: Set<string>;
  /** Function names written without a schema (resolved to pg_catalog's; the connector proves no look-alike is on the path). */
  unqualifiedFunctions: Set<string>;
  /** Operator symbols written without a schema (pg_catalog's; proven like functions). */
  operators: Set<string>;
  /** Names after a dot in a column reference (`t.x`): PostgreSQL reads `t.f` as `f(t)` when t has no column f. */
  attributes: Set<string>;
  actions: Set<string>;
  /** `<CLASS> <table>` for every change and row lock (`UPDATE public.notes`). */
  changes: Set<string>;
  unboundedWrites: number;
  upsert: boolean;
  selectInto: boolean;
  /** Tables seen in FROM items being walked, one list per enclosing SELECT (for locking clauses). */
  fromStack: string[][];
}

export function newFacts(): TreeFacts {
  return {
    tables: new Map(),
    unqualifiedTables: new Map(),
    functions: new Set(),
    unqualifiedFunctions: new Set(),
    operators: new Set(),
    attributes: new Set(),
    actions: new Set(),
    changes: new Set(),
    unboundedWrites: 0,
    upsert: false,
    selectInto: false,
    fromStack: [],
  };
}

export function refuse(what: string): never {
  throw new AppError(
    'SQL_UNCLASSIFIABLE',
    `The statement uses ${what}, which Countersign does not classify; it is refused so that nothing runs that its description leaves out. Rewrite it without that construct.`,
  );
}

export type Handler = (body: Body, scope: Scope | undefined, f: TreeFacts) => void;
/** `w`: a wrapped node or list of them, walked. `s`: a scalar, enum or list of names, skipped. */
export type Rule = 'w' | 's';

export const S = 's' as const;
export const W = 'w' as const;
