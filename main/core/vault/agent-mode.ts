/**
 * Vault Enterprise's native agent mode (2.0.3+, HCP Vault Dedicated; Vault's "AI agents" docs and its oauth-resource-server and agent-registry API docs): the OBO itself
 * is the Vault token. Vault validates it per request against a resource server profile, resolves the
 * user (`sub`) and Countersign (`act.sub`, a registered agent), caps the user's ACL by Countersign's
 * ceiling policies and narrows it to the OBO's `vault:path_access` entries. So the exchange asks for
 * exactly the Vault paths this call needs, next to the call's own entry: no login, no Vault token.
 */
import { performance } from 'node:perf_hooks';
import { AppError } from '../../../common/errors.ts';
import type { Hop } from '../../../common/audit-record.ts';
import type { AuthorizationDetail, CredentialPlan } from '../connectors/types.ts';
import type { Obo, TokenExchanger } from '../idp/token-exchange.ts';
import type { TokenSource, UserIdentity } from '../ports.ts';
import type { VaultClient } from './client.ts';

/** `jwt-login`: the OBO logs in to a JWT auth role (Vault Community, OpenBao). `agent`: the OBO is the token. */
export const VAULT_MODES = ['jwt-login', 'agent'] as const;
export type VaultMode = (typeof VAULT_MODES)[number];

export const PATH_ACCESS = 'vault:path_access';

/**
 * The `vault:path_access` entries a credential plan needs: read the role's creds (or the secret), and
 * for a lease, revoke it afterwards. Vault's `sys/leases/revoke` takes any lease id, so the entry's
 * `allowed_parameters` limit `lease_id` to this role's leases (a trailing `*` globs, as in ACL
 * parameter constraints; Vault's RAR pages do not say whether RAR values glob, see docs/vault.md).
 */
export function pathAccessFor(c: CredentialPlan): AuthorizationDetail[] {
  if (c.kind === 'vault-database') {
    const creds = `${c.dbMount}/creds/${c.dbRole}`;
    return [
      { type: PATH_ACCESS, path: creds, capabilities: ['read'] },
      { type: PATH_ACCESS, path: 'sys/leases/revoke', capabilities: ['update'], allowed_parameters: { lease_id: [`${creds}/*`], sync: [] } },
    ];
  }
  if (c.kind === 'vault-kv') return [{ type: PATH_ACCESS, path: `${c.kvMount}/data/${c.path}`, capabilities: ['read'] }];
  return [];
}

/**
 * The one entry a revocation on its own asks for: `sys/leases/revoke` for exactly this lease (no glob),
 * so the OBO can revoke that lease and do nothing else, not even mint.
 */
export function leaseRevocationFor(leaseId: string): AuthorizationDetail[] {
  return [{ type: PATH_ACCESS, path: 'sys/leases/revoke', capabilities: ['update'], allowed_parameters: { lease_id: [leaseId], sync: [] } }];
}

/** What a restarted core needs to revoke, in agent mode, a lease a killed run left behind. */
export interface AgentLeaseRecovery {
  tokens: TokenSource;
  idp: TokenExchanger;
  vault: Pick<VaultClient, 'revokeLease'>;
  /** The audience Vault's resource server profile accepts (the database policy's `audience`). */
  audience: string;
  timeoutMs?: number;
}

/**
 * Agent mode keeps no Vault token, so a run that dies mid-call leaves nothing sealed in the journal to
 * revoke with: the OBO it used has expired or will within 60 s. The restarted core asks the IdP, with
 * the person's own token, for a fresh OBO whose only entry is `sys/leases/revoke` limited to that one
 * lease id, and revokes the lease with it. The person must still be the one signed in (the lease was
 * minted for them); otherwise, or when the IdP or Vault refuses, the hops say so and the lease expires
 * at its TTL. Returns the hops for the aborted call's record and what became of the lease, said for it.
 */
export async function revokeLeaseOnRestart(r: AgentLeaseRecovery, user: UserIdentity | null, leaseId: string): Promise<{ hops: Hop[]; fate: string }> {
  const signal = AbortSignal.timeout(r.timeoutMs ?? 10_000);
  const t0 = performance.now();
  const ms = (): number => Math.round(performance.now() - t0);
  const now = r.tokens.user();
  if (!now || !user || now.sub !== user.sub) {
    const why = !now ? 'no one is signed in to ask the identity provider for a revocation token' : 'another person is signed in now';
    return {
      hops: [{ name: 'revoke', outcome: 'error', ms: 0, code: 'NOT_SIGNED_IN', detail: `mode=agent lease not revoked on restart: ${why}; it expires at its Vault TTL` }],
      fate: `its lease could not be revoked on restart (${why}) and expires within its Vault TTL`,
    };
  }
  let obo: Obo;
  try {
    obo = await r.idp.exchange({
      subjectToken: await r.tokens.getAccessToken(signal),
      authorizationDetails: leaseRevocationFor(leaseId),
      audience: r.audience,
      dpopKeyPair: r.tokens.dpopKeyPair(),
      expectedSub: user.sub,
      approvalMessage: 'Countersign: revoke a credential left by a call that was interrupted',
      signal,
    });
  } catch (error) {
    // Our own deadline reads as a cancellation to the exchanger: it is the IdP not answering in time.
    const code = signal.aborted ? 'IDP_UNAVAILABLE' : AppError.from(error).code;
    return {
      hops: [
        { name: 'exchange', outcome: 'error', ms: ms(), code, detail: 'revocation only: the identity provider gave no token' },
        { name: 'revoke', outcome: 'error', ms: 0, code, detail: 'mode=agent lease not revoked on restart; it expires at its Vault TTL' },
      ],
      fate: `its lease could not be revoked on restart (the identity provider gave no revocation token: ${code}) and expires within its Vault TTL`,
    };
  }
  const exchange: Hop = { name: 'exchange', outcome: 'ok', ms: ms(), detail: `revocation only: sys/leases/revoke for this lease, jwt_unique_id=${obo.jti}` };
  const t1 = performance.now();
  try {
    const done = await r.vault.revokeLease(obo.token, leaseId, signal);
    const revoked = done === 'revoked';
    return {
      hops: [
        exchange,
        {
          name: 'revoke',
          outcome: 'ok',
          ms: Math.round(performance.now() - t1),
          detail: revoked ? 'mode=agent lease revoked on restart with a revocation-only OBO' : 'mode=agent Vault no longer holds the lease (expired or revoked before the stop)',
        },
      ],
      fate: revoked ? 'its lease was revoked on restart with a revocation-only OBO' : 'Vault no longer held its lease on restart (it had expired or been revoked)',
    };
  } catch (error) {
    const code = signal.aborted ? 'VAULT_UNAVAILABLE' : AppError.from(error).code;
    return {
      hops: [exchange, { name: 'revoke', outcome: 'error', ms: Math.round(performance.now() - t1), code, detail: 'mode=agent lease not revoked on restart; it expires at its Vault TTL' }],
      fate: `its lease could not be revoked on restart (Vault: ${code}) and expires within its Vault TTL`,
    };
  }
}
