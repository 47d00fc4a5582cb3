/**
 * What an approval prompt shows, built by the core from policy and the parsed call, never from text the
 * model wrote: every string here is already made safe to display (control and bidirectional characters
 * made visible). What will run is whole; the shells (native dialog, web card) lay it out, paged or scrolled.
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
  /** The exact arguments as canonical JSON, made visible, whole (never cut: shells page or scroll it). */
  argumentsText: string;
  /** sha256 of the exact bytes that will run and the RAR; the approval binds to it. */
  digest: string;
  /** For tier 2: what a yes covers ("UPDATE on appointments, ≤ 10 rows, for 30 minutes"). */
  scope?: string;
  requestedAt: string;
  expiresAt: string;
}

/**
 * What a person answers at a prompt (the native dialog, the web card): yes or no, nothing else. The
 * core turns an answer into the call's decision (main/core/approvals/decision.ts).
 */
export const APPROVAL_ANSWERS = ['approve', 'deny'] as const;
export type ApprovalAnswer = (typeof APPROVAL_ANSWERS)[number];

/** The key under which a SQL call's arguments list the values bound to $1, $2… in order. */
export const BOUND_VALUES_KEY = 'parameters ($1, $2… in order)';
