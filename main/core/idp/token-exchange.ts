/**
 * Per-call RFC 8693 token exchange with RFC 9396 authorization details, and the IBM Verify-style
 * `mfa_challenge` step-up (./verify-push.ts). The request goes through openid-client's
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
 * Anything else is OBO_INVALID, with the reason; a profile is configured, never guessed. The checks
 * are ./obo-verify.ts; the shapes ./exchange-types.ts.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import * as oidc from 'openid-client';
import type { webcrypto } from 'node:crypto';
import { AppError } from '../../../common/errors.ts';
import { idpError, IDP_STEPS, isClientRejected } from './errors.ts';
import type { DelegationProfile, ExchangeClient, ExchangeRequest, Obo, TokenExchanger, TokenExchangerOptions } from './exchange-types.ts';
import { createIdpJwks, type IdpJwks } from './jwks.ts';
import { MAX_OBO_LIFETIME_S, OboVerifier } from './obo-verify.ts';
import { approveByPush } from './verify-push.ts';
import { onWire } from '../wire-time.ts';
import { TimeLimit } from '../time-limit.ts';

export type { DelegationProfile, ExchangeClient, ExchangeRequest, Obo, TokenExchanger, TokenExchangerOptions } from './exchange-types.ts';
export { isNarrowerOrEqual } from './obo-checks.ts';
export { MAX_OBO_LIFETIME_S } from './obo-verify.ts';
export { authorizationDetailsDigest } from './verify-push.ts';

export const GRANT_TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const GRANT_JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
export const TOKEN_TYPE_ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
/** Answers fetch can give that carry no body (Fetch's null body statuses; it never gives a 1xx). */
const NULL_BODY_STATUSES = new Set([204, 205, 304]);
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
  const verifier = new OboVerifier({ delegation, scopeFor, clockSkewS: options.clockSkewS ?? 5, maxLifetimeS: options.maxOboLifetimeS ?? MAX_OBO_LIFETIME_S });
  const pollIntervalMs = options.stepUp?.pollIntervalMs ?? 1_000;
  const pollTimeoutMs = options.stepUp?.timeoutMs ?? 50_000;
  const callSignal = new AsyncLocalStorage<AbortSignal | undefined>();

  /**
   * Every request to the IdP carries the call's AbortSignal and a time-out. The answer is read here, in
   * full, within that time-out, which ends with it; what goes back to openid-client is the same answer
   * held in memory.
   */
  const fetchWithCallSignal = (url: string, init: RequestInit): Promise<Response> => {
    const limit = new TimeLimit(timeoutMs);
    const signals = [limit.signal];
    if (init.signal) signals.push(init.signal);
    const s = callSignal.getStore();
    if (s) signals.push(s);
    const signal = AbortSignal.any(signals);
    // Timed as the IdP's until its answer is read; the copy handed back is Countersign's own work.
    return onWire('idp', async () => {
      const r = await fetch(url, { ...init, signal, redirect: 'error' });
      return { r, body: NULL_BODY_STATUSES.has(r.status) ? null : await r.arrayBuffer() };
    })
      .then(({ r, body }) => new Response(body, { status: r.status, statusText: r.statusText, headers: r.headers }))
      .finally(() => limit.clear());
  };

  /**
   * What the exchange reads of a configuration's metadata, read once: openid-client's `serverMetadata()`
   * hands out a deep copy at every call.
   */
  const metadata = new WeakMap<oidc.Configuration, { issuer: string; jwksUri: string | undefined }>();
  const metadataOf = (c: oidc.Configuration): { issuer: string; jwksUri: string | undefined } => {
    let m = metadata.get(c);
    if (!m) {
      const { issuer, jwks_uri: jwksUri } = c.serverMetadata();
      m = { issuer, jwksUri };
      metadata.set(c, m);
    }
    return m;
  };

  const prepare = (c: oidc.Configuration): oidc.Configuration => {
    if (insecure) oidc.allowInsecureRequests(c);
    c[oidc.customFetch] = fetchWithCallSignal;
    // No timer of openid-client's own (an AbortSignal.timeout per request, left to fire long after):
    // fetchWithCallSignal bounds each request with a limit that ends with it.
    c.timeout = 0;
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
  // public JWK it embeds and the IdP's DPoP nonce from one call to the next.
  const handles = new WeakMap<webcrypto.CryptoKeyPair, { c: oidc.Configuration; handle: oidc.DPoPHandle }>();
  const dpopHandle = (c: oidc.Configuration, pair: webcrypto.CryptoKeyPair): oidc.DPoPHandle => {
    const known = handles.get(pair);
    if (known?.c === c) return known.handle;
    const handle = oidc.getDPoPHandle(c, pair);
    handles.set(pair, { c, handle });
    return handle;
  };

  let jwks: IdpJwks | undefined;
  const keys = (c: oidc.Configuration): IdpJwks => {
    const uri = metadataOf(c).jwksUri;
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
    return verifier.verify(
      { token: response.access_token, tokenType, issuer: metadataOf(c).issuer, clientId, keys: () => keys(c), steppedUp },
      request,
      (fn) => callSignal.run(request.signal, fn),
    );
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
        issuer: metadataOf(c).issuer,
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
