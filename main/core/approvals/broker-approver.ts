/** Connects the approval service to the broker's Approver port. */
import { BOUND_VALUES_KEY } from '../../../common/approval-view.ts';
import { AppError } from '../../../common/errors.ts';
import type { Approver } from '../broker/approver.ts';
import type { ApprovalService } from './approval-service.ts';

export function approverFor(service: ApprovalService): Approver {
  return {
    async approve(plan, ctx, signal) {
      if (!ctx.user) throw new AppError('NOT_SIGNED_IN', 'Sign in to Countersign before Claude can use its tools.');
      return service.approve({
        plan,
        args: argsOf(plan),
        user: ctx.user,
        sessionId: ctx.sessionId,
        client: ctx.client,
        signal,
        progress: ctx.progress,
      });
    },
    settle: (approvalId, succeeded) => service.settle(approvalId, succeeded),
  };
}

/** The key under which the prompt lists a statement's bound values. */
export const PARAMETERS = BOUND_VALUES_KEY;

/**
 * The plan carries the exact bytes; the prompt shows them as the call's arguments. A PostgreSQL call
 * with parameters shows the values that will be bound, in placeholder order: the bytes, and so the
 * digest the approval binds to, hold the statement and its values together.
 */
export function argsOf(plan: { connector: string; bytes: string }): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(plan.bytes);
  } catch {
    parsed = undefined; // SQL text, not JSON
  }
  if (plan.connector === 'postgres') {
    const p = parsed as { sql?: unknown; params?: unknown } | undefined;
    if (p && typeof p === 'object' && typeof p.sql === 'string' && Array.isArray(p.params)) {
      return { statement: p.sql, [PARAMETERS]: p.params };
    }
    return { statement: plan.bytes };
  }
  if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as Record<string, unknown>;
  return { statement: plan.bytes };
}
