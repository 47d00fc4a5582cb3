/**
 * Per-call RFC 8693 token exchange with RFC 9396 authorization details, and the IBM Verify-style
 * `mfa_challenge` step-up (STANDARDS.md §3). The request goes through openid-client's
 * `genericGrantRequest` (client authentication, DPoP, response checks); what comes back is verified
 * again here before anything uses it: the OBO's signature against the IdP's JWKS, issuer, audience,
 * `exp` at most 60 s away, a fresh `jti` never seen before, then what the delegation profile demands:
 *
 * - `rar`: `act` naming this client, the single `vault_role` claim, and authorization details equal
 *   to or narrower than asked (RFC 9396 §7);
 * - `scopes`: the exchange asks one scope per credential (`vault:clinic-read`) instead of sending the
 *   RAR, and the OBO must carry exactly that scope, the `vault_role` it maps to, and its actor: `act`
 *   when present, else `azp` / `client_id` (Okta: `cid`) naming this client.
 *
 * Anything else is OBO_INVALID, with the reason; a profile is configured, never guessed.
 *
 * The `jti` replay check is per process: each exchanger remembers the jtis it accepted until their
 * `exp` (at most 60 s), in memory. A restarted core, a second exchanger or another install does not
 * see them. It catches an IdP (or something between us and it) handing the same OBO out twice to this
 * core; the guarantees against replay at the targets are the IdP's jti uniqueness, the 60 s lifetime,
 * and the targets' own single-use checks (the lab upstream refuses a used jti; Vault keeps no jti
 * record, see STANDARDS.md §5, so its roles' leeways must stay small).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import * as oidc from 'openid-client';
import { calculateJwkThumbprint, exportJWK, jwtVerify, type JWTPayload } from 'jose';
import { AppError } from '../../../common/errors.ts';
import type { AuthorizationDetail } from '../connectors/types.ts';
import { idpError, IDP_STEPS, isClientRejected } from './errors.ts';
import { createIdpJwks, type IdpJwks } from './jwks.ts';
import { fitsRar, fitsScopes } from './obo-checks.ts';
import { approveByPush } from './verify-push.ts';
import { onWire } from '../wire-time.ts';
import type { webcrypto } from 'node:crypto';

export { isNarrowerOrEqual } from './obo-checks.ts';
export { authorizationDetailsDigest } from './verify-push.ts';

export const GRANT_TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const GRANT_JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
export const TOKEN_TYPE_ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
/** RFC 8693 §2.2.1 and the shared contract: an OBO lives at most this long. */
export const MAX_OBO_LIFETIME_S = 60;

/** How the identity provider decides each call (`idp.delegation`, docs/identity-providers.md). */
export type DelegationProfile = 'rar' | 'scopes';

/**
 * The OAuth client an exchange authenticates as. It must be the client the subject token was issued
 * to: an IdP may refuse another (the lab does; Keycloak's standard token exchange checks the
 * audience of the subject token against the requesting client). Given by the sign-in module
 * (`AuthService.client()`), so a per-install registered client (RFC 7591) is used for both.
 */
export interface ExchangeClient {
  clientId: string;
  /** How the client authenticates at the token endpoint (openid-client's `None()`, `PrivateKeyJwt()`…). */
  clientAuth: oidc.ClientAuth;
  serverMetadata: oidc.ServerMetadata;
  clientMetadata?: Partial<oidc.ClientMetadata>;
}

