/**
 * What an approval prompt shows, built by the core from policy and the parsed call, never from text the
 * model wrote: every string here is already made safe to display (control and bidirectional characters
 * made visible, long values truncated with a count). Shells (native dialog, web card) only lay it out.
 */
export interface ApprovalView {
  id: string;
  tier: 2 | 3;
  tool: string;
  target: string;
  /** One line from policy: "Bounded UPDATE of appointments (at most 10 rows)". */
  summary: string;
  /** The RAR, one readable line per authorization detail. */
  authorization: string[];
  /** The exact arguments as canonical JSON, made visible and truncated. */
  argumentsText: string;
  /** sha256 of the exact bytes that will run and the RAR; the approval binds to it. */
  digest: string;
  /** For tier 2: what a yes covers ("UPDATE on appointments, ≤ 10 rows, for 30 minutes"). */
  scope?: string;
  requestedAt: string;
  expiresAt: string;
}

export type ApprovalDecision = 'approve' | 'deny';
