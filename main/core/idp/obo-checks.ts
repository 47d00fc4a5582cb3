/**
 * What an OBO must say under each delegation profile (docs/identity-providers.md), checked after its
 * signature, issuer, audience, lifetime and jti: `rar` (the actor, one `vault_role`, authorization
 * details no wider than asked, RFC 9396 §7) or `scopes` (exactly the scope asked, the `vault_role` it
 * maps to, and this client as the actor). Anything else is OBO_INVALID with the reason.
 */
import type { JWTPayload } from 'jose';
import { canonicalJson } from '../../../common/canonical-json.ts';
import { AppError } from '../../../common/errors.ts';
import type { AuthorizationDetail } from '../connectors/types.ts';
import type { Obo } from './exchange-types.ts';

/** `rar`: the IdP names this client as the actor, one credential, and grants no more than the RAR asked. */
export function fitsRar(payload: JWTPayload, clientId: string, asked: AuthorizationDetail[]): Pick<Obo, 'vaultRole' | 'authorizationDetails'> {
  const act = payload.act as { sub?: unknown } | undefined;
  if (!act || act.sub !== clientId) throw new AppError('OBO_INVALID', 'The OBO token does not name Countersign as the actor (act.sub), which the rar delegation profile requires.');
  const vaultRole = payload.vault_role;
  if (typeof vaultRole !== 'string' || vaultRole.length === 0) {
    throw new AppError('OBO_INVALID', 'The OBO token lacks the single vault_role claim naming the credential it permits.');
  }
  const granted = payload.authorization_details;
  if (!Array.isArray(granted)) throw new AppError('OBO_INVALID', 'The OBO token carries no authorization_details, which the rar delegation profile requires (set idp.delegation to scopes for an identity provider that decides by scope).');
  if (!isNarrowerOrEqual(granted as AuthorizationDetail[], asked)) {
    throw new AppError('OBO_INVALID', 'The OBO token grants authorization details other than those asked for.');
  }
  return { vaultRole, authorizationDetails: granted as AuthorizationDetail[] };
}

/**
 * `scopes`: exactly the one scope asked, the `vault_role` it maps to, and this client as the actor
 * (`act` when the IdP writes one, else `azp` / `client_id` / Okta's `cid`, every one present agreeing).
 */
export function fitsScopes(
  payload: JWTPayload,
  clientId: string,
  request: { scope: string; credential: string; authorizationDetails: AuthorizationDetail[] },
): Pick<Obo, 'vaultRole' | 'authorizationDetails' | 'scope'> {
  const asked = request.scope;
  const granted = scopesOf(payload);
  if (!granted.includes(asked)) throw new AppError('OBO_INVALID', `The OBO token does not carry the scope ${asked} it was asked for (scopes delegation profile).`);
  const extra = granted.filter((s) => s !== asked);
  if (extra.length > 0) {
    throw new AppError('OBO_INVALID', `The OBO token carries scopes beyond ${asked} (${extra.join(' ').slice(0, 200)}); the scopes delegation profile accepts exactly the one asked for.`);
  }
  if (payload.act !== undefined) {
    if ((payload.act as { sub?: unknown } | null)?.sub !== clientId) throw new AppError('OBO_INVALID', 'The OBO token names another actor than Countersign (act.sub).');
  } else {
    const named = (['azp', 'client_id', 'cid'] as const).filter((k) => payload[k] !== undefined);
    if (named.length === 0) throw new AppError('OBO_INVALID', 'The OBO token names no actor: no act, and no azp or client_id naming Countersign.');
    const other = named.find((k) => payload[k] !== clientId);
    if (other) throw new AppError('OBO_INVALID', `The OBO token was issued to another client (${other} is not this install's client).`);
  }
  const vaultRole = payload.vault_role;
  if (typeof vaultRole !== 'string' || vaultRole.length === 0) {
    throw new AppError('OBO_INVALID', `The OBO token lacks the vault_role claim: map the scope ${asked} to vault_role at the identity provider.`);
  }
  if (vaultRole !== request.credential) throw new AppError('OBO_INVALID', `The OBO token's vault_role (${vaultRole.slice(0, 100)}) is not the credential the scope ${asked} names.`);
  const details = payload.authorization_details;
  if (details !== undefined && (!Array.isArray(details) || !isNarrowerOrEqual(details as AuthorizationDetail[], request.authorizationDetails))) {
    throw new AppError('OBO_INVALID', 'The OBO token grants authorization details other than those of this call.');
  }
  return { vaultRole, authorizationDetails: (details as AuthorizationDetail[] | undefined) ?? [], scope: asked };
}

/**
 * RFC 9396 §7: the AS may narrow what was asked. Each granted entry must match one requested entry of
 * the same type in which every requested field is present and granted equal or as a subset (arrays),
 * and no field is granted that was not asked: a field the call did not ask for (`privileges`,
 * `functions`) can only widen what the entry allows.
 */
export function isNarrowerOrEqual(granted: AuthorizationDetail[], requested: AuthorizationDetail[]): boolean {
  if (granted.length === 0 || granted.length > requested.length) return false;
  return granted.every((g) => requested.some((r) => r.type === g.type && covers(r, g)));
}

function covers(requested: Record<string, unknown>, granted: Record<string, unknown>): boolean {
  if (Object.keys(granted).some((key) => !Object.hasOwn(requested, key))) return false;
  for (const [key, want] of Object.entries(requested)) {
    if (!(key in granted)) return false;
    const got = granted[key];
    if (Array.isArray(want)) {
      if (!Array.isArray(got) || !got.every((g) => want.some((w) => JSON.stringify(w) === JSON.stringify(g)))) return false;
    } else if (canonicalJson(want) !== canonicalJson(got)) {
      return false;
    }
  }
  return true;
}

/** The scopes an access token carries: RFC 8693 §4.2 `scope` (space-delimited), or Okta's `scp` list. */
function scopesOf(payload: JWTPayload): string[] {
  const out: string[] = [];
  if (typeof payload.scope === 'string') out.push(...payload.scope.split(' ').filter(Boolean));
  if (Array.isArray(payload.scp)) out.push(...payload.scp.map(String));
  return [...new Set(out)];
}