export interface TokenExchangerOptions {
  issuer: string;
  /** The fixed public client, used when `client` is not given. */
  clientId: string;
  /**
   * The client sign-in uses, asked before each exchange (cheap: the sign-in module keeps it). Takes
   * precedence over `clientId` and `configuration`; a new object (a new registration) is picked up.
   */
  client?: () => Promise<ExchangeClient>;
  /**
   * Told when the IdP answers `invalid_client` to an exchange made as `client()`'s client (its
   * registration is gone), so the sign-in module can drop it and ask the person to sign in again.
   */
  onClientRejected?: () => Promise<void> | void;
  /** An openid-client Configuration from the sign-in module; discovered from `issuer` when absent. */
  configuration?: oidc.Configuration;
  /**
   * Permits plain http to the IdP. Only for the loopback lab: refused for any non-loopback issuer.
   * @deprecated insecure; named so every use stands out.
   */
  allowInsecureHttpForLoopbackOnly?: boolean;
  /** Time-out per HTTP request to the IdP. */
  timeoutMs?: number;
  /** `rar` (the default) or `scopes`; see the module comment. */
  delegation?: DelegationProfile;
  /** Under `scopes`, the scope asked for a credential is this prefix and the Vault role. Default `vault:`. */
  scopePrefix?: string;
  /** Clock skew tolerated on `exp`/`iat`, seconds. */
  clockSkewS?: number;
  /**
   * The longest OBO accepted, seconds: 60 unless `idp.allowLongLivedOboUpToSeconds` raises it for an
   * IdP that cannot issue shorter ones (Okta). Weaker; see that setting.
   */
  maxOboLifetimeS?: number;
  stepUp?: { pollIntervalMs?: number; timeoutMs?: number };
  /**
   * After the IdP rotates its signing key, an OBO with an unknown `kid` waits for a JWKS refetch;
   * refetches are at most one per this many ms, however many unknown kids arrive. Default 1 s.
   */
  jwksCooldownMs?: number;
}

export interface ExchangeRequest {
  subjectToken: string;
  authorizationDetails: AuthorizationDetail[];
  audience?: string;
  resource?: string;
  scope?: string;
  /**
   * The Vault role the call needs (the plan's credential). Under `scopes` it is what the exchange asks
   * for and what the OBO's `vault_role` must name; a call without one cannot be delegated that way.
   */
  credential?: string;
  dpopKeyPair?: webcrypto.CryptoKeyPair;
  /** The signed-in user's `sub`: the OBO must name the same subject. */
  expectedSub?: string;
  /** Shown on the push (Verify-style step-up): what the person is approving. */
  approvalMessage?: string;
  signal?: AbortSignal;
  onProgress?: (message: string) => void;
}

/** A validated single-call OBO token. `token` is the only secret; the rest is safe to record. */
export interface Obo {
  token: string;
  tokenType: 'Bearer' | 'DPoP';
  jti: string;
  sub: string;
  exp: number;
  iat: number;
  vaultRole: string;
  /** Under `rar` what the IdP granted; under `scopes` whatever the OBO carries (usually nothing). */
  authorizationDetails: AuthorizationDetail[];
  /** The profile this OBO was checked against. */
  delegation: DelegationProfile;
  /** Under `scopes`: the one scope asked for and granted. */
  scope?: string;
  acr?: string;
  amr?: string[];
  /** True when a Verify-style push approval was needed (and given) for this OBO. */
  steppedUp: boolean;
  /** Time spent waiting on the push, when there was one (ms). */
  stepUpMs?: number;
}

export interface TokenExchanger {
  exchange(request: ExchangeRequest): Promise<Obo>;
  /** The delegation profile every exchange runs under (absent: `rar`). */
  readonly delegation?: DelegationProfile;
}

const isLoopback = (host: string): boolean => host === '127.0.0.1' || host === '[::1]' || host === 'localhost';

