import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuditRecordInput } from '../../../common/audit-record.ts';
import type { SecretStore } from '../../../main/core/ports.ts';

/**
 * A SecretStore of kind `memory`: the port's own fallback when no keychain is usable, and what these
 * tests give the store (the keychain-backed implementation is tested with the auth code).
 */
export function memorySecretStore(): SecretStore & { entries: Map<string, string> } {
  const entries = new Map<string, string>();
  return {
    kind: 'memory',
    entries,
    get: async (k) => entries.get(k) ?? null,
    set: async (k, v) => void entries.set(k, v),
    delete: async (k) => void entries.delete(k),
  };
}

export function tempDir(prefix = 'cs-audit-'): { path: string; [Symbol.dispose](): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, [Symbol.dispose]: () => rmSync(path, { recursive: true, force: true }) };
}

const TOOLS = ['query', 'update_appointment', 'list_tables', 'delete_patient', 'search_docs'];
const OUTCOME_CYCLE = ['success', 'success', 'success', 'denied', 'success', 'error', 'success', 'cancelled'] as const;

/** A realistic tool-call record; `i` varies tool, user, outcome and tier deterministically. */
export function toolCall(i: number, extra: Partial<AuditRecordInput> = {}): AuditRecordInput {
  const tool = TOOLS[i % TOOLS.length]!;
  return {
    kind: 'tool_call',
    outcome: OUTCOME_CYCLE[i % OUTCOME_CYCLE.length]!,
    user: { sub: `user-${i % 7}`, name: `User ${i % 7}`, email: `user${i % 7}@clinic.example` },
    client: { name: 'claude-ai', version: '0.1', pid: 4242 },
    tool,
    tier: ((i % 4) + 1) as 1 | 2 | 3 | 4,
    target: 'postgres://lab/clinic',
    authorization_details: [{ type: 'postgres', actions: ['select'], locations: ['clinic.appointments'] }],
    args: { sql: `SELECT * FROM appointments WHERE id = ${i}`, mrn: `MRN-${100000 + i}` },
    hops: [
      { name: 'classify', outcome: 'ok', ms: 0.4 },
      { name: 'exchange', outcome: 'ok', ms: 5.1 },
      { name: 'vault_login', outcome: 'ok', ms: 2.3 },
      { name: 'execute', outcome: 'ok', ms: 3.9 },
      { name: 'revoke', outcome: 'ok', ms: 1.2 },
    ],
    keys: { mcp_request_id: i, obo_jti: `jti-${i}`, vault_request_id: `vreq-${i}`, lease_id: `database/creds/clinic-read/L${i}`, db_role: `v-jwt-clinic-${i}` },
    summary: `${tool} #${i}`,
    duration_ms: 13,
    ...extra,
  };
}
