import { randomUUID } from 'node:crypto';
import { errors } from 'oidc-provider';
import type { Provider, TokenEndpointGrantContext } from 'oidc-provider';
import { jwtVerify } from 'jose';
import type { JWTPayload } from 'jose';
import validateDpop, { checkDpopReplay } from 'oidc-provider/lib/helpers/validate_dpop.js';
import type { DPoPResult } from 'oidc-provider/lib/helpers/validate_dpop.js';
import type { LabKeys } from './keys.ts';
import { authorizationDetailsDigest, decideDetail, PATH_ACCESS, pathAccessProblem, revocationRole, targetAllowed, userMayUse } from './policy.ts';
import type { AuthorizationDetail, Decision, Policy } from './policy.ts';
import type { Challenge, PushStore, Verification } from './step-up.ts';
import { userBySub } from './users.ts';

export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
export const APP_RESOURCE = 'urn:countersign:app';
/** Placeholder resource for the jwt-bearer leg: its audience comes from the approved challenge. */
export const STEP_UP_RESOURCE = 'urn:countersign:lab:step-up';
export const OBO_TTL_S = 60;

export interface GrantDeps {
  provider: Provider;
  issuer: string;
  keys: LabKeys;
  policy: () => Policy;
  push: PushStore;
  log: (line: string) => void;
  onExchange?: (ms: number) => void;
  /** Whether the sign-in (grant) behind an access token still stands: revoked or reused refresh tokens end it. */
  signInStands: (jti: string) => Promise<boolean>;
  /** Test-only: rewrites an OBO's claims before they are signed (LabIdp.forgeNextOboForTests). */
  forgeForTests?: (claims: JWTPayload) => JWTPayload;
}

type Ctx = TokenEndpointGrantContext;

export function fail(error: string, description: string): never {
  throw new errors.CustomOIDCProviderError(error, description);
}

export function one(value: unknown, name: string): string | undefined {
  if (value === undefined) return undefined;
  if (Array.isArray(value)) {
    if (value.length !== 1) fail('invalid_target', `one call asks for exactly one ${name}`);
    return String(value[0]);
  }
  return String(value);
}

export async function dpopOf(deps: GrantDeps, ctx: Ctx): Promise<DPoPResult | undefined> {
  const proof = await validateDpop(deps.provider, ctx);
  if (proof) await checkDpopReplay(deps.provider, ctx, proof, ctx.oidc.client.clientId, errors.InvalidDpopProof);
  return proof;
}

/** Verifies a subject token as an access token this IdP issued for the app (RFC 9068 profile). */
export async function verifySubject(deps: GrantDeps, token: string): Promise<JWTPayload> {
  try {
    const { payload } = await jwtVerify(token, deps.keys.verifier(), {
      issuer: deps.issuer,
      audience: APP_RESOURCE,
      typ: 'at+jwt',
      algorithms: ['ES256'],
      requiredClaims: ['sub', 'exp', 'jti', 'client_id'],
    });
    return payload;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === 'ERR_JWT_EXPIRED') fail('invalid_request', 'the subject token has expired: sign in again');
    if (code === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' || code === 'ERR_JWKS_NO_MATCHING_KEY' || code === 'ERR_JWKS_MULTIPLE_MATCHING_KEYS')
      fail('invalid_request', 'the subject token was not issued by this identity provider');
    if (code === 'ERR_JWT_CLAIM_VALIDATION_FAILED')
      fail('invalid_request', 'the subject token is not an access token this identity provider issued for the app');
    fail('invalid_request', 'the subject token is not a well-formed JWT access token');
  }
}

function parseDetails(raw: unknown): AuthorizationDetail[] {
  if (typeof raw !== 'string') fail('invalid_request', 'authorization_details is required: one call, described');
  const details = JSON.parse(raw) as AuthorizationDetail[];
  if (!Array.isArray(details) || details.length === 0) fail('invalid_authorization_details', 'authorization_details must be a non-empty array');
  return details;
}

