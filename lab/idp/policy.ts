import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { z } from 'zod';

/**
 * The lab IdP's data-driven policy: which RAR entries (RFC 9396) a token exchange may turn into an
 * OBO, for which credential (`vault_role`) and whom. The rules live in a JSON file so the decision is
 * data, not code branches; this module only reads and applies them.
 */

const WhenSchema = z
  .object({
    type: z.string().min(1),
    actions_any: z.array(z.string()).optional(),
    actions_only: z.array(z.string()).optional(),
    privileges_any: z.array(z.string()).optional(),
    bounded: z.boolean().optional(),
  })
  .strict();

const RuleSchema = z.union([
  z.object({ when: WhenSchema, deny: z.string().min(1) }).strict(),
  z
    .object({
      when: WhenSchema,
      vault_role: z.string().min(1),
      target: z.enum(['vault', 'resource']),
      step_up: z.literal('push').optional(),
    })
    .strict(),
]);

const CAPABILITY = z.enum(['create', 'read', 'update', 'patch', 'delete', 'list', 'sudo']);

/** Vault Enterprise's RAR type (docs/ai/oauth-server/rar/type-specification): one Vault path, what may be done there. */
const PathAccessSchema = z
  .object({
    type: z.literal('vault:path_access'),
    path: z.string().min(1),
    capabilities: z.array(CAPABILITY).min(1),
    allowed_parameters: z.record(z.string(), z.array(z.unknown())).optional(),
    denied_parameters: z.record(z.string(), z.array(z.unknown())).optional(),
    required_parameters: z.array(z.string()).optional(),
  })
  .strict();

export const PolicySchema = z
  .object({
    $comment: z.string().optional(),
    version: z.literal(1),
    vault_audience: z.string().min(1),
    allowed_audiences: z.array(z.string().min(1)),
    allowed_resource_patterns: z.array(z.string().min(1)),
    rights: z.record(z.string(), z.array(z.string())),
    rules: z.array(RuleSchema).min(1),
    otherwise: z.string().min(1),
    /**
     * Clients that act as registered agents for Vault's native agent mode: only they may carry
     * `vault:path_access` entries. `act: "none"` issues their OBOs without `act`, as an IdP that does
     * not express delegation would (Microsoft Entra's on-behalf-of tokens carry none).
     */
    agents: z.record(z.string(), z.object({ act: z.enum(['client_id', 'none']).default('client_id') }).strict()).default({}),
    /** How long an OBO lives (default 60 s, the most Countersign accepts). */
    obo_ttl_s: z.number().int().positive().max(60).optional(),
    /** Per vault_role, the `vault:path_access` entries an agent's OBO may carry for it (exact entries). */
    vault_path_access: z.record(z.string(), z.array(PathAccessSchema)).default({}),
    /**
     * Whether an agent may ask for a lease revocation on its own (no call entry): `sys/leases/revoke`
     * narrowed to one exact lease id inside a revocation `vault_path_access` allows for a role the user
     * holds. A core restarted after dying mid-call uses it to revoke the lease the call left.
     */
    lease_revocation_alone: z.boolean().default(true),
  })
  .strict();
export type Policy = z.infer<typeof PolicySchema>;

export const DEFAULT_POLICY_FILE = new URL('./policy.json', import.meta.url).pathname;

export function loadPolicy(file: string = DEFAULT_POLICY_FILE): Policy {
  const parsed = PolicySchema.safeParse(JSON.parse(readFileSync(file, 'utf8')));
  if (!parsed.success) throw new Error(`lab IdP policy ${file} is invalid: ${z.prettifyError(parsed.error)}`);
  for (const pattern of parsed.data.allowed_resource_patterns) new RegExp(pattern);
  return parsed.data;
}

const digest = z.string().regex(/^sha256:[0-9a-f]{64}$/, 'must be sha256:<64 lowercase hex>');
const uri = z.string().refine((v) => URL.canParse(v), 'must be an absolute URI');

/** RAR type schemas (the shared contract); the provider's RAR feature rejects anything else. */
export const RAR_TYPES = {
  /**
   * `tables` is required and names every table the statement touches. It may be empty only for a
   * read-only statement that touches none (`SELECT now()`): a write always touches a table.
   */
  postgres: z
    .object({
      type: z.literal('postgres'),
      locations: z.array(uri).min(1),
      actions: z.array(z.string().regex(/^[A-Z][A-Z ]*$/, 'must be upper-case SQL command names')).min(1),
      identifier: z.string().min(1).optional(),
      tables: z.array(z.string().min(1)),
      /** Every function the statement calls, schema-qualified (`pg_catalog.lower`). */
      functions: z.array(z.string().min(1)).optional(),
      privileges: z.array(z.string().min(1)).optional(),
      bounded: z.boolean().optional(),
      statement_digest: digest.optional(),
    })
    .refine((d) => d.tables.length > 0 || d.actions.every((a) => a === 'SELECT'), {
      path: ['tables'],
      message: 'must name the tables a statement other than a plain SELECT touches',
    }),
  mcp_tool_call: z.object({
    type: z.literal('mcp_tool_call'),
    locations: z.array(uri).length(1),
    actions: z.array(z.string().min(1)).min(1),
    identifier: z.string().min(1),
    argument_digest: digest,
  }),
  api_key: z.object({
    type: z.literal('api_key'),
    locations: z.array(uri).length(1),
    actions: z.array(z.string().min(1)).min(1),
    identifier: z.string().min(1),
  }),
  'vault:path_access': PathAccessSchema,
} as const;

