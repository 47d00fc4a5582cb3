/**
 * The approval port. The broker asks it for every tier-2/3 call; the real implementation (native
 * dialog, approval cache, IdP-carried approvals) lives in main/core/approvals. Approvals only ever add
 * friction: an approved call still needs the IdP's OBO, Vault's role binding and the database's grants.
 */
import type { UserIdentity } from '../ports.ts';
import type { CallPlan } from '../connectors/types.ts';
import { refusal, type ApprovalDecision } from '../approvals/decision.ts';

export interface ApprovalContext {
  requestId: string | number;
  sessionId: string;
  client: { name?: string; version?: string; pid?: number; uid?: number };
  user: UserIdentity | null;
  /** Sends `notifications/progress` to the MCP client ("waiting for your approval…"). */
  progress(message: string): void;
}

export interface Approver {
  approve(plan: CallPlan, ctx: ApprovalContext, signal: AbortSignal): Promise<ApprovalDecision>;
  /**
   * How the approved call ended. A tier-2 approval is kept for later calls only once a call it covered
   * succeeded: a call that failed, or whose writes were rolled back for the row ceiling, leaves none.
   */
  settle?(approvalId: string, succeeded: boolean): void;
}

/**
 * The default when no approval surface is configured: tier 1 needs no approval and passes; tier 2 and
 * 3 are refused because nobody can be asked. It never approves anything a person should see.
 */
export const tierOneOnlyApprover: Approver = {
  async approve(plan) {
    if (plan.tier === 1) return { outcome: 'not_required' };
    return { outcome: 'denied', reason: refusal.noSurface(plan) };
  },
};