/** One decision for the whole call: every entry must agree on one credential. */
function decideAll(policy: Policy, details: AuthorizationDetail[]): Exclude<Decision, { outcome: 'deny' }> {
  const decisions = details.map((d) => decideDetail(policy, d));
  const denied = decisions.find((d) => d.outcome === 'deny');
  if (denied) fail('access_denied', denied.description);
  const granted = decisions as Exclude<Decision, { outcome: 'deny' }>[];
  const first = granted[0]!;
  if (granted.some((d) => d.vaultRole !== first.vaultRole || d.target !== first.target || d.location !== first.location))
    fail('invalid_request', 'the authorization details of one call must map to one credential');
  return granted.some((d) => d.outcome === 'step_up') ? { ...first, outcome: 'step_up' } : first;
}

function callDigests(details: AuthorizationDetail[]): string[] {
  return details.flatMap((d) =>
    [d.statement_digest, d.argument_digest].filter((v): v is string => typeof v === 'string'),
  );
}

interface OboInput {
  sub: string;
  clientId: string;
  audience: string;
  details: AuthorizationDetail[];
  vaultRole: string;
  acr?: string;
  authTime?: number;
  jkt?: string;
  amr?: string[];
  txn?: string;
}

async function issueObo(deps: GrantDeps, ctx: Ctx, o: OboInput, started: number): Promise<void> {
  const now = Math.floor(Date.now() / 1000);
  const jti = randomUUID();
  const policy = deps.policy();
  const omitAct = policy.agents[o.clientId]?.act === 'none';
  const ttl = policy.obo_ttl_s ?? OBO_TTL_S;
  const payload: JWTPayload = {
    iss: deps.issuer,
    sub: o.sub,
    aud: o.audience,
    ...(omitAct ? {} : { act: { sub: o.clientId } }),
    client_id: o.clientId,
    authorization_details: o.details,
    vault_role: o.vaultRole,
    jti,
    iat: now,
    exp: now + ttl,
    ...(o.acr ? { acr: o.acr } : {}),
    ...(o.authTime ? { auth_time: o.authTime } : {}),
    ...(o.amr ? { amr: o.amr } : {}),
    ...(o.txn ? { txn: o.txn } : {}),
    ...(o.jkt ? { cnf: { jkt: o.jkt } } : {}),
  };
  const token = await deps.keys.sign(deps.forgeForTests?.(payload) ?? payload, 'at+jwt');
  ctx.body = {
    access_token: token,
    issued_token_type: ACCESS_TOKEN_TYPE,
    token_type: o.jkt ? 'DPoP' : 'Bearer',
    expires_in: ttl,
    authorization_details: o.details,
  };
  const ms = performance.now() - started;
  deps.onExchange?.(ms);
  deps.log(
    `idp: obo issued jti=${jti} sub=${o.sub} client=${o.clientId} aud=${o.audience} vault_role=${o.vaultRole}${o.jkt ? ' dpop' : ''}${o.txn ? ` push=${o.txn}` : ''} ms=${ms.toFixed(1)}`,
  );
}

