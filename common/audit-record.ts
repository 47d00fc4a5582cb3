import { z } from 'zod';

/**
 * The audit record: one per tool call (every hop with its outcome and duration, and the join keys that
 * connect it to the IdP's, Vault's and the database's own logs), plus records for sign-in, sign-out,
 * step-up and approval decisions. Redacted before it is written: no token, secret or password ever
 * appears in one.
 */
export const HOP_NAMES = [
  'validate',
  'classify',
  'approval',
  'exchange',
  'step_up',
  'vault_login',
  'vault_creds',
  'execute',
  'revoke',
  'revoke_check',
] as const;
export const HopSchema = z.object({
  name: z.enum(HOP_NAMES),
  outcome: z.enum(['ok', 'denied', 'error', 'skipped', 'cancelled', 'timeout', 'cached']),
  ms: z.number().nonnegative(),
  code: z.string().optional(),
  detail: z.string().max(2000).optional(),
});
export type Hop = z.infer<typeof HopSchema>;

export const RECORD_KINDS = ['tool_call', 'sign_in', 'sign_out', 'step_up', 'approval', 'system'] as const;
export const OUTCOMES = ['success', 'denied', 'error', 'cancelled', 'timeout', 'aborted', 'info'] as const;

export const JoinKeysSchema = z
  .object({
    mcp_request_id: z.union([z.string(), z.number()]).optional(),
    mcp_session_id: z.string().optional(),
    obo_jti: z.string().optional(),
    vault_request_id: z.string().optional(),
    vault_accessor: z.string().optional(),
    lease_id: z.string().optional(),
    db_role: z.string().optional(),
    upstream_request_id: z.string().optional(),
  })
  .strict();
export type JoinKeys = z.infer<typeof JoinKeysSchema>;

export const AuditRecordInputSchema = z.object({
  kind: z.enum(RECORD_KINDS),
  outcome: z.enum(OUTCOMES),
  user: z.object({ sub: z.string(), name: z.string().optional(), email: z.string().optional() }).nullable(),
  /** The MCP client as it describes itself (`clientInfo`, self-asserted) and as the OS identifies it. */
  client: z
    .object({
      name: z.string().optional(),
      version: z.string().optional(),
      pid: z.number().optional(),
      uid: z.number().optional(),
    })
    .optional(),
  tool: z.string().optional(),
  tier: z.union([z.literal(1), z.literal(2), z.literal(3), z.literal(4)]).optional(),
  target: z.string().optional(),
  authorization_details: z.array(z.record(z.string(), z.unknown())).optional(),
  args: z.record(z.string(), z.unknown()).optional(),
  hops: z.array(HopSchema).default([]),
  keys: JoinKeysSchema.default({}),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
  summary: z.string().max(500).optional(),
  /**
   * The delegation profile the identity provider decided under (`idp.delegation`): `rar`, the call's
   * authorization details; `scopes`, one scope per credential, the RAR only recorded here.
   */
  delegation: z.enum(['rar', 'scopes']).optional(),
  /** Set on every record written while the app runs against the local lab. */
  demo: z.boolean().optional(),
  duration_ms: z.number().nonnegative().optional(),
});
export type AuditRecordInput = z.input<typeof AuditRecordInputSchema>;

/** A stored record: the input plus its place in the hash chain. */
export const AuditRecordSchema = AuditRecordInputSchema.extend({
  seq: z.number().int().positive(),
  at: z.string(),
  prev_hash: z.string(),
  hash: z.string(),
  /** Where redaction masked something at write (`/args/note: jwt`), never what it masked. Part of the hashed record. */
  redacted: z.array(z.string()).optional(),
});
export type AuditRecord = z.infer<typeof AuditRecordSchema>;
