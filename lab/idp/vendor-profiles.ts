/**
 * How each identity provider answers a token exchange, in one place, so the lab can speak as each of
 * them (`npm run lab -- --idp-profile keycloak|okta|verify`) and the whole chain is tested against
 * what that vendor documents: which claims the OBO carries and which it lacks, the error each refusal
 * comes back as, which clients may exchange, and how scopes are asked and granted. Each behaviour
 * names the page (or source file) it comes from; where the vendor's documentation is silent, the
 * comment says so and what the lab does instead.
 */
import type { JWTPayload } from 'jose';

export const LAB_IDP_PROFILES = ['lab', 'keycloak', 'okta', 'verify'] as const;
export type LabIdpProfile = (typeof LAB_IDP_PROFILES)[number];

/** A refusal as the vendor writes it: HTTP status and the RFC 6749 §5.2 body. */
export interface VendorError {
  status: number;
  error: string;
  description: string;
}

/** What the lab knows about the exchange when it writes the OBO's claims. */
export interface OboFacts {
  issuer: string;
  sub: string;
  username: string;
  email: string;
  clientId: string;
  audience: string;
  scope: string;
  vaultRole: string;
  jti: string;
  iat: number;
  exp: number;
  acr?: string;
  authTime?: number;
  jkt?: string;
}

export interface VendorProfile {
  name: LabIdpProfile;
  title: string;
  /** Countersign's `idp.delegation` that fits this vendor. */
  delegation: 'rar' | 'scopes';
  /** Pages (and source files) the behaviours below come from. */
  sources: string[];
  /** A client without credentials (token_endpoint_auth_method none) asking for an exchange: refused with this, or allowed. */
  publicClientExchange: VendorError | 'allowed';
  /** Under `scopes`: the exchange without any `scope` parameter. */
  missingScope?: VendorError;
  /** Under `scopes`: a scope the authorization server does not know. */
  unknownScope?: (scope: string) => VendorError;
  /** Under `scopes`: a known scope the user may not have: refused with this, or left out of the token. */
  scopeNotGranted?: VendorError | 'omitted';
  /** Under `scopes`: an audience no scope of the request puts in the token. */
  audienceUnavailable?: (audience: string) => VendorError;
  /** Under `scopes`: the OBO's claims (the lab adds `cnf` for DPoP). */
  oboClaims?: (f: OboFacts) => JWTPayload;
  /** Under `scopes`: how long the OBO lives, the shortest the vendor lets an administrator set. */
  oboLifetimeS?: number;
  /**
   * Under `scopes`: who may make the exchange. `same-client`: only the client the subject token was
   * issued to. `service-app`: a confidential app an administrator created, exchanging a token another
   * app of the same authorization server got (the user's sign-in app).
   */
  exchanger?: 'same-client' | 'service-app';
  /** False: registration (RFC 7591) is an administrator's API, refused without its token. */
  openRegistration?: boolean;
  /** Under `scopes`: the token response besides `access_token`, `expires_in` and `token_type`. */
  responseExtras?: (f: OboFacts) => Record<string, unknown>;
  /** How Vault's jwt role binds an OBO of this vendor (lab/vault/lab-config.ts): the claims it yields. */
  vaultBinding: (
    vaultRole: string,
    scopePrefix: string,
  ) => { bound_claims: Record<string, unknown>; claim_mappings: Record<string, string> };
}

const KEYCLOAK_TE = 'https://www.keycloak.org/securing-apps/token-exchange';
const KEYCLOAK_SOURCE =
  'https://github.com/keycloak/keycloak/blob/main/services/src/main/java/org/keycloak/protocol/oidc/tokenexchange/StandardTokenExchangeProvider.java';
const KEYCLOAK_DELEGATION = 'https://github.com/keycloak/keycloak/issues/38279';
const OKTA_OBO = 'https://developer.okta.com/docs/guides/set-up-token-exchange/main/';
const OKTA_CLAIMS = 'https://developer.okta.com/docs/api/oauth2/';
const OKTA_POLICIES = 'https://help.okta.com/en-us/Content/Topics/Security/api-config-access-policies.htm';
const OKTA_LIFETIME =
  'https://support.okta.com/help/s/article/okta-ai-agent-access-token-lifetimes-cannot-be-set-below-five-minutes';
