/**
 * The token exchange of an identity provider that decides by scope (Keycloak's standard token
 * exchange, Okta's on-behalf-of exchange): one `vault:<role>` scope per credential, granted or
 * refused by the user's rights in the lab's policy file, mapped to the single `vault_role` claim.
 * What differs between vendors (claims, error shapes, client rules) comes from vendor-profiles.ts;
 * the RAR, if a client sends one, is ignored as those vendors ignore unknown parameters.
 */
import { randomUUID } from 'node:crypto';
import { errors } from 'oidc-provider';
import type { TokenEndpointGrantContext } from 'oidc-provider';
import {
  ACCESS_TOKEN_TYPE,
  dpopOf,
  fail,
  one,
  OBO_TTL_S,
  verifySubject,
  type GrantDeps,
} from './token-exchange.ts';
import { userMayUse } from './policy.ts';
import { userBySub } from './users.ts';
import type { VendorError, VendorProfile } from './vendor-profiles.ts';

function refuse(e: VendorError): never {
  const error = new errors.CustomOIDCProviderError(e.error, e.description);
  (error as { status: number; statusCode: number }).status = e.status;
  (error as { status: number; statusCode: number }).statusCode = e.status;
  throw error;
}

export function scopeExchangeHandler(deps: GrantDeps, vendor: VendorProfile, scopePrefix: string) {
  return async function scopeExchange(ctx: TokenEndpointGrantContext): Promise<void> {
    const started = performance.now();
    const { params, client } = ctx.oidc;
    const policy = deps.policy();

    if (vendor.publicClientExchange !== 'allowed' && client.clientAuthMethod === 'none')
      refuse(vendor.publicClientExchange);
    if (params.subject_token_type !== ACCESS_TOKEN_TYPE)
      fail('invalid_request', 'Invalid subject token type');
    if (typeof params.subject_token !== 'string' || !params.subject_token)
      fail('invalid_request', 'subject_token is required');
    if (params.requested_token_type !== undefined && params.requested_token_type !== ACCESS_TOKEN_TYPE)
      fail('invalid_request', 'requested_token_type unsupported');

    const proof = await dpopOf(deps, ctx);
    const subject = await verifySubject(deps, params.subject_token);
    // Okta's on-behalf-of exchange is a service app's, for a token the user's app got; Keycloak's is the same client's.
    if (subject.client_id !== client.clientId && vendor.exchanger !== 'service-app')
      fail('invalid_request', 'the subject token was issued to another client');
    if (!(await deps.signInStands(String(subject.jti)))) fail('invalid_request', 'Invalid token');
    const boundTo = (subject.cnf as { jkt?: unknown } | undefined)?.jkt;
    if (typeof boundTo === 'string' && proof?.thumbprint !== boundTo)
      fail('invalid_request', 'DPoP proof is missing');

    const asked = typeof params.scope === 'string' ? params.scope.split(' ').filter(Boolean) : [];
    if (asked.length === 0) {
      if (vendor.missingScope) refuse(vendor.missingScope);
      fail('invalid_scope', 'Invalid scopes: (none): ask for the scope of the credential this call needs');
    }
    // The authorization server's scopes: one per Vault role the policy can grant.
    const known = new Set(
      policy.rules.flatMap((r) =>
        'vault_role' in r && r.target === 'vault' ? [`${scopePrefix}${r.vault_role}`] : [],
      ),
    );
    const unknown = asked.filter((s) => !known.has(s));
    if (unknown.length > 0) refuse(vendor.unknownScope!(unknown.join(' ')));
    if (asked.length > 1)
      refuse({
        status: 400,
        error: 'invalid_scope',
        description: 'one credential per exchange: the vault_role claim names one',
      });

    const user = userBySub(String(subject.sub));
    if (!user) fail('invalid_request', 'Invalid token');
    const scope = asked[0]!;
    const vaultRole = scope.slice(scopePrefix.length);
    const granted = userMayUse(policy, user.role, vaultRole);
    if (!granted && vendor.scopeNotGranted !== 'omitted') refuse(vendor.scopeNotGranted!);

    const audience = one(params.audience, 'audience');
    if (audience !== undefined && audience !== policy.vault_audience)
      refuse(vendor.audienceUnavailable!(audience));
    const now = Math.floor(Date.now() / 1000);
    const lifetime = vendor.oboLifetimeS ?? OBO_TTL_S;
    const facts = {
      issuer: deps.issuer,
      sub: user.sub,
      username: user.username,
      email: user.email,
      clientId: client.clientId,
      audience: policy.vault_audience,
      scope: granted ? scope : '',
      vaultRole,
      jti: randomUUID(),
      iat: now,
      exp: now + lifetime,
      ...(typeof subject.acr === 'string' ? { acr: subject.acr } : {}),
      ...(typeof subject.auth_time === 'number' ? { authTime: subject.auth_time } : {}),
      ...(proof?.thumbprint ? { jkt: proof.thumbprint } : {}),
    };
    const claims = vendor.oboClaims!(facts);
    if (!granted) {
      // Left out, as the vendor leaves out a scope the user may not have: no scope, no role claim.
      delete claims.vault_role;
      delete claims.scp;
      delete claims.scope;
    }
    if (facts.jkt) claims.cnf = { jkt: facts.jkt };
    const token = await deps.keys.sign(deps.forgeForTests?.(claims) ?? claims, 'JWT');
    const extras = vendor.responseExtras!(facts);
    ctx.body = {
      access_token: token,
      expires_in: lifetime,
      token_type: facts.jkt ? 'DPoP' : 'Bearer',
      ...extras,
      issued_token_type: ACCESS_TOKEN_TYPE,
    };
    const ms = performance.now() - started;
    deps.onExchange?.(ms);
    deps.log(
      `idp: obo issued (${vendor.name}) jti=${facts.jti} sub=${user.sub} client=${client.clientId} scope=${facts.scope || '-'} ms=${ms.toFixed(1)}`,
    );
  };
}
