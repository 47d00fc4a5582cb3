/** Approvals as the UI and the shell see them: calls waiting for a person, and tier-2 approvals still in force. */
import { z } from 'zod';
import type { ApprovalView } from '../approval-view.ts';
import { Id, IsoTime } from './fields.ts';

/** One call waiting for a person's decision, described exactly as it will run. */
export const PendingApprovalSchema = z.object({
  id: Id,
  tool: z.string(),
  target: z.string(),
  tier: z.union([z.literal(2), z.literal(3)]),
  /** Why this tier ("bounded UPDATE of appointments"). */
  reason: z.string(),
  authorization_details: z.array(z.record(z.string(), z.unknown())),
  args: z.record(z.string(), z.unknown()),
  /** The exact bytes that will run (SQL text, canonical JSON of upstream arguments). */
  bytes: z.string(),
  /** SHA-256 of `bytes`, hex: the approval binds to it. */
  digest: z.string(),
  client: z.object({ name: z.string().optional(), version: z.string().optional(), pid: z.number().optional() }).optional(),
  requestedAt: IsoTime,
  expiresAt: IsoTime,
});
export type PendingApproval = z.infer<typeof PendingApprovalSchema>;

/** A tier-2 approval still covering writes of its class (docs/call-chain.md, "What each tier admits (SQL)"). */
export const CachedApprovalSchema = z.object({
  id: Id,
  tool: z.string(),
  target: z.string(),
  statementClass: z.string(),
  targets: z.array(z.string()),
  /** What it lets a call change, `<class> <table>` each. */
  changes: z.array(z.string()).optional(),
  rowCeiling: z.number().int().optional(),
  grantedAt: IsoTime,
  expiresAt: IsoTime,
  uses: z.number().int().nonnegative(),
});
export type CachedApproval = z.infer<typeof CachedApprovalSchema>;

export const ApprovalsSnapshotSchema = z.object({ pending: z.array(PendingApprovalSchema), cached: z.array(CachedApprovalSchema) });
export type ApprovalsSnapshot = z.infer<typeof ApprovalsSnapshotSchema>;

/** What an approval prompt shows (common/approval-view.ts), as the shell receives it from the core. */
export const ApprovalViewSchema = z.object({
  id: Id,
  tier: z.union([z.literal(2), z.literal(3)]),
  tool: z.string(),
  target: z.string(),
  summary: z.string(),
  authorization: z.array(z.string()),
  argumentsText: z.string(),
  digest: z.string().max(200),
  scope: z.string().optional(),
  requestedAt: IsoTime,
  expiresAt: IsoTime,
}) satisfies z.ZodType<ApprovalView>;
