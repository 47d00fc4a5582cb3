/**
 * Vault Enterprise's native agent mode (2.0.3+, HCP Vault Dedicated; STANDARDS.md §8): the OBO itself
 * is the Vault token. Vault validates it per request against a resource server profile, resolves the
 * user (`sub`) and Countersign (`act.sub`, a registered agent), caps the user's ACL by Countersign's
 * ceiling policies and narrows it to the OBO's `vault:path_access` entries. So the exchange asks for
 * exactly the Vault paths this call needs, next to the call's own entry: no login, no Vault token.
 */
import type { AuthorizationDetail, CredentialPlan } from '../connectors/types.ts';

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