const OKTA_KEYS = 'https://developer.okta.com/docs/guides/implement-grant-type/clientcreds/main/';
const VERIFY_TE = 'https://docs.verify.ibm.com/verify/docs/token-exchange';
const VERIFY_MFA =
  'https://www.ibm.com/docs/en/security-verify?topic=grant-performing-multi-factor-authentication-mfa';

/** The lab's own behaviour (RAR, `act`, Verify-style push): what Countersign's `rar` profile was written for. */
const LAB: VendorProfile = {
  name: 'lab',
  title: 'the lab (RFC 8693 + RFC 9396, act, Verify-style push)',
  delegation: 'rar',
  sources: ['https://www.rfc-editor.org/rfc/rfc8693', 'https://www.rfc-editor.org/rfc/rfc9396'],
  publicClientExchange: 'allowed',
  vaultBinding: (role) => ({
    bound_claims: { vault_role: role },
    claim_mappings: { jti: 'obo_jti', client_id: 'client_id' },
  }),
};

/**
 * Keycloak 26.2+ standard token exchange (V2). From Keycloak's documentation and
 * StandardTokenExchangeProvider.java: a public client may not exchange (`invalid_client`, 400,
 * "Public client is not allowed to exchange token"); the `scope` parameter must name client scopes
 * of the requesting client (`invalid_scope`, "Invalid scopes: …"); a requested `audience` must end up
 * in the token, through a client scope's audience mapper (`invalid_request`, "Requested audience not
 * available: …"); the response carries `issued_token_type` and `scope`. The token is Keycloak's
 * usual access token: `azp` is the requesting client, `scope` a space-delimited string, `typ`
 * Bearer; no `act` (delegation is not part of the standard exchange, see Keycloak issue 38279) and no
 * `authorization_details`. `vault_role` comes from a hardcoded-claim mapper on the `vault:<role>`
 * client scope. A scope the user may not have: the lab leaves it out of the token and the response,
 * as a client scope gated by role scope mappings would; how a given realm refuses it depends on its
 * setup, and Countersign reads a scope missing from the response as the IdP's refusal.
 */
const KEYCLOAK: VendorProfile = {
  name: 'keycloak',
  title: 'Keycloak 26.2+ standard token exchange',
  delegation: 'scopes',
  sources: [KEYCLOAK_TE, KEYCLOAK_SOURCE, KEYCLOAK_DELEGATION],
  publicClientExchange: {
    status: 400,
    error: 'invalid_client',
    description: 'Public client is not allowed to exchange token',
  },
  // Keycloak accepts an exchange without `scope` (the client's default scopes); no vault scope then
  // means no vault_role: the lab answers with the scope check below instead of a token Vault refuses.
  unknownScope: (scope) => ({ status: 400, error: 'invalid_scope', description: `Invalid scopes: ${scope}` }),
  scopeNotGranted: 'omitted',
  // Advanced → Access Token Lifespan on the client, in minutes: 1 is the shortest.
  oboLifetimeS: 60,
  exchanger: 'same-client',
  // Registration with an initial access token, which Countersign supports (docs/identity-providers.md).
  openRegistration: true,
  audienceUnavailable: (audience) => ({
    status: 400,
    error: 'invalid_request',
    description: `Requested audience not available: ${audience}`,
  }),
  oboClaims: (f) => ({
    exp: f.exp,
    iat: f.iat,
    ...(f.authTime ? { auth_time: f.authTime } : {}),
    jti: f.jti,
    iss: f.issuer,
    aud: f.audience,
    sub: f.sub,
    typ: 'Bearer',
    azp: f.clientId,
    ...(f.acr ? { acr: f.acr } : {}),
    scope: f.scope,
    preferred_username: f.username,
    vault_role: f.vaultRole,
  }),
  responseExtras: (f) => ({ refresh_expires_in: 0, 'not-before-policy': 0, scope: f.scope }),
  vaultBinding: (role) => ({
    bound_claims: { vault_role: role },
    claim_mappings: { jti: 'obo_jti', azp: 'client_id' },
  }),
};

