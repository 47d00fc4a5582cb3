/**
 * A long write for the approval surfaces' tests: a ~20 KB statement (a comment carrying markup and line
 * breaks) with 100 bound values, one of them long, planned by the real PostgreSQL planner.
 */
import { readFileSync } from 'node:fs';
import { planPostgresCall } from '../../../main/core/connectors/postgres/plan.ts';
import { parsePolicy, type PostgresPolicy } from '../../../main/core/policy/policy.ts';

const POLICY = parsePolicy(readFileSync(new URL('../../../main/core/policy/demo-clinic.policy.jsonc', import.meta.url), 'utf8')).postgres as PostgresPolicy;

export const MARKUP = '<img src=x onerror="window.pwned=1"><b>bold</b></pre><script>window.pwned=2</script>';

const comment = Array.from({ length: 210 }, (_, i) => `line ${i}: ${'lorem ipsum '.repeat(7)}${i % 50 === 0 ? MARKUP : ''}`).join('\n');
export const LONG_SQL = `UPDATE appointments SET reason = $1 /* ${comment} */ WHERE id IN (${Array.from({ length: 99 }, (_, i) => `$${i + 2}`).join(', ')})`;
export const LONG_PARAMS: Array<string | number> = [`${MARKUP} ${'value '.repeat(500)}END-OF-FIRST-VALUE`, ...Array.from({ length: 99 }, (_, i) => 1000 + i)];

export async function longPlan() {
  return (await planPostgresCall(POLICY, 'execute', { sql: LONG_SQL, params: LONG_PARAMS })).plan;
}
