/**
 * Regression: SQL that the earlier classifier (top-level kind plus a scan for RangeVar nodes) described
 * as less than it was. A CTE named like a table erased the table from the RAR even as a DELETE's
 * target; functions were not looked at, so a tier-1 read could run a query named in a string, advance a
 * sequence or take an advisory lock; an unknown node anywhere was skipped; names were unqualified.
 * Each is planned here as the connector plans it.
 */
import { describe, expect, it } from 'vitest';
import { AppError } from '../../common/errors.ts';
import { planPostgresCall } from '../../main/core/connectors/postgres/plan.ts';
import { DEMO_POLICY } from '../core/broker/lab.ts';

async function refusal(tool: string, sql: string): Promise<string | undefined> {
  try {
    await planPostgresCall(DEMO_POLICY, tool, { sql });
    return undefined;
  } catch (error) {
    return AppError.is(error) ? error.code : 'not-an-AppError';
  }
}

describe('writes that hid as reads or as nothing', () => {
  it('names the real target of a DELETE whose CTE shares its name', async () => {
    const { plan } = await planPostgresCall(DEMO_POLICY, 'execute', { sql: 'WITH notes AS (SELECT 1) DELETE FROM notes WHERE id = 1' });
    expect(plan.authorizationDetails[0]).toMatchObject({ actions: ['DELETE', 'SELECT'], tables: ['public.notes'] });
    expect(plan.approvalScope?.changes).toEqual(['DELETE public.notes']);
  });

  it('never runs a function that writes, locks or reads a table named in a string as a tier-1 read', async () => {
    for (const sql of ["SELECT query_to_xml('DELETE FROM notes RETURNING 1', true, false, '')", "SELECT nextval('notes_id_seq')", 'SELECT pg_advisory_lock(1)', "SELECT set_config('search_path', 'x', false)"]) {
      expect(await refusal('query', sql), sql).toBe('SQL_FUNCTION_NOT_ALLOWED');
    }
  });

  it('refuses a construct it does not know wherever it stands instead of skipping it', async () => {
    expect(await refusal('execute', "UPDATE notes SET body = 'x' WHERE CURRENT OF c")).toBe('SQL_UNCLASSIFIABLE');
    expect(await refusal('query', 'SELECT * FROM patients WHERE id IN (SELECT x FROM XMLTABLE(\'/a\' PASSING \'<a/>\' COLUMNS x int))')).toBe('SQL_UNCLASSIFIABLE');
  });
});
