/**
 * The grants sign-in runs at the IdP through openid-client: Authorization Code + PKCE in the system
 * browser over a loopback redirect (RFC 8252, RFC 7636; pushed, RFC 9126, for a registered client),
 * the device authorization grant (RFC 8628), refresh, and revocation (RFC 7009). Each carries the
 * configured `resource` and, when the IdP binds tokens, the install's DPoP key. What they throw is
 * openid-client's; the caller maps it (main/core/idp/errors.ts).
 */
import type { webcrypto } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK } from 'jose';
import * as oidc from 'openid-client';
import { AppError } from '../../../common/errors.ts';
import type { OpenExternal, UserIdentity } from '../ports.ts';
import type { IdpConfig } from './config.ts';
import type { InstallClient } from './install-client.ts';
import { startLoopbackListener } from './loopback.ts';

/** A sign-in as the UI or a step-up asks for it. */
export interface SignInOptions {
  signal?: AbortSignal;
  /** Overrides the service's opener for this sign-in. */
  openExternal?: OpenExternal;
  /** `browser`: RFC 8252 loopback redirect. `device`: RFC 8628, for a browser on another machine. */
  mode?: 'browser' | 'device';
  /** Step-up (RFC 9470 §4): the authentication context and maximum age the login must meet. */
  acrValues?: string;
  maxAge?: number;
  prompt?: 'login';
}

/** The signed-in person as the ID token names them: only `sub`, `name` and `email`, each checked. */
export function userOf(claims: Record<string, unknown>): UserIdentity {
  const user: UserIdentity = { sub: String(claims.sub) };
  if (typeof claims.name === 'string') user.name = claims.name;
  if (typeof claims.email === 'string') user.email = claims.email;
  return user;
}

/**
 * The ID token a sign-in returned, checked before the session takes it: present, at the level a
 * step-up asked for, and, for a step-up of a session, naming the same person.
 */
export function checkSignInClaims(claims: oidc.IDToken | undefined, options: Pick<SignInOptions, 'acrValues'>, steppingUpSub: string | undefined): oidc.IDToken {
  if (!claims) throw new AppError('IDP_BAD_RESPONSE', 'Your identity provider did not return an ID token.');
  if (options.acrValues && !options.acrValues.split(' ').includes(String(claims.acr))) {
    throw new AppError('IDP_STEP_UP_DENIED', 'The new sign-in did not reach the authentication level that was asked for.');
  }
  if (steppingUpSub !== undefined && steppingUpSub !== claims.sub) {
    throw new AppError('IDP_STEP_UP_DENIED', 'The step-up sign-in was made as a different user; the session is unchanged.');
  }
  return claims;
}

/** What every grant needs: the IdP, the client and DPoP key found at discovery, and the configuration. */
export interface GrantContext {
  idp: IdpConfig;
  config: oidc.Configuration;
  client: InstallClient | undefined;
  dpop: webcrypto.CryptoKeyPair | undefined;
}

export interface BrowserGrantOptions {
  open: OpenExternal;
  /** Shows where the person signs in; the app displays it when no browser could be opened. */
  showing(where: { url: string; userCode?: string }): void;
  log(line: string): void;
  acrValues?: string;
  maxAge?: number;
  prompt?: 'login';
}

const resource = (g: GrantContext): Record<string, string> => (g.idp.resource ? { resource: g.idp.resource } : {});
const dpopOptions = (g: GrantContext): { DPoP?: oidc.DPoPHandle } => (g.dpop ? { DPoP: oidc.getDPoPHandle(g.config, g.dpop) } : {});

export async function browserGrant(g: GrantContext, options: BrowserGrantOptions, signal: AbortSignal): Promise<oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers> {
  const { config } = g;
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const nonce = oidc.randomNonce();
  const listener = await startLoopbackListener({ expectedState: state, timeoutMs: g.idp.signInTimeoutSeconds * 1000, signal });
  try {
    const params: Record<string, string> = {
      redirect_uri: listener.redirectUri,
      scope: g.idp.scopes.join(' '),
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      nonce,
      ...resource(g),
    };
    if (options.acrValues) params.acr_values = options.acrValues;
    if (options.maxAge !== undefined) params.max_age = String(options.maxAge);
    if (options.prompt || options.acrValues || options.maxAge !== undefined) params.prompt = 'login';
    if (g.dpop) params.dpop_jkt = await calculateJwkThumbprint(await exportJWK(g.dpop.publicKey));
    // RFC 9126: a registered client pushes its request over the authenticated back channel, so the
    // browser carries only a reference to it, and an IdP that forgot the client says so now.
    const pushed = g.client?.authMethod === 'private_key_jwt' && config.serverMetadata().pushed_authorization_request_endpoint;
    const url = pushed ? await oidc.buildAuthorizationUrlWithPAR(config, params, { signal } as Parameters<typeof oidc.buildAuthorizationUrlWithPAR>[2]) : oidc.buildAuthorizationUrl(config, params);
    options.showing({ url: url.href });
    await options.open(url.href).catch(() => {
      options.log('auth: the browser could not be opened; the sign-in address is shown in the app');
      // A pushed request lives a minute or so (RFC 9126 §2.2), too short for an address a person
      // copies to a browser by hand: the address shown is the plain one, which lasts the sign-in.
      if (pushed) options.showing({ url: oidc.buildAuthorizationUrl(config, params).href });
    });
    const callbackUrl = await listener.callback;
    return await oidc.authorizationCodeGrant(
      config,
      callbackUrl,
      { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true, ...(options.maxAge !== undefined ? { maxAge: options.maxAge } : {}) },
      resource(g),
      { ...dpopOptions(g), signal } as oidc.AuthorizationCodeGrantOptions,
    );
  } finally {
    await listener.close();
  }
}

export async function deviceGrant(
  g: GrantContext,
  showing: BrowserGrantOptions['showing'],
  signal: AbortSignal,
): Promise<oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers> {
  if (!g.config.serverMetadata().device_authorization_endpoint) {
    throw new AppError('SIGN_IN_FAILED', 'Your identity provider does not offer sign-in with a device code; sign in in a browser on this machine.');
  }
  const start = await oidc.initiateDeviceAuthorization(g.config, { scope: g.idp.scopes.join(' '), ...resource(g) });
  showing({ url: start.verification_uri_complete ?? start.verification_uri, userCode: start.user_code });
  const timeout = AbortSignal.timeout(Math.min(g.idp.signInTimeoutSeconds, start.expires_in) * 1000);
  try {
    return await oidc.pollDeviceAuthorizationGrant(g.config, start, resource(g), { signal: AbortSignal.any([signal, timeout]), ...dpopOptions(g) });
  } catch (error) {
    if (timeout.aborted && !signal.aborted) throw new AppError('SIGN_IN_TIMEOUT', 'The device sign-in took too long and was abandoned.', { cause: error });
    throw error;
  }
}

export function refreshGrant(g: GrantContext, refreshToken: string): Promise<oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers> {
  return oidc.refreshTokenGrant(g.config, refreshToken, resource(g), dpopOptions(g));
}

export function revokeRefreshToken(g: Pick<GrantContext, 'config'>, refreshToken: string): Promise<void> {
  return oidc.tokenRevocation(g.config, refreshToken, { token_type_hint: 'refresh_token' });
}
