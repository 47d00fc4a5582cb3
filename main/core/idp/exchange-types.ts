/**
 * The token exchange's shapes: how an exchanger is set up, what a call asks of it, and the checked OBO
 * it gives back (./token-exchange.ts makes exchanges, ./obo-verify.ts checks what comes back).
 */
import type { webcrypto } from 'node:crypto';
import type * as oidc from 'openid-client';
import type { AuthorizationDetail } from '../connectors/types.ts';

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
  /** `rar` (the default) or `scopes`; see ./token-exchange.ts. */
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
