/**
 * What an OBO must be before anything uses it: signed by the IdP (its JWKS), for the expected
 * issuer and audience, `exp` at most 60 s away, a `jti` never seen before, the signed-in user as its
 * subject, fitting the delegation profile (./obo-checks.ts) and, when asked, bound to the DPoP key.
 *
 * The `jti` replay check is per process: each verifier remembers the jtis it accepted until their
 * `exp` (at most 60 s), in memory. A restarted core, a second exchanger or another install does not
 * see them. It catches an IdP (or something between us and it) handing the same OBO out twice to this
 * core; the guarantees against replay at the targets are the IdP's jti uniqueness, the 60 s lifetime,
 * and the targets' own single-use checks (the lab upstream refuses a used jti; Vault keeps no jti
 * record, docs/vault.md, so its roles' leeways must stay small).
 */
import type { webcrypto } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, jwtVerify, type JWTPayload } from 'jose';
import { AppError } from '../../../common/errors.ts';
import type { DelegationProfile, ExchangeRequest, Obo } from './exchange-types.ts';
import type { IdpJwks } from './jwks.ts';
import { fitsRar, fitsScopes } from './obo-checks.ts';

/** RFC 8693 §2.2.1 and the shared contract: an OBO lives at most this long. */
export const MAX_OBO_LIFETIME_S = 60;

export interface OboVerifierOptions {
  delegation: DelegationProfile;
  /** Under `scopes`, the scope asked for a credential. */
  scopeFor: (credential: string) => string;
  /** Clock skew tolerated on `exp`/`iat`, seconds. */
  clockSkewS: number;
  /** The longest OBO accepted, seconds. */
  maxLifetimeS: number;
}

/** The OBO token in a token response, and where it came from. */
export interface OboToVerify {
  token: string;
  tokenType: Obo['tokenType'];
  issuer: string;
  /** The client the exchange authenticated as: the actor the OBO must name. */
  clientId: string;
  /** The IdP's signing keys (asked inside the check, so a missing JWKS is one of its failures). */
  keys: () => IdpJwks;
  steppedUp: boolean;
}

export class OboVerifier {
  readonly #o: OboVerifierOptions;
  /** jti → exp of every OBO this verifier accepted: a per-process replay check (see the module comment). */
  readonly #seenJtis = new Map<string, number>();
  readonly #thumbprints = new WeakMap<webcrypto.CryptoKey, Promise<string>>();

  constructor(options: OboVerifierOptions) {
    this.#o = options;
  }

  /** `inCall` runs the signature check under the call's AbortSignal, which a JWKS fetch carries. */
  async verify(t: OboToVerify, request: ExchangeRequest, inCall: <T>(fn: () => Promise<T>) => Promise<T>): Promise<Obo> {
    const { delegation, clockSkewS: skew, maxLifetimeS: maxLifetime } = this.#o;
    const audience = request.audience ?? request.resource;
    let payload: JWTPayload;
    try {
      ({ payload } = await inCall(() =>
        jwtVerify(t.token, t.keys(), {
          issuer: t.issuer,
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
    // Oldest first (a Map keeps insertion order, which follows `exp` under one IdP's lifetime); stops at
    // the first still alive, so a call walks only what has just expired. One that expired behind a
    // longer-lived one stays until it goes: remembered a little longer, refused a little longer.
    for (const [seen, until] of this.#seenJtis) {
      if (until >= now - skew) break;
      this.#seenJtis.delete(seen);
    }
    if (this.#seenJtis.has(jti)) throw new AppError('OBO_INVALID', 'The identity provider returned an OBO token already used (repeated jti).');
    this.#seenJtis.set(jti, exp);
    // Okta's custom authorization servers put the login in an access token's `sub` and the user id (the ID token's `sub`) in `uid`.
    const sameUser = payload.sub === request.expectedSub || (delegation === 'scopes' && payload.uid === request.expectedSub);
    if (request.expectedSub !== undefined && !sameUser) {
      throw new AppError('OBO_INVALID', 'The OBO token names a different user than the one signed in.');
    }
    const fitted =
      delegation === 'scopes'
        ? fitsScopes(payload, t.clientId, { scope: this.#o.scopeFor(request.credential!), credential: request.credential!, authorizationDetails: request.authorizationDetails })
        : fitsRar(payload, t.clientId, request.authorizationDetails);
    if (request.dpopKeyPair) {
      const jkt = await this.#thumbprint(request.dpopKeyPair.publicKey);
      if ((payload.cnf as { jkt?: unknown } | undefined)?.jkt !== jkt) throw new AppError('OBO_INVALID', 'The OBO token is not bound to this DPoP key.');
    }
    return {
      token: t.token,
      tokenType: t.tokenType,
      jti,
      sub: payload.sub as string,
      exp,
      iat,
      ...fitted,
      delegation,
      ...(typeof payload.acr === 'string' ? { acr: payload.acr } : {}),
      ...(Array.isArray(payload.amr) ? { amr: payload.amr.map(String) } : {}),
      steppedUp: t.steppedUp,
    };
  }

  /** The DPoP key's thumbprint, computed once per key. */
  #thumbprint(key: webcrypto.CryptoKey): Promise<string> {
    let t = this.#thumbprints.get(key);
    if (!t) {
      t = exportJWK(key).then((jwk) => calculateJwkThumbprint(jwk));
      t.catch(() => this.#thumbprints.delete(key));
      this.#thumbprints.set(key, t);
    }
    return t;
  }
}
