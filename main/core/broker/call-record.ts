/**
 * The one audit record of a call (`tool_call`) or of a credential minted outside any call (`system`,
 * an upstream's listing): every hop, the join keys, the error as Claude is told it (already scrubbed of
 * the call's secrets, since the answer reuses it) and hop details (masked before they are cut to length,
so a cut cannot leave part of a secret). The record goes to the audit store with the trace's
 * secrets, and the store masks them wherever else they appear (docs/audit.md "Redaction at write").
 */
import type { AuditRecordInput } from '../../../common/audit-record.ts';
import type { AppError } from '../../../common/errors.ts';
import type { CallPlan } from '../connectors/types.ts';
import type { UserIdentity } from '../ports.ts';
import { outcomeOf, type CallTrace } from './call-trace.ts';

export interface RecordFacts {
  kind: 'tool_call' | 'system';
  trace: CallTrace;
  user: UserIdentity | null;
  tool: string;
  /** Absent when the call ended before it was classified. */
  plan?: CallPlan;
  /** Who asked, and with what (tool calls only). */
  client?: NonNullable<AuditRecordInput['client']>;
  args?: Record<string, unknown>;
  failure?: AppError;
  /** One line for the timeline, given the outcome. */
  summary(outcome: AuditRecordInput['outcome']): string;
  delegation: NonNullable<AuditRecordInput['delegation']>;
  demo?: boolean;
  durationMs: number;
}

/** The record, and the error as it may leave the call (scrubbed), which the answer reuses. */
export function auditRecord(f: RecordFacts): {
  record: AuditRecordInput;
  error?: { code: string; message: string };
} {
  const outcome = outcomeOf(f.failure);
  const error = f.failure ? { code: f.failure.code, message: f.trace.scrub(f.failure.message) } : undefined;
  const { user, plan } = f;
  const record: AuditRecordInput = {
    kind: f.kind,
    outcome,
    user: user
      ? {
          sub: user.sub,
          ...(user.name ? { name: user.name } : {}),
          ...(user.email ? { email: user.email } : {}),
        }
      : null,
    ...(f.client ? { client: f.client } : {}),
    tool: f.tool,
    ...(plan
      ? { tier: plan.tier, target: plan.target, authorization_details: plan.authorizationDetails }
      : {}),
    ...(f.args ? { args: f.args } : {}),
    hops: f.trace.scrubbedHops(),
    keys: f.trace.keys,
    ...(error ? { error } : {}),
    delegation: f.delegation,
    summary: f.summary(outcome).slice(0, 500),
    ...(f.demo ? { demo: true } : {}),
    duration_ms: f.durationMs,
  };
  return { record, ...(error ? { error } : {}) };
}