export const PATH_ACCESS = 'vault:path_access';

/**
 * Why the policy refuses these `vault:path_access` entries for this client and credential, or ''
 * when every one of them is among the entries it allows.
 */
export function pathAccessProblem(policy: Policy, clientId: string, vaultRole: string, entries: AuthorizationDetail[]): string {
  if (entries.length === 0) return '';
  if (!policy.agents[clientId]) return 'this client is not a registered agent, so it may not ask for vault:path_access';
  const allowed = (policy.vault_path_access[vaultRole] ?? []).map((e) => JSON.stringify(canonical(e)));
  const stray = entries.find((e) => !allowed.includes(JSON.stringify(canonical(e))));
  return stray ? `vault:path_access to ${String(stray.path)} (${String(stray.capabilities)}) is not allowed for ${vaultRole}` : '';
}

export type AuthorizationDetail = { type: string; [k: string]: unknown };

/**
 * The vault_role whose allowed lease revocation covers these entries, each of which names exactly one
 * lease (no glob) and nothing else; or why the policy refuses them as a revocation on its own.
 */
export function revocationRole(policy: Policy, clientId: string, entries: AuthorizationDetail[]): { vaultRole: string } | { problem: string } {
  if (!policy.lease_revocation_alone) return { problem: 'this policy does not issue tokens for a lease revocation on its own' };
  if (!policy.agents[clientId]) return { problem: 'this client is not a registered agent, so it may not ask for vault:path_access' };
  const leases: string[] = [];
  for (const e of entries) {
    const params = e.allowed_parameters as Record<string, unknown[]> | undefined;
    const ids = params?.['lease_id'];
    const exact =
      e.type === PATH_ACCESS &&
      e.path === 'sys/leases/revoke' &&
      JSON.stringify(e.capabilities) === '["update"]' &&
      Object.keys(e).every((k) => ['type', 'path', 'capabilities', 'allowed_parameters'].includes(k)) &&
      Object.keys(params ?? {}).every((k) => k === 'lease_id' || (k === 'sync' && (params!['sync'] ?? []).length === 0)) &&
      Array.isArray(ids) &&
      ids.length === 1 &&
      typeof ids[0] === 'string' &&
      !ids[0].includes('*');
    if (!exact) return { problem: 'vault:path_access entries come with the call they serve, or each revokes exactly one lease' };
    leases.push(ids![0] as string);
  }
  const covers = (role: string, lease: string): boolean =>
    (policy.vault_path_access[role] ?? []).some((a) => {
      if (a.path !== 'sys/leases/revoke' || !a.capabilities.includes('update')) return false;
      return (a.allowed_parameters?.['lease_id'] ?? []).some((g) => typeof g === 'string' && (g.endsWith('*') ? lease.startsWith(g.slice(0, -1)) : lease === g));
    });
  const role = Object.keys(policy.vault_path_access).find((r) => leases.every((l) => covers(r, l)));
  return role ? { vaultRole: role } : { problem: 'no role this policy knows may revoke that lease' };
}

export type Decision =
  | { outcome: 'deny'; description: string }
  | { outcome: 'allow' | 'step_up'; vaultRole: string; target: 'vault' | 'resource'; location?: string };

function matches(when: z.infer<typeof WhenSchema>, d: AuthorizationDetail): boolean {
  if (when.type !== d.type) return false;
  const actions = Array.isArray(d.actions) ? (d.actions as string[]) : [];
  const privileges = Array.isArray(d.privileges) ? (d.privileges as string[]) : [];
  if (when.actions_any && !actions.some((a) => when.actions_any!.includes(a))) return false;
  if (when.actions_only && !(actions.length > 0 && actions.every((a) => when.actions_only!.includes(a)))) return false;
  if (when.privileges_any && !privileges.some((p) => when.privileges_any!.includes(p))) return false;
  if (when.bounded !== undefined && (d.bounded === true) !== when.bounded) return false;
  return true;
}

/** Decides one RAR entry: the first matching rule wins; nothing matching is a tier-4 denial. */
export function decideDetail(policy: Policy, detail: AuthorizationDetail): Decision {
  for (const rule of policy.rules) {
    if (!matches(rule.when, detail)) continue;
    if ('deny' in rule) return { outcome: 'deny', description: rule.deny };
    const locations = Array.isArray(detail.locations) ? (detail.locations as string[]) : [];
    return {
      outcome: rule.step_up ? 'step_up' : 'allow',
      vaultRole: rule.vault_role,
      target: rule.target,
      ...(rule.target === 'resource' ? { location: locations[0] } : {}),
    };
  }
  return { outcome: 'deny', description: policy.otherwise };
}

export function userMayUse(policy: Policy, role: string, vaultRole: string): boolean {
  return (policy.rights[role] ?? []).includes(vaultRole);
}

export function targetAllowed(policy: Policy, t: { audience?: string; resource?: string }): boolean {
  if (t.audience !== undefined) return policy.allowed_audiences.includes(t.audience);
  if (t.resource !== undefined) return policy.allowed_resource_patterns.some((p) => new RegExp(p).test(t.resource!));
  return false;
}

function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((k) => [k, canonical((value as Record<string, unknown>)[k])]),
    );
  }
  return value;
}

/**
 * `sha256:<hex>` of the authorization details with object keys sorted (JSON, no whitespace): the
 * call digest a Verify-style push carries in its transaction data, so an approval names one call.
 */
export function authorizationDetailsDigest(details: unknown): string {
  return `sha256:${createHash('sha256').update(JSON.stringify(canonical(details))).digest('hex')}`;
}
