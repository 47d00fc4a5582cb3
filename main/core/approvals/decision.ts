/**
 * One vocabulary for a call's approval, from the prompt to the audit record. The person answers a
 * prompt with an `ApprovalAnswer` (common/approval-view.ts); the approval service turns that answer,
 * its clock and its cache into an `ApprovalDecision`; the broker acts on the decision and both records
 * (the approval's and the call's) are written from it. What a refused call tells the person is written
 * here once.
 */
import type { AuditRecordInput, Hop } from '../../../common/audit-record.ts';
import { AppError } from '../../../common/errors.ts';
import type { CallPlan } from '../connectors/types.ts';

/**
 * - `not_required`: tier 1, nobody is asked;
 * - `approved`: a person said yes at the prompt;
 * - `cached`: a tier-2 yes given earlier in this session covers the call;
 * - `idp`: nobody is asked locally; the identity provider asks the person during the exchange (a
 *   Verify-style push bound to the call's RAR) and the broker refuses the call unless the OBO proves it;
 * - `denied`, `timeout`, `cancelled`: the call is refused.
 */
export type ApprovalOutcome =
  'not_required' | 'approved' | 'cached' | 'idp' | 'denied' | 'timeout' | 'cancelled';

export interface ApprovalDecision {
  outcome: ApprovalOutcome;
  /** Joins the call's audit record to the approval's own record. */
  approvalId?: string;
  /** sha256 over the exact bytes, the RAR, the tool and the target: what the prompt bound the answer to. */
  digest?: string;
  /** How long the decision took (the person's time at the prompt). */
  ms?: number;
  /** Why the call is refused, for the person reading Claude's answer (denied, timeout, cancelled). */
  reason?: string;
}

type Described = Pick<CallPlan, 'tool' | 'target' | 'tier' | 'reason'>;

/** What Claude is told when an approval refuses a call. */
export const refusal = {
  denied: (p: Described) => `You denied ${p.tool} on ${p.target}.`,
  timedOut: (p: Described, timeoutMs?: number) =>
    timeoutMs === undefined
      ? `Nobody approved ${p.tool} in time, so it was not run.`
      : `Nobody approved ${p.tool} within ${Math.round(timeoutMs / 1000)} s, so it was not run.`,
  cancelled: () => 'The call was cancelled while it waited for approval.',
  noSurface: (p: Described) =>
    `This call is tier ${p.tier} (${p.reason}) and needs your approval, but no approval surface is configured, so it was refused.`,
  blocked: (p: Described) =>
    `Countersign's policy blocks this call (tier 4: ${p.reason}); it was not sent to your identity provider.`,
  pushDenied: (p: Described) =>
    `You denied ${p.tool} on ${p.target} (the approval your identity provider pushed to your phone).`,
  pushTimedOut: (p: Described) =>
    `Nobody approved ${p.tool} on your phone in time (your identity provider's push), so it was not run.`,
  pushNotProven: (p: Described, missing: string) =>
    `Your identity provider issued the token for ${p.tool} on ${p.target} ${missing}, but Countersign relies on it to ask you for tier-3 calls (approvals.tier3 is idp-when-offered), so the call was refused. Check the identity provider's step-up policy, or set approvals.tier3 to local.`,
};

/** Whether the call goes on to the exchange. */
export function lets(decision: ApprovalDecision): boolean {
  return (
    decision.outcome === 'approved' ||
    decision.outcome === 'cached' ||
    decision.outcome === 'idp' ||
    decision.outcome === 'not_required'
  );
}

/** The error a refusing decision ends the call with (its own reason, or the standard text). */
export function refusalError(decision: ApprovalDecision, plan: Described): AppError {
  switch (decision.outcome) {
    case 'timeout':
      return new AppError('APPROVAL_TIMEOUT', decision.reason ?? refusal.timedOut(plan));
    case 'cancelled':
      return new AppError('CANCELLED', decision.reason ?? refusal.cancelled());
    default:
      return new AppError('APPROVAL_DENIED', decision.reason ?? refusal.denied(plan));
  }
}

/** The approval hop's outcome in a record. */
export function hopOutcome(outcome: ApprovalOutcome): Hop['outcome'] {
  switch (outcome) {
    case 'cached':
    case 'denied':
    case 'timeout':
    case 'cancelled':
      return outcome;
    default:
      return 'ok';
  }
}

/** How the approval hop's detail names the way a call was approved. */
export function via(decision: ApprovalDecision): string {
  const how =
    decision.outcome === 'cached'
      ? 'via=cached'
      : decision.outcome === 'idp'
        ? 'via=idp-push'
        : 'via=local-prompt';
  return `${how}${decision.approvalId ? ` approval=${decision.approvalId}` : ''}`;
}

/** The outcome of the approval's own record. */
export function recordOutcome(outcome: ApprovalOutcome): AuditRecordInput['outcome'] {
  if (outcome === 'approved' || outcome === 'cached') return 'success';
  if (outcome === 'denied' || outcome === 'timeout') return outcome;
  return 'cancelled';
}
