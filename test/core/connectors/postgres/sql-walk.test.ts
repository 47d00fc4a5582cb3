/**
 * The walker's tables are looked up by the parse tree's own keys; a key that names an
 * Object.prototype member (a node `constructor`, a field `toString`) is unknown and refused, never
 * resolved to an inherited function. libpg-query's grammar does not produce such keys today: this
 * holds the walker to default deny if it ever does.
 */
import { describe, expect, it } from 'vitest';
import { AppError } from '../../../../common/errors.ts';
import { newFacts } from '../../../../main/core/connectors/postgres/sql-facts.ts';
import { visit } from '../../../../main/core/connectors/postgres/sql-walk.ts';

function refusal(tree: unknown): string {
  try {
    visit(tree, undefined, newFacts());
  } catch (error) {
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).code).toBe('SQL_UNCLASSIFIABLE');
    return (error as AppError).message;
  }
  throw new Error('the walker accepted the tree');
}

describe('the SQL walker with keys named like Object.prototype members', () => {
  it.each(['constructor', 'toString', '__proto__', 'hasOwnProperty', 'valueOf'])('refuses a node called %s', (type) => {
    expect(refusal(JSON.parse(`{"${type}": {}}`))).toContain(type);
  });

  it.each(['constructor', 'toString', 'hasOwnProperty'])('refuses a field called %s inside a known node', (field) => {
    expect(refusal({ A_Const: JSON.parse(`{"${field}": 1}`) })).toContain(`A_Const.${field}`);
  });
});