export function createTokenExchanger(options: TokenExchangerOptions): TokenExchanger {
  const issuerUrl = new URL(options.issuer);
  const insecure = options.allowInsecureHttpForLoopbackOnly === true;
  if (issuerUrl.protocol === 'http:' && !(insecure && isLoopback(issuerUrl.hostname))) {
    throw new AppError('CONFIG_INVALID', 'The identity provider must be reached over https (plain http is allowed only for a loopback lab).');
  }
  const timeoutMs = options.timeoutMs ?? 10_000;
  const delegation: DelegationProfile = options.delegation ?? 'rar';
  const scopePrefix = options.scopePrefix ?? 'vault:';
  const scopeFor = (credential: string): string => `${scopePrefix}${credential}`;
  const skew = options.clockSkewS ?? 5;
  const maxLifetime = options.maxOboLifetimeS ?? MAX_OBO_LIFETIME_S;
  const pollIntervalMs = options.stepUp?.pollIntervalMs ?? 1_000;
  const pollTimeoutMs = options.stepUp?.timeoutMs ?? 50_000;
  const callSignal = new AsyncLocalStorage<AbortSignal | undefined>();
  /** jti → exp of every OBO this exchanger accepted: a per-process replay check (see the module comment). */
  const seenJtis = new Map<string, number>();

  /** Every request to the IdP carries the call's AbortSignal and a time-out. */
  const fetchWithCallSignal = (url: string, init: RequestInit): Promise<Response> => {
    const signals = [AbortSignal.timeout(timeoutMs)];
    if (init.signal) signals.push(init.signal);
    const s = callSignal.getStore();
    if (s) signals.push(s);
    return onWire('idp', () => fetch(url, { ...init, signal: AbortSignal.any(signals), redirect: 'error' }));
  };

  const prepare = (c: oidc.Configuration): oidc.Configuration => {
    if (insecure) oidc.allowInsecureRequests(c);
    c[oidc.customFetch] = fetchWithCallSignal;
    c.timeout = Math.ceil(timeoutMs / 1000);
    return c;
  };

  let configPromise: Promise<oidc.Configuration> | undefined;
  const fixedConfig = (): Promise<oidc.Configuration> => {
    configPromise ??= (async () => {
      const c =
        options.configuration ??
        (await oidc.discovery(issuerUrl, options.clientId, undefined, oidc.None(), {
          [oidc.customFetch]: fetchWithCallSignal,
          timeout: Math.ceil(timeoutMs / 1000),
          ...(insecure ? { execute: [oidc.allowInsecureRequests] } : {}),
        }));
      return prepare(c);
    })().catch((error: unknown) => {
      configPromise = undefined;
      throw idpError(error, IDP_STEPS.discovery);
    });
    return configPromise;
  };

  /** The configuration built for the sign-in module's client; rebuilt when it hands out another one. */
  let built: { client: ExchangeClient; c: oidc.Configuration } | undefined;
  const config = async (): Promise<{ c: oidc.Configuration; clientId: string }> => {
    if (!options.client) return { c: await fixedConfig(), clientId: options.clientId };
    let client: ExchangeClient;
    try {
      client = await options.client();
    } catch (error) {
      throw idpError(error, IDP_STEPS.discovery);
    }
    if (built?.client !== client) {
      if (client.serverMetadata.issuer !== options.issuer) throw new AppError('CONFIG_INVALID', "The sign-in's identity provider is not the one the token exchange is configured for.");
      built = { client, c: prepare(new oidc.Configuration(client.serverMetadata, client.clientId, client.clientMetadata, client.clientAuth)) };
    }
    return { c: built.c, clientId: client.clientId };
  };

  // One DPoP handle per configuration and key, as openid-client means them to be used: it keeps the
  // public JWK it embeds and the IdP's DPoP nonce from one call to the next. The key's thumbprint too.
  const handles = new WeakMap<webcrypto.CryptoKeyPair, { c: oidc.Configuration; handle: oidc.DPoPHandle }>();
  const dpopHandle = (c: oidc.Configuration, pair: webcrypto.CryptoKeyPair): oidc.DPoPHandle => {
    const known = handles.get(pair);
    if (known?.c === c) return known.handle;
    const handle = oidc.getDPoPHandle(c, pair);
    handles.set(pair, { c, handle });
    return handle;
  };
  const thumbprints = new WeakMap<webcrypto.CryptoKey, Promise<string>>();
  const thumbprint = (key: webcrypto.CryptoKey): Promise<string> => {
    let t = thumbprints.get(key);
    if (!t) {
      t = exportJWK(key).then((jwk) => calculateJwkThumbprint(jwk));
      t.catch(() => thumbprints.delete(key));
      thumbprints.set(key, t);
    }
    return t;
  };

  let jwks: IdpJwks | undefined;
  const keys = (c: oidc.Configuration): IdpJwks => {
    const uri = c.serverMetadata().jwks_uri;
    if (!uri) throw new AppError('IDP_BAD_RESPONSE', 'The identity provider publishes no JWKS.');
    jwks ??= createIdpJwks(uri, {
      cooldownMs: options.jwksCooldownMs ?? 1_000,
      fetch: fetchWithCallSignal,
      signal: () => callSignal.getStore(),
    });
    return jwks;
  };

  async function grant(
    c: oidc.Configuration,
    grantType: string,
    params: Record<string, string>,
    dpop: oidc.DPoPHandle | undefined,
    signal: AbortSignal | undefined,
  ): Promise<oidc.TokenEndpointResponse> {
    try {
      return await callSignal.run(signal, () => oidc.genericGrantRequest(c, grantType, params, dpop ? { DPoP: dpop } : undefined));
    } catch (error) {
      if (signal?.aborted) throw new AppError('CANCELLED', 'The call was cancelled during the token exchange.', { cause: error });
      if (options.client && options.onClientRejected && isClientRejected(error)) await options.onClientRejected();
      throw idpError(error, grantType === GRANT_JWT_BEARER ? IDP_STEPS.stepUp : IDP_STEPS.exchange);
    }
  }

  async function validate(
    c: oidc.Configuration,
    clientId: string,
    response: oidc.TokenEndpointResponse,
    request: ExchangeRequest,
    steppedUp: boolean,
  ): Promise<Obo> {
    if (response.issued_token_type !== undefined && response.issued_token_type !== TOKEN_TYPE_ACCESS_TOKEN) {
      throw new AppError('OBO_INVALID', 'The identity provider issued a token of an unexpected type.');
    }
    if (!steppedUp && response.issued_token_type !== TOKEN_TYPE_ACCESS_TOKEN) {
      throw new AppError('OBO_INVALID', 'The identity provider did not say which token type it issued (issued_token_type).');
    }
    const tokenType = String(response.token_type).toLowerCase() === 'dpop' ? 'DPoP' : 'Bearer';
    if (request.dpopKeyPair && tokenType !== 'DPoP') throw new AppError('OBO_INVALID', 'The identity provider did not bind the OBO to the DPoP key.');
    const audience = request.audience ?? request.resource;
    let payload: JWTPayload;
    try {
      ({ payload } = await callSignal.run(request.signal, () =>
        jwtVerify(response.access_token, keys(c), {
          issuer: c.serverMetadata().issuer,
          ...(audience ? { audience } : {}),
          clockTolerance: skew,
          requiredClaims: ['jti', 'exp', 'iat', 'sub'],
        }),
      ));
    } catch (error) {
      if (request.signal?.aborted) throw new AppError('CANCELLED', 'The call was cancelled during the token exchange.', { cause: error });
      if (error instanceof AppError) throw error;
      const code = (error as { code?: unknown }).code;
      if (code === 'ERR_JWKS_TIMEOUT' || (error instanceof TypeError && code === undefined)) {
        throw new AppError('IDP_UNAVAILABLE', "The identity provider's signing keys could not be fetched.", { cause: error });
      }
      throw new AppError('OBO_INVALID', `The OBO token failed verification${typeof code === 'string' ? ` (${code})` : ''}.`, { cause: error });
    }
    const now = Math.floor(Date.now() / 1000);
    const exp = payload.exp as number;
    const iat = payload.iat as number;
    if (exp - now > maxLifetime + skew || exp - iat > maxLifetime) {
      throw new AppError(
        'OBO_INVALID',
        `The OBO token lives longer than ${maxLifetime} s (${exp - iat} s); refusing it.` +
          (maxLifetime === MAX_OBO_LIFETIME_S
            ? ' Shorten the token lifetime at the identity provider; one that cannot go below this (Okta: 5 minutes) needs idp.allowLongLivedOboUpToSeconds, which is weaker (docs/identity-providers.md).'
            : ''),
      );
    }
    const jti = payload.jti as string;
    for (const [seen, until] of seenJtis) if (until < now - skew) seenJtis.delete(seen);
    if (seenJtis.has(jti)) throw new AppError('OBO_INVALID', 'The identity provider returned an OBO token already used (repeated jti).');
    seenJtis.set(jti, exp);
    // Okta's custom authorization servers put the login in an access token's `sub` and the user id (the ID token's `sub`) in `uid`.
    const sameUser = payload.sub === request.expectedSub || (delegation === 'scopes' && payload.uid === request.expectedSub);
    if (request.expectedSub !== undefined && !sameUser) {
      throw new AppError('OBO_INVALID', 'The OBO token names a different user than the one signed in.');
    }
    const fitted =
      delegation === 'scopes'
        ? fitsScopes(payload, clientId, { scope: scopeFor(request.credential!), credential: request.credential!, authorizationDetails: request.authorizationDetails })
        : fitsRar(payload, clientId, request.authorizationDetails);
    if (request.dpopKeyPair) {
      const jkt = await thumbprint(request.dpopKeyPair.publicKey);
      if ((payload.cnf as { jkt?: unknown } | undefined)?.jkt !== jkt) throw new AppError('OBO_INVALID', 'The OBO token is not bound to this DPoP key.');
    }
    return {
      token: response.access_token,
      tokenType,
      jti,
      sub: payload.sub as string,
      exp,
      iat,
      ...fitted,
      delegation,
      ...(typeof payload.acr === 'string' ? { acr: payload.acr } : {}),
      ...(Array.isArray(payload.amr) ? { amr: payload.amr.map(String) } : {}),
      steppedUp,
    };
  }

  /** What the exchange asks for, per profile: the RAR (`rar`) or the credential's scope (`scopes`). */
  function delegationParams(request: ExchangeRequest): Record<string, string> {
    if (delegation === 'rar') return { authorization_details: JSON.stringify(request.authorizationDetails), ...(request.scope ? { scope: request.scope } : {}) };
    if (!request.credential) {
      throw new AppError(
        'CONFIG_INVALID',
        'This call takes the OBO itself as its credential, which the identity provider can describe only with the rar delegation profile (idp.delegation is scopes).',
      );
    }
    if (!request.audience) throw new AppError('CONFIG_INVALID', 'Under the scopes delegation profile every exchange names its audience (the Vault audience).');
    return { scope: scopeFor(request.credential) };
  }

  /** Under `scopes` the IdP answers a scope it did not grant by leaving it out of the response's `scope`. */
  function grantedByResponse(response: oidc.TokenEndpointResponse, request: ExchangeRequest): void {
    if (delegation !== 'scopes' || response.scope === undefined) return;
    const asked = scopeFor(request.credential!);
    if (!String(response.scope).split(' ').includes(asked)) {
      throw new AppError('IDP_DENIED', `Your identity provider did not grant ${asked} for this call (its policy left the scope out).`);
    }
  }

  return {
    delegation,
    async exchange(request) {
      request.signal?.throwIfAborted();
      const asked = delegationParams(request);
      const { c, clientId } = await config();
      const dpop = request.dpopKeyPair ? dpopHandle(c, request.dpopKeyPair) : undefined;
      const params: Record<string, string> = {
        subject_token: request.subjectToken,
        subject_token_type: TOKEN_TYPE_ACCESS_TOKEN,
        requested_token_type: TOKEN_TYPE_ACCESS_TOKEN,
        ...asked,
      };
      if (request.audience) params.audience = request.audience;
      if (request.resource) params.resource = request.resource;
      const first = await grant(c, GRANT_TOKEN_EXCHANGE, params, dpop, request.signal);
      if (first.scope !== 'mfa_challenge') {
        grantedByResponse(first, request);
        return validate(c, clientId, first, request, false);
      }

      // IBM Verify style: the answer is a challenge token; push, poll, then jwt-bearer with the RAR (or scope) again.
      const started = Date.now();
      const assertion = await approveByPush({
        issuer: c.serverMetadata().issuer,
        challenge: first.access_token,
        fetch: (url, init) => callSignal.run(request.signal, () => fetchWithCallSignal(url, init)),
        message: request.approvalMessage ?? 'Approve a Countersign call',
        authorizationDetails: request.authorizationDetails,
        pollIntervalMs,
        pollTimeoutMs,
        ...(request.signal ? { signal: request.signal } : {}),
        ...(request.onProgress ? { onProgress: request.onProgress } : {}),
      });
      const second: Record<string, string> = { assertion, ...asked };
      if (request.audience) second.audience = request.audience;
      if (request.resource) second.resource = request.resource;
      const final = await grant(c, GRANT_JWT_BEARER, second, dpop, request.signal);
      if (final.scope === 'mfa_challenge') throw new AppError('IDP_STEP_UP_DENIED', 'The identity provider asked for another step-up after the approval.');
      grantedByResponse(final, request);
      const obo = await validate(c, clientId, final, request, true);
      return { ...obo, stepUpMs: Date.now() - started };
    },
  };
}