/** RFC 8693 §2.1 token exchange with RFC 9396 authorization_details, decided by the policy file. */
export function tokenExchangeHandler(deps: GrantDeps) {
  return async function tokenExchange(ctx: Ctx): Promise<void> {
    const started = performance.now();
    const { params, client } = ctx.oidc;
    const policy = deps.policy();

    if (params.subject_token_type !== ACCESS_TOKEN_TYPE)
      fail('invalid_request', `subject_token_type must be ${ACCESS_TOKEN_TYPE}`);
    if (typeof params.subject_token !== 'string' || !params.subject_token) fail('invalid_request', 'subject_token is required');
    if (params.actor_token !== undefined || params.actor_token_type !== undefined)
      fail('invalid_request', 'actor tokens are not accepted: the client itself is the actor');
    if (params.requested_token_type !== undefined && params.requested_token_type !== ACCESS_TOKEN_TYPE)
      fail('invalid_request', `requested_token_type must be ${ACCESS_TOKEN_TYPE}`);

    const proof = await dpopOf(deps, ctx);
    const subject = await verifySubject(deps, params.subject_token);
    if (subject.client_id !== client.clientId) fail('invalid_request', 'the subject token was issued to another client');
    if (!(await deps.signInStands(String(subject.jti)))) fail('invalid_request', 'the sign-in behind the subject token has ended: sign in again');
    const boundTo = (subject.cnf as { jkt?: unknown } | undefined)?.jkt;
    if (typeof boundTo === 'string' && proof?.thumbprint !== boundTo)
      fail('invalid_dpop_proof', 'the subject token is DPoP-bound: send a DPoP proof made with its key');

    const audience = one(params.audience, 'audience');
    let resource = one(params.resource, 'resource');
    if (audience !== undefined && resource === audience) resource = undefined;
    if (audience !== undefined && resource !== undefined) fail('invalid_target', 'ask for an audience or a resource, not both');
    if (!targetAllowed(policy, { audience, resource })) fail('invalid_target', 'this audience is not allowed for this client');

    const details = parseDetails(params.authorization_details);
    // Vault paths are not a call: the call's own entries decide, then the paths must be ones the policy allows for it.
    const callDetails = details.filter((d) => d.type !== PATH_ACCESS);
    if (callDetails.length === 0) {
      await revocationAlone(deps, ctx, details, { subject, audience, jkt: proof?.thumbprint }, started);
      return;
    }
    const decision = decideAll(policy, callDetails);
    const stray = pathAccessProblem(policy, client.clientId, decision.vaultRole, details.filter((d) => d.type === PATH_ACCESS));
    if (stray) fail('access_denied', stray);
    if (details.length > callDetails.length && decision.target !== 'vault')
      fail('invalid_authorization_details', 'vault:path_access entries are for calls whose credential comes from Vault');
    if (decision.target === 'vault' && audience !== policy.vault_audience)
      fail('invalid_target', `this call's credential comes from Vault: ask for audience ${policy.vault_audience}`);
    if (decision.target === 'resource' && resource !== decision.location)
      fail('invalid_target', 'the resource must be the location the authorization details name');

    const user = userBySub(String(subject.sub));
    if (!user) fail('access_denied', 'the subject is not a known user');
    if (!userMayUse(policy, user.role, decision.vaultRole))
      fail('access_denied', `${user.username} is not allowed ${decision.vaultRole}: ask an administrator for this right`);

    const common = {
      sub: user.sub,
      clientId: client.clientId,
      audience: (audience ?? resource)!,
      details,
      vaultRole: decision.vaultRole,
      acr: typeof subject.acr === 'string' ? subject.acr : undefined,
      authTime: typeof subject.auth_time === 'number' ? subject.auth_time : undefined,
      jkt: proof?.thumbprint,
    };

    if (decision.outcome === 'step_up') {
      const challenge = deps.push.createChallenge({
        ...common,
        username: user.username,
        digest: authorizationDetailsDigest(details),
        callDigests: callDigests(callDetails),
      });
      deps.log(`idp: step-up required sub=${user.sub} client=${client.clientId} vault_role=${decision.vaultRole} digest=${challenge.digest}`);
      ctx.body = {
        access_token: challenge.token,
        issued_token_type: ACCESS_TOKEN_TYPE,
        token_type: 'Bearer',
        expires_in: Math.floor((challenge.expiresAt - Date.now()) / 1000),
        scope: 'mfa_challenge',
      };
      return;
    }
    await issueObo(deps, ctx, common, started);
  };
}

/**
 * A lease revocation on its own (policy `lease_revocation_alone`): the token can revoke that one lease
 * of a role the user holds and nothing else; no call is authorised, so no step-up is asked.
 */
