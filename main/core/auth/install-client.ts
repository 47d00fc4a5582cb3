/**
 * The OAuth client this install is, found at discovery: the configured public client, or, where the
 * IdP offers dynamic registration (RFC 7591), this install's own confidential client authenticating
 * with private_key_jwt (RFC 7523 §2.2). Registered once; its id and private key stay in the keychain,
 * so a restart uses the same client and the refresh token issued to it stays valid.
 */
import { webcrypto } from 'node:crypto';
import { calculateJwkThumbprint } from 'jose';
import * as oidc from 'openid-client';
import type { AppError } from '../../../common/errors.ts';
import { challengeAnswer, idpError, IDP_STEPS, refusalError } from '../idp/errors.ts';
import type { ExchangeClient } from '../idp/token-exchange.ts';
import { onWire } from '../wire-time.ts';
import type { IdpConfig } from './config.ts';
import type { AuthKeychain } from './keychain.ts';

/** The client sign-in uses; the token exchange must present the same one (it obtained the subject token). */
export interface InstallClient extends ExchangeClient {
  /** `none`: the configured public client. `private_key_jwt`: this install's registered client. */
  authMethod: 'none' | 'private_key_jwt';
}

const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256' };
const PRIVATE_KEY_JWT = { token_endpoint_auth_method: 'private_key_jwt', token_endpoint_auth_signing_alg: 'ES256' };

const WANTED_GRANTS = [
  'authorization_code',
  'refresh_token',
  'urn:ietf:params:oauth:grant-type:token-exchange',
  'urn:ietf:params:oauth:grant-type:device_code',
  'urn:ietf:params:oauth:grant-type:jwt-bearer',
];

/**
 * The grants to register: what Countersign uses, less what the IdP says it does not support
 * (RFC 8414 `grant_types_supported`), since an IdP refuses a registration naming an unknown grant.
 */
function registrationGrantTypes(meta: oidc.ServerMetadata): string[] {
  const supported = meta.grant_types_supported;
  if (!supported) return [...WANTED_GRANTS];
  return WANTED_GRANTS.filter((g) => g === 'authorization_code' || g === 'refresh_token' || supported.includes(g));
}

/** RFC 7591 §3.2.2: the IdP refused the registration. Fail closed: no fallback to the public client. */
async function registrationError(error: unknown): Promise<AppError> {
  const answer = await challengeAnswer(error);
  return answer && answer.status < 500 ? refusalError(IDP_STEPS.registration, answer, error) : idpError(error, IDP_STEPS.registration);
}

/** Discovers the IdP and settles which client this install signs in as. Throws what openid-client throws. */
export async function discoverInstallClient(
  c: IdpConfig,
  keychain: AuthKeychain,
  log: (line: string) => void,
): Promise<{ config: oidc.Configuration; client: InstallClient }> {
  const execute = c.allowInsecureHttpForLoopbackOnly ? [oidc.allowInsecureRequests] : [];
  const issuer = new URL(c.issuer);
  const discovered = await oidc.discovery(issuer, c.clientId, undefined, oidc.None(), { execute, timeout: c.requestTimeoutSeconds });
  const meta = discovered.serverMetadata();
  let config = discovered;
  let client: InstallClient = { clientId: c.clientId, authMethod: 'none', clientAuth: oidc.None(), serverMetadata: meta };
  if (c.dynamicRegistration === 'when-offered' && meta.registration_endpoint) {
    const registered = (await restoredClient(keychain, log)) ?? (await register(issuer, meta, c, keychain, execute, log));
    config = new oidc.Configuration(meta, registered.clientId, PRIVATE_KEY_JWT, registered.clientAuth);
    for (const e of execute) e(config);
    client = { clientId: registered.clientId, authMethod: 'private_key_jwt', clientAuth: registered.clientAuth, clientMetadata: PRIVATE_KEY_JWT, serverMetadata: meta };
  }
  config.timeout = c.requestTimeoutSeconds;
  config[oidc.customFetch] = (url, init) => onWire('idp', () => fetch(url, init));
  return { config, client };
}

type Registered = { clientId: string; clientAuth: oidc.ClientAuth };

async function restoredClient(keychain: AuthKeychain, log: (line: string) => void): Promise<Registered | null> {
  const stored = await keychain.client();
  if (stored && stored !== 'unreadable') {
    try {
      const key = await webcrypto.subtle.importKey('jwk', stored.jwk, EC_P256, false, ['sign']);
      return { clientId: stored.client_id, clientAuth: oidc.PrivateKeyJwt({ key, kid: stored.jwk.kid }) };
    } catch {
      // a key that does not import is as unreadable as one that does not parse
    }
  }
  if (stored === null) {
    // None kept: a first start, or the entry was deleted. Only a deleted one leaves a session behind,
    // signed in as the client that is gone, and it goes as with an unreadable entry.
    if ((await keychain.session()) === null) return null;
    log('auth: no client registration is kept in the keychain, but a session is; registering this install again and dropping the session');
  } else {
    // Unreadable (damaged or from an older format): register again.
    log('auth: the client registration kept in the keychain is unreadable; registering this install again');
  }
  // A session signed in as the old client cannot be refreshed by the new one (its refresh token is not
  // the new client's to send), so it goes too and the person signs in again.
  await keychain.delete('session');
  return null;
}

async function register(
  issuer: URL,
  meta: oidc.ServerMetadata,
  c: IdpConfig,
  keychain: AuthKeychain,
  execute: Array<(c: oidc.Configuration) => void>,
  log: (line: string) => void,
): Promise<Registered> {
  const pair = (await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const exported = await webcrypto.subtle.exportKey('jwk', pair.publicKey);
  const kid = await calculateJwkThumbprint(exported as Parameters<typeof calculateJwkThumbprint>[0]);
  // RFC 7591 §3: an IdP that does not register anonymously (Keycloak's default) wants an initial
  // access token. An administrator provisions it into the keychain; it is used once, then removed.
  const initialAccessToken = await keychain.registrationToken();
  let registered: oidc.Configuration;
  try {
    registered = await oidc.dynamicClientRegistration(
      issuer,
      {
        client_name: 'Countersign',
        application_type: 'native',
        redirect_uris: ['http://127.0.0.1/callback'],
        response_types: ['code'],
        grant_types: registrationGrantTypes(meta),
        ...PRIVATE_KEY_JWT,
        require_auth_time: true,
        jwks: { keys: [{ ...exported, kid, alg: 'ES256', use: 'sig' }] },
      } as unknown as Partial<oidc.ClientMetadata>,
      oidc.PrivateKeyJwt({ key: pair.privateKey, kid }),
      { execute, timeout: c.requestTimeoutSeconds, ...(initialAccessToken ? { initialAccessToken } : {}) },
    );
  } catch (error) {
    throw await registrationError(error);
  }
  const clientId = registered.clientMetadata().client_id;
  const jwk = { ...(await webcrypto.subtle.exportKey('jwk', pair.privateKey)), kid };
  await keychain.setClient({ client_id: clientId, jwk });
  if (initialAccessToken) await keychain.delete('registration-token');
  log(`auth: registered this install as client ${clientId}${initialAccessToken ? ' with an initial access token' : ''}`);
  // From here on the private key is held non-extractable; the keychain has the only exportable copy.
  const key = await webcrypto.subtle.importKey('jwk', jwk, EC_P256, false, ['sign']);
  return { clientId, clientAuth: oidc.PrivateKeyJwt({ key, kid }) };
}