/**
 * Okta On-Behalf-Of Token Exchange on a custom authorization server (API Access Management). From
 * Okta's guide and its access token reference: the exchange is made by an app with client
 * credentials (a service app in Okta's guide), with `scope` required; access policy rules decide
 * which scopes a user gets, and a request no rule allows is refused (`access_denied`, "Policy
 * evaluation failed for this request, please check the policy configurations."); an unknown scope is
 * `invalid_scope`. The access token carries `ver`, `cid` (the client), `uid` (the user's id), `sub`
 * (the user's login, not the ID token's `sub`), `scp` as a list, and custom claims such as
 * `vault_role` (an authorization-server claim whose value depends on the granted scope); no `act`,
 * no `azp`, no `authorization_details`. Lifetimes are set per rule in whole minutes, 5 at the least,
 * and a token inline hook cannot go below that either (Okta support, "Okta AI Agent Access Token
 * Lifetimes Cannot Be Set Below Five Minutes"): the lab issues 300 s, which Countersign accepts only
 * with `idp.allowLongLivedOboUpToSeconds`. The exchange is made by a service app (confidential, here
 * `private_key_jwt` with a key the administrator adds to the app) for a token the user's native app
 * got from the same authorization server; the native app itself is public and may not exchange.
 * Registration (`/oauth2/v1/clients`) is an administrator's API, not open. The error wording below is
 * the lab's rendering of Okta's codes where Okta's pages show no exact text.
 */
const OKTA: VendorProfile = {
  name: 'okta',
  title: 'Okta On-Behalf-Of Token Exchange (custom authorization server)',
  delegation: 'scopes',
  sources: [OKTA_OBO, OKTA_CLAIMS, OKTA_POLICIES, OKTA_LIFETIME, OKTA_KEYS],
  publicClientExchange: {
    status: 400,
    error: 'unauthorized_client',
    description: 'The client is not authorized to use the provided grant type.',
  },
  missingScope: {
    status: 400,
    error: 'invalid_request',
    description: "The 'scope' parameter is required for token exchange.",
  },
  unknownScope: () => ({
    status: 400,
    error: 'invalid_scope',
    description: 'One or more scopes are not configured for the authorization server resource.',
  }),
  oboLifetimeS: 300,
  exchanger: 'service-app',
  openRegistration: false,
  scopeNotGranted: {
    status: 400,
    error: 'access_denied',
    description: 'Policy evaluation failed for this request, please check the policy configurations.',
  },
  audienceUnavailable: () => ({
    status: 400,
    error: 'invalid_target',
    description: "The 'audience' parameter is not the audience of this authorization server.",
  }),
  oboClaims: (f) => ({
    ver: 1,
    jti: `AT.${f.jti}`,
    iss: f.issuer,
    aud: f.audience,
    iat: f.iat,
    exp: f.exp,
    cid: f.clientId,
    uid: f.sub,
    scp: [f.scope],
    ...(f.authTime ? { auth_time: f.authTime } : {}),
    sub: f.email,
    vault_role: f.vaultRole,
  }),
  responseExtras: (f) => ({ scope: f.scope }),
  // `scp` is a list: Vault matches a list claim when any element matches, so it can bind on the scope too.
  vaultBinding: (role, prefix) => ({
    bound_claims: { vault_role: role, scp: `${prefix}${role}` },
    claim_mappings: { jti: 'obo_jti', cid: 'client_id' },
  }),
};

/**
 * IBM Verify (SaaS): the token exchange of an OIDC application (or STS client), the `mfa_challenge`
 * step-up with the factors API and `returnJwt`, as the lab already does. Verify's pages do not
 * document RFC 9396 at the exchange: this profile is `rar` for a tenant that returns the RAR (check
 * yours, docs/identity-providers.md), with `act` and `client_id` as the lab writes them.
 */
const VERIFY: VendorProfile = {
  ...LAB,
  name: 'verify',
  title: 'IBM Verify token exchange (a tenant that returns authorization_details)',
  sources: [VERIFY_TE, VERIFY_MFA],
};

export const VENDOR_PROFILES: Record<LabIdpProfile, VendorProfile> = {
  lab: LAB,
  keycloak: KEYCLOAK,
  okta: OKTA,
  verify: VERIFY,
};

export function vendorProfile(name: string | undefined): VendorProfile {
  const profile = VENDOR_PROFILES[(name ?? 'lab') as LabIdpProfile];
  if (!profile) throw new Error(`unknown IdP profile ${name}: one of ${LAB_IDP_PROFILES.join(', ')}`);
  return profile;
}

/** The scope a `scopes` vendor grants for one Vault role; the lab's prefix is Countersign's default. */
export const LAB_SCOPE_PREFIX = 'vault:';