async function revocationAlone(
  deps: GrantDeps,
  ctx: Ctx,
  details: AuthorizationDetail[],
  o: { subject: JWTPayload; audience: string | undefined; jkt: string | undefined },
  started: number,
): Promise<void> {
  const policy = deps.policy();
  const { client } = ctx.oidc;
  const found = revocationRole(policy, client.clientId, details);
  if ('problem' in found) fail('invalid_authorization_details', found.problem);
  if (o.audience !== policy.vault_audience) fail('invalid_target', `a lease revocation is for Vault: ask for audience ${policy.vault_audience}`);
  const user = userBySub(String(o.subject.sub));
  if (!user) fail('access_denied', 'the subject is not a known user');
  if (!userMayUse(policy, user.role, found.vaultRole)) fail('access_denied', `${user.username} is not allowed ${found.vaultRole}: ask an administrator for this right`);
  await issueObo(deps, ctx, { sub: user.sub, clientId: client.clientId, audience: o.audience, details, vaultRole: found.vaultRole, jkt: o.jkt }, started);
}

/** Signs the assertion a successful push yields: single use, for this client's token endpoint. */
export function assertionSigner(deps: Pick<GrantDeps, 'keys' | 'issuer'>, tokenEndpoint: string) {
  return async (c: Challenge, v: Verification): Promise<string> => {
    const now = Math.floor(Date.now() / 1000);
    return deps.keys.sign(
      {
        iss: deps.issuer,
        sub: c.sub,
        aud: tokenEndpoint,
        client_id: c.clientId,
        txn: v.id,
        authorization_details_digest: c.digest,
        amr: ['mfa', 'push'],
        jti: randomUUID(),
        iat: now,
        exp: now + 120,
      },
      'JWT',
    );
  };
}

/** The Verify-style second leg (RFC 7523 jwt-bearer): the push assertion plus the same RAR → the OBO. */
export function jwtBearerHandler(deps: GrantDeps, tokenEndpoint: string) {
  return async function jwtBearer(ctx: Ctx): Promise<void> {
    const started = performance.now();
    const { params, client } = ctx.oidc;
    if (typeof params.assertion !== 'string' || !params.assertion) fail('invalid_request', 'assertion is required');
    const proof = await dpopOf(deps, ctx);

    let claims: JWTPayload;
    try {
      ({ payload: claims } = await jwtVerify(params.assertion, deps.keys.verifier(), {
        issuer: deps.issuer,
        audience: tokenEndpoint,
        typ: 'JWT',
        algorithms: ['ES256'],
        requiredClaims: ['jti', 'txn', 'sub', 'exp'],
      }));
    } catch (err) {
      if ((err as { code?: unknown }).code === 'ERR_JWT_EXPIRED') fail('invalid_grant', 'the approval has expired: start the call again');
      fail('invalid_grant', 'the assertion is not an approval this identity provider issued');
    }
    const verification = deps.push.verifications.get(String(claims.txn));
    const challenge = verification && deps.push.challenges.get(verification.challengeId);
    if (!verification || !challenge || deps.push.stateOf(verification) !== 'VERIFY_SUCCESS')
      fail('invalid_grant', 'the assertion does not name an approved push');
    if (challenge.clientId !== client.clientId || claims.client_id !== client.clientId)
      fail('invalid_grant', 'the approval was given to another client');
    if (challenge.used || !deps.push.useAssertion(String(claims.jti)))
      fail('invalid_grant', 'the approval has already been used: one approval, one call');

    const details = parseDetails(params.authorization_details);
    if (authorizationDetailsDigest(details) !== challenge.digest)
      fail('invalid_grant', 'the authorization details differ from the call that was approved');
    if (challenge.jkt !== undefined && proof?.thumbprint !== challenge.jkt)
      fail('invalid_dpop_proof', 'the first leg was DPoP-bound: send a DPoP proof made with the same key');

    challenge.used = true;
    await issueObo(
      deps,
      ctx,
      {
        sub: challenge.sub,
        clientId: challenge.clientId,
        audience: challenge.audience,
        details,
        vaultRole: challenge.vaultRole,
        acr: challenge.acr,
        authTime: challenge.authTime,
        jkt: challenge.jkt,
        amr: ['mfa', 'push'],
        txn: verification.id,
      },
      started,
    );
  };
}
