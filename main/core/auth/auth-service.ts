import { createHash, webcrypto } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK } from 'jose';
import type { ExchangeClient } from '../idp/token-exchange.ts';
import * as oidc from 'openid-client';
import { AppError } from '../../../common/errors.ts';
import type { ErrorCode } from '../../../common/errors.ts';
import type { AuditSink, OpenExternal, SecretStore, StepUpChallenge, TokenSource, UserIdentity } from '../ports.ts';
import { parseIdpConfig } from './config.ts';
import type { IdpConfig, IdpConfigInput } from './config.ts';
import { challengeAnswer, idpError, IDP_STEPS, isClientRejected, isRefusal, refusalError } from '../idp/errors.ts';
import { startLoopbackListener } from './loopback.ts';
import { onWire } from '../wire-time.ts';

type CryptoKeyPair = webcrypto.CryptoKeyPair;

/** The session as the UI sees it. It never carries a token. */
export type AuthStatus =
  | { state: 'signed_out' }
  | { state: 'signing_in'; url: string; userCode?: string }
  | { state: 'signed_in'; user: UserIdentity; acr?: string; persistent: boolean }
  | { state: 'needs_sign_in'; code: ErrorCode; reason: string };

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

export interface AuthServiceOptions {
  config: IdpConfigInput | IdpConfig;
  secrets: SecretStore;
  openExternal: OpenExternal;
  audit?: AuditSink;
  log?: (line: string) => void;
  /** Tags audit records written while running against the local lab. */
  demo?: boolean;
}

interface StoredSession {
  refresh_token: string;
  user: UserIdentity;
  acr?: string;
}

interface StoredClient {
  client_id: string;
  jwk: webcrypto.JsonWebKey & { kid?: string };
}

/**
 * The OAuth client this install is: the configured public client, or the confidential client it
 * registered for itself (RFC 7591) authenticating with private_key_jwt (RFC 7523 §2.2). The token
 * exchange must present the same client that obtained the subject token.
 */
export interface InstallClient extends ExchangeClient {
  /** `none`: the configured public client. `private_key_jwt`: this install's registered client. */
  authMethod: 'none' | 'private_key_jwt';
}

const EXPIRY_MARGIN_MS = 30_000;

const CLIENT_FORGOTTEN =
  'Your identity provider no longer knows this Countersign install (its registration was removed or expired). Sign in again: the install registers anew.';

function sanitizeUser(claims: Record<string, unknown>): UserIdentity {
  const user: UserIdentity = { sub: String(claims.sub) };
  if (typeof claims.name === 'string') user.name = claims.name;
  if (typeof claims.email === 'string') user.email = claims.email;
  return user;
}

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

/** The stored client id and private key, or null when the entry cannot be used. */
async function readStoredClient(text: string, alg: webcrypto.EcKeyImportParams): Promise<{ clientId: string; key: webcrypto.CryptoKey; kid?: string } | null> {
  try {
    const { client_id, jwk } = JSON.parse(text) as StoredClient;
    if (typeof client_id !== 'string' || client_id.length === 0 || typeof jwk?.d !== 'string') return null;
    const key = await webcrypto.subtle.importKey('jwk', jwk, alg, false, ['sign']);
    return { clientId: client_id, key, ...(typeof jwk.kid === 'string' ? { kid: jwk.kid } : {}) };
  } catch {
    return null;
  }
}

/** RFC 7591 §3.2.2: the IdP refused the registration. Fail closed: no fallback to the public client. */
async function registrationError(error: unknown): Promise<AppError> {
  const answer = await challengeAnswer(error);
  return answer && answer.status < 500 ? refusalError(IDP_STEPS.registration, answer, error) : idpError(error, IDP_STEPS.registration);
}

/**
 * Sign-in for the core: OpenID Connect Authorization Code + PKCE in the system browser (RFC 8252,
 * RFC 7636), or the device authorization grant (RFC 8628), through openid-client. The refresh token
 * lives in the SecretStore (the OS keychain), the access token only in this process's memory. It is
 * the TokenSource the broker exchanges from: refresh with rotation, one refresh in flight whatever
 * the number of callers, and a refused refresh moves the session to `needs_sign_in`.
 */
export class AuthService implements TokenSource {
  readonly config: IdpConfig;
  readonly #secrets: SecretStore;
  readonly #openExternal: OpenExternal;
  readonly #audit: AuditSink | undefined;
  readonly #log: (line: string) => void;
  readonly #demo: boolean;
  readonly #ns: string;
  readonly #statusListeners = new Set<(s: AuthStatus) => void>();
  readonly #signOutListeners = new Set<(user: UserIdentity | null) => void>();
  #status: AuthStatus = { state: 'signed_out' };
  #oidc: Promise<oidc.Configuration> | undefined;
  #client: InstallClient | undefined;
  #dpop: CryptoKeyPair | undefined;
  #session: StoredSession | undefined;
  #access: { token: string; expiresAt: number } | undefined;
  #refreshing: Promise<string> | undefined;
  #signInAbort: AbortController | undefined;

  private constructor(options: AuthServiceOptions, config: IdpConfig) {
    this.config = config;
    this.#secrets = options.secrets;
    this.#openExternal = options.openExternal;
    this.#audit = options.audit;
    this.#log = options.log ?? (() => {});
    this.#demo = options.demo ?? false;
    this.#ns = createHash('sha256').update(config.issuer).digest('hex').slice(0, 12);
  }

  /**
   * Builds the service and restores a session kept in the keychain (one refresh at the IdP proves
   * it still stands). An IdP that cannot be reached leaves the session at `needs_sign_in`.
   */
  static async create(options: AuthServiceOptions): Promise<AuthService> {
    const config = parseIdpConfig(options.config);
    const service = new AuthService(options, config);
    if (config.allowInsecureHttpForLoopbackOnly) {
      service.#log('auth: allowInsecureHttpForLoopbackOnly is on: plain http is permitted to a loopback identity provider (the lab only)');
    }
    if (options.secrets.kind === 'memory') service.#log('auth: no OS keychain: the sign-in will not be kept between starts');
    await service.#restore();
    return service;
  }

  status(): AuthStatus {
    return structuredClone(this.#status);
  }

  onStatus(listener: (status: AuthStatus) => void): () => void {
    this.#statusListeners.add(listener);
    return () => this.#statusListeners.delete(listener);
  }

  /** Told after a sign-out, so approval caches and others can forget what belonged to the session. */
  onSignOut(listener: (user: UserIdentity | null) => void): () => void {
    this.#signOutListeners.add(listener);
    return () => this.#signOutListeners.delete(listener);
  }

  user(): UserIdentity | null {
    return this.#session ? { ...this.#session.user } : null;
  }

  dpopKeyPair(): CryptoKeyPair | undefined {
    return this.#dpop;
  }

  /**
   * The client sign-in uses, for the token exchange to authenticate as (the lab, like Keycloak's
   * standard token exchange, refuses a subject token issued to another client). Registers this
   * install first when dynamic registration is on and the IdP offers it; a refused registration
   * throws CLIENT_REGISTRATION_FAILED and never falls back to the public client. Resolves to the
   * same object for as long as the client does not change.
   */
  async client(): Promise<InstallClient> {
    await this.#discover();
    return this.#client!;
  }

  /**
   * The IdP answered `invalid_client` to a request this install's registered client authenticated
   * (the token exchange, a refresh): an administrator deleted the registration, or the IdP expired
   * it. The registration and the session issued to it are worth nothing now; both are dropped, and
   * the next sign-in registers this install again. A configured client is never forgotten.
   */
  async clientRejected(): Promise<void> {
    if (this.#client?.authMethod !== 'private_key_jwt') return;
    await this.#forgetClient();
    this.#setStatus({ state: 'needs_sign_in', code: 'CLIENT_REGISTRATION_FAILED', reason: CLIENT_FORGOTTEN });
  }

  /**
   * Removes everything this install keeps in the keychain for this IdP (its registration, the session,
   * the DPoP key) and forgets them in memory: for an IdP that goes away with its data, like the lab
   * `npm run demo` starts afresh each time, so its entries do not pile up in the person's keychain.
   */
  async forgetIdp(): Promise<void> {
    this.#signInAbort?.abort();
    this.#oidc = undefined;
    this.#client = undefined;
    this.#session = undefined;
    this.#access = undefined;
    this.#dpop = undefined;
    for (const name of ['session', 'client', 'dpop-key']) await this.#secrets.delete(this.#key(name)).catch(() => undefined);
    this.#setStatus({ state: 'signed_out' });
  }

  async #forgetClient(): Promise<void> {
    this.#log(`auth: the identity provider no longer knows client ${this.#client?.clientId ?? '?'} (invalid_client); this install registers again at the next sign-in`);
    this.#oidc = undefined;
    this.#client = undefined;
    this.#session = undefined;
    this.#access = undefined;
    await this.#secrets.delete(this.#key('client')).catch(() => undefined);
    await this.#secrets.delete(this.#key('session')).catch(() => undefined);
  }

  #key(name: string): string {
    return `${this.#ns}:${name}`;
  }

  #setStatus(status: AuthStatus): void {
    this.#status = status;
    for (const l of this.#statusListeners) {
      try {
        l(this.status());
      } catch {
        /* a listener's failure is its own */
      }
    }
  }

  async #record(kind: 'sign_in' | 'sign_out' | 'step_up', outcome: 'success' | 'error' | 'cancelled' | 'timeout' | 'denied', user: UserIdentity | null, error?: AppError, summary?: string): Promise<void> {
    if (!this.#audit) return;
    try {
      await this.#audit.append({
        kind,
        outcome,
        user,
        target: this.config.issuer,
        ...(error ? { error: error.toWire() } : {}),
        ...(summary ? { summary } : {}),
        ...(this.#demo ? { demo: true } : {}),
      });
    } catch {
      this.#log(`auth: could not write the ${kind} audit record`);
    }
  }

  // ---- the IdP --------------------------------------------------------------------------------

  #discover(): Promise<oidc.Configuration> {
    this.#oidc ??= this.#configure().catch((error: unknown) => {
      this.#oidc = undefined;
      throw idpError(error, IDP_STEPS.discovery);
    });
    return this.#oidc;
  }

  async #configure(): Promise<oidc.Configuration> {
    const c = this.config;
    const execute = c.allowInsecureHttpForLoopbackOnly ? [oidc.allowInsecureRequests] : [];
    const issuer = new URL(c.issuer);
    const discovered = await oidc.discovery(issuer, c.clientId, undefined, oidc.None(), { execute, timeout: c.requestTimeoutSeconds });
    let config = discovered;
    let client: InstallClient = { clientId: c.clientId, authMethod: 'none', clientAuth: oidc.None(), serverMetadata: discovered.serverMetadata() };
    const meta = discovered.serverMetadata();
    if (c.dynamicRegistration === 'when-offered' && meta.registration_endpoint) {
      const registered = await this.#registeredClient(issuer, meta, execute);
      config = registered.config;
      client = {
        clientId: registered.clientId,
        authMethod: 'private_key_jwt',
        clientAuth: registered.clientAuth,
        clientMetadata: { token_endpoint_auth_method: 'private_key_jwt', token_endpoint_auth_signing_alg: 'ES256' },
        serverMetadata: meta,
      };
    }
    config.timeout = c.requestTimeoutSeconds;
    config[oidc.customFetch] = (url, init) => onWire('idp', () => fetch(url, init));
    if (c.dpop === 'when-offered' && meta.dpop_signing_alg_values_supported?.includes('ES256')) {
      this.#dpop = await this.#dpopKey();
    }
    this.#client = client;
    return config;
  }

  /**
   * RFC 7591: this install's own confidential client, authenticating with private_key_jwt (RFC 7523).
   * Registered once; its id and private key live in the SecretStore (the keychain), so a restart
   * uses the same client and the refresh token it was issued stays valid.
   */
  async #registeredClient(
    issuer: URL,
    meta: oidc.ServerMetadata,
    execute: Array<(c: oidc.Configuration) => void>,
  ): Promise<{ config: oidc.Configuration; clientId: string; clientAuth: oidc.ClientAuth }> {
    const alg = { name: 'ECDSA', namedCurve: 'P-256' };
    const metadata = { token_endpoint_auth_method: 'private_key_jwt', token_endpoint_auth_signing_alg: 'ES256' };
    const stored = await this.#secrets.get(this.#key('client'));
    if (stored) {
      const restored = await readStoredClient(stored, alg);
      if (restored) {
        const clientAuth = oidc.PrivateKeyJwt({ key: restored.key, kid: restored.kid });
        const config = new oidc.Configuration(meta, restored.clientId, metadata, clientAuth);
        for (const e of execute) e(config);
        return { config, clientId: restored.clientId, clientAuth };
      }
      // Unreadable (damaged or from an older format): register again. A session signed in as the old
      // client cannot be refreshed by the new one, so it goes too and the person signs in again.
      this.#log('auth: the client registration kept in the keychain is unreadable; registering this install again');
      await this.#secrets.delete(this.#key('session'));
    }
    const pair = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as CryptoKeyPair;
    const exported = await webcrypto.subtle.exportKey('jwk', pair.publicKey);
    const kid = await calculateJwkThumbprint(exported as Parameters<typeof calculateJwkThumbprint>[0]);
    const publicJwk = { ...exported, kid, alg: 'ES256', use: 'sig' };
    // RFC 7591 §3: an IdP that does not register anonymously (Keycloak's default) wants an initial
    // access token. An administrator provisions it into the keychain; it is used once, then removed.
    const initialAccessToken = await this.#secrets.get(this.#key('registration-token'));
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
          ...metadata,
          require_auth_time: true,
          jwks: { keys: [publicJwk] },
        } as unknown as Partial<oidc.ClientMetadata>,
        oidc.PrivateKeyJwt({ key: pair.privateKey, kid }),
        { execute, timeout: this.config.requestTimeoutSeconds, ...(initialAccessToken ? { initialAccessToken } : {}) },
      );
    } catch (error) {
      throw await registrationError(error);
    }
    const clientId = registered.clientMetadata().client_id;
    const entry: StoredClient = { client_id: clientId, jwk: { ...(await webcrypto.subtle.exportKey('jwk', pair.privateKey)), kid } };
    await this.#secrets.set(this.#key('client'), JSON.stringify(entry));
    if (initialAccessToken) await this.#secrets.delete(this.#key('registration-token'));
    this.#log(`auth: registered this install as client ${clientId}${initialAccessToken ? ' with an initial access token' : ''}`);
    // From here on the private key is held non-extractable; the keychain has the only exportable copy.
    const key = await webcrypto.subtle.importKey('jwk', entry.jwk, alg, false, ['sign']);
    const clientAuth = oidc.PrivateKeyJwt({ key, kid });
    const config = new oidc.Configuration(meta, clientId, metadata, clientAuth);
    for (const e of execute) e(config);
    return { config, clientId, clientAuth };
  }

  /** The per-install DPoP key (RFC 9449), kept in the keychain so a restored session keeps its binding. */
  async #dpopKey(): Promise<CryptoKeyPair> {
    const alg = { name: 'ECDSA', namedCurve: 'P-256' };
    const stored = await this.#secrets.get(this.#key('dpop-key'));
    if (stored) {
      const jwk = JSON.parse(stored) as webcrypto.JsonWebKey;
      const { d: _d, ...pub } = jwk;
      return {
        privateKey: await webcrypto.subtle.importKey('jwk', jwk, alg, false, ['sign']),
        publicKey: await webcrypto.subtle.importKey('jwk', { ...pub, key_ops: ['verify'] }, alg, true, ['verify']),
      };
    }
    const pair = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as CryptoKeyPair;
    await this.#secrets.set(this.#key('dpop-key'), JSON.stringify(await webcrypto.subtle.exportKey('jwk', pair.privateKey)));
    const jwk = await webcrypto.subtle.exportKey('jwk', pair.privateKey);
    return { privateKey: await webcrypto.subtle.importKey('jwk', jwk, alg, false, ['sign']), publicKey: pair.publicKey };
  }

  #dpopOptions(config: oidc.Configuration): { DPoP?: oidc.DPoPHandle } {
    return this.#dpop ? { DPoP: oidc.getDPoPHandle(config, this.#dpop) } : {};
  }

  #resourceParams(): Record<string, string> {
    return this.config.resource ? { resource: this.config.resource } : {};
  }

  // ---- sign-in --------------------------------------------------------------------------------

  /**
   * Signs in in the system browser (or with a device code) and resolves with the signed-in user.
   * A sign-in already under way is cancelled by a new one.
   */
  async signIn(options: SignInOptions = {}): Promise<UserIdentity> {
    this.#signInAbort?.abort();
    const abort = new AbortController();
    this.#signInAbort = abort;
    const signal = options.signal ? AbortSignal.any([options.signal, abort.signal]) : abort.signal;
    const before = this.#status;
    const stepUp = options.acrValues !== undefined || options.maxAge !== undefined;
    try {
      const grant = async () => {
        const config = await this.#discover();
        return options.mode === 'device' ? await this.#deviceGrant(config, signal) : await this.#browserGrant(config, options, signal);
      };
      let tokens: Awaited<ReturnType<typeof grant>>;
      try {
        tokens = await grant();
      } catch (error) {
        // The pushed request (or the device authorization) authenticates the client before anyone is
        // asked anything: a registration the IdP forgot is replaced once, then the sign-in goes on.
        if (!isClientRejected(error) || this.#client?.authMethod !== 'private_key_jwt') throw error;
        if (stepUp) {
          // the session being stepped up was issued to the forgotten client: it goes too
          await this.clientRejected();
          throw new AppError('CLIENT_REGISTRATION_FAILED', CLIENT_FORGOTTEN, { cause: error });
        }
        await this.#forgetClient();
        tokens = await grant();
      }
      const claims = tokens.claims();
      if (!claims) throw new AppError('IDP_BAD_RESPONSE', 'Your identity provider did not return an ID token.');
      if (options.acrValues && !options.acrValues.split(' ').includes(String(claims.acr))) {
        throw new AppError('IDP_STEP_UP_DENIED', 'The new sign-in did not reach the authentication level that was asked for.');
      }
      if (this.#session && stepUp && this.#session.user.sub !== claims.sub) {
        throw new AppError('IDP_STEP_UP_DENIED', 'The step-up sign-in was made as a different user; the session is unchanged.');
      }
      const user = sanitizeUser(claims);
      await this.#adopt(tokens, user, typeof claims.acr === 'string' ? claims.acr : undefined);
      this.#log(`auth: signed in sub=${user.sub}${claims.acr ? ` acr=${String(claims.acr)}` : ''}`);
      await this.#record(stepUp ? 'step_up' : 'sign_in', 'success', user, undefined, claims.acr ? `acr ${String(claims.acr)}` : undefined);
      return { ...user };
    } catch (error) {
      const app = idpError(error, IDP_STEPS.signIn);
      const cancelled = app.code === 'CANCELLED' || app.code === 'SIGN_IN_CANCELLED';
      const final = app.code === 'CANCELLED' ? new AppError('SIGN_IN_CANCELLED', 'The sign-in was cancelled.', { cause: app }) : app;
      if (this.#signInAbort === abort) this.#setStatus(before.state === 'signing_in' ? { state: 'signed_out' } : before);
      this.#log(`auth: sign-in ended without success (${final.code})`);
      await this.#record(stepUp ? 'step_up' : 'sign_in', cancelled ? 'cancelled' : final.code === 'SIGN_IN_TIMEOUT' ? 'timeout' : final.code === 'IDP_DENIED' ? 'denied' : 'error', this.user(), final);
      throw final;
    } finally {
      if (this.#signInAbort === abort) this.#signInAbort = undefined;
    }
  }

  async #browserGrant(config: oidc.Configuration, options: SignInOptions, signal: AbortSignal) {
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const nonce = oidc.randomNonce();
    const listener = await startLoopbackListener({ expectedState: state, timeoutMs: this.config.signInTimeoutSeconds * 1000, signal });
    try {
      const params: Record<string, string> = {
        redirect_uri: listener.redirectUri,
        scope: this.config.scopes.join(' '),
        code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
        code_challenge_method: 'S256',
        state,
        nonce,
        ...this.#resourceParams(),
      };
      if (options.acrValues) params.acr_values = options.acrValues;
      if (options.maxAge !== undefined) params.max_age = String(options.maxAge);
      if (options.prompt || options.acrValues || options.maxAge !== undefined) params.prompt = 'login';
      if (this.#dpop) params.dpop_jkt = await calculateJwkThumbprint(await exportJWK(this.#dpop.publicKey));
      // RFC 9126: a registered client pushes its request over the authenticated back channel, so the
      // browser carries only a reference to it, and an IdP that forgot the client says so now.
      const pushed = this.#client?.authMethod === 'private_key_jwt' && config.serverMetadata().pushed_authorization_request_endpoint;
      const url = pushed ? await oidc.buildAuthorizationUrlWithPAR(config, params, { signal } as Parameters<typeof oidc.buildAuthorizationUrlWithPAR>[2]) : oidc.buildAuthorizationUrl(config, params);
      this.#setStatus({ state: 'signing_in', url: url.href });
      const open = options.openExternal ?? this.#openExternal;
      await open(url.href).catch(() => {
        this.#log('auth: the browser could not be opened; the sign-in address is shown in the app');
        // A pushed request lives a minute or so (RFC 9126 §2.2), too short for an address a person
        // copies to a browser by hand: the address shown is the plain one, which lasts the sign-in.
        if (pushed) this.#setStatus({ state: 'signing_in', url: oidc.buildAuthorizationUrl(config, params).href });
      });
      const callbackUrl = await listener.callback;
      return await oidc.authorizationCodeGrant(
        config,
        callbackUrl,
        { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true, ...(options.maxAge !== undefined ? { maxAge: options.maxAge } : {}) },
        this.#resourceParams(),
        { ...this.#dpopOptions(config), signal } as oidc.AuthorizationCodeGrantOptions,
      );
    } finally {
      await listener.close();
    }
  }

  async #deviceGrant(config: oidc.Configuration, signal: AbortSignal) {
    if (!config.serverMetadata().device_authorization_endpoint) {
      throw new AppError('SIGN_IN_FAILED', 'Your identity provider does not offer sign-in with a device code; sign in in a browser on this machine.');
    }
    const start = await oidc.initiateDeviceAuthorization(config, { scope: this.config.scopes.join(' '), ...this.#resourceParams() });
    this.#setStatus({ state: 'signing_in', url: start.verification_uri_complete ?? start.verification_uri, userCode: start.user_code });
    const timeout = AbortSignal.timeout(Math.min(this.config.signInTimeoutSeconds, start.expires_in) * 1000);
    try {
      return await oidc.pollDeviceAuthorizationGrant(config, start, this.#resourceParams(), { signal: AbortSignal.any([signal, timeout]), ...this.#dpopOptions(config) });
    } catch (error) {
      if (timeout.aborted && !signal.aborted) throw new AppError('SIGN_IN_TIMEOUT', 'The device sign-in took too long and was abandoned.', { cause: error });
      throw error;
    }
  }

  /** Keeps the session in the keychain first: nothing is used from memory that could not be kept. */
  async #adopt(tokens: oidc.TokenEndpointResponse, user: UserIdentity, acr: string | undefined): Promise<void> {
    const refresh = tokens.refresh_token ?? this.#session?.refresh_token;
    const session: StoredSession | undefined = refresh ? { refresh_token: refresh, user, ...(acr ? { acr } : {}) } : undefined;
    if (session) await this.#secrets.set(this.#key('session'), JSON.stringify(session));
    this.#access = { token: tokens.access_token, expiresAt: Date.now() + (tokens.expires_in ?? 60) * 1000 };
    this.#session = session;
    this.#setStatus({ state: 'signed_in', user: { ...user }, ...(acr ? { acr } : {}), persistent: this.#secrets.kind === 'keychain' && refresh !== undefined });
    if (!refresh) this.#sessionOnly = user;
  }

  /** A session whose IdP issued no refresh token: it lasts as long as its access token. */
  #sessionOnly: UserIdentity | undefined;

  async #restore(): Promise<void> {
    let stored: string | null;
    try {
      stored = await this.#secrets.get(this.#key('session'));
    } catch (error) {
      const app = AppError.from(error, 'KEYCHAIN_UNAVAILABLE');
      this.#setStatus({ state: 'needs_sign_in', code: app.code, reason: app.message });
      return;
    }
    if (!stored) return;
    try {
      this.#session = JSON.parse(stored) as StoredSession;
    } catch {
      await this.#secrets.delete(this.#key('session'));
      return;
    }
    await this.getAccessToken().catch(() => undefined);
  }

  // ---- tokens ---------------------------------------------------------------------------------

  async getAccessToken(signal?: AbortSignal): Promise<string> {
    signal?.throwIfAborted();
    if (this.#access && this.#access.expiresAt - EXPIRY_MARGIN_MS > Date.now()) return this.#access.token;
    if (!this.#session) {
      throw new AppError('NOT_SIGNED_IN', this.#status.state === 'needs_sign_in' ? this.#status.reason : 'You are not signed in to Countersign. Sign in from the app.');
    }
    this.#refreshing ??= this.#refresh().finally(() => {
      this.#refreshing = undefined;
    });
    if (!signal) return this.#refreshing;
    return Promise.race([
      this.#refreshing,
      new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(new AppError('CANCELLED', 'The call was cancelled.')), { once: true })),
    ]);
  }

  async #refresh(): Promise<string> {
    const session = this.#session!;
    let tokens: Awaited<ReturnType<typeof oidc.refreshTokenGrant>>;
    try {
      const config = await this.#discover();
      tokens = await oidc.refreshTokenGrant(config, session.refresh_token, this.#resourceParams(), this.#dpopOptions(config));
    } catch (error) {
      if (isClientRejected(error) && this.#client?.authMethod === 'private_key_jwt' && this.#session === session) {
        await this.clientRejected();
        this.#log('auth: refresh failed (invalid_client)');
        throw new AppError('REFRESH_FAILED', CLIENT_FORGOTTEN, { cause: error });
      }
      const app = idpError(error, IDP_STEPS.refresh);
      const refused = isRefusal(error);
      if (refused && this.#session === session) {
        // The IdP refused the refresh token (revoked, expired, reused): it is worth nothing now.
        this.#session = undefined;
        this.#access = undefined;
        await this.#secrets.delete(this.#key('session')).catch(() => undefined);
      }
      this.#setStatus({ state: 'needs_sign_in', code: app.code, reason: `${app.message} Sign in again.` });
      this.#log(`auth: refresh failed (${app.code})`);
      throw app;
    }
    const claims = tokens.claims();
    const user = claims ? sanitizeUser(claims) : session.user;
    if (user.sub !== session.user.sub) throw new AppError('IDP_BAD_RESPONSE', 'Your identity provider renewed the sign-in for a different user.');
    const acr = claims && typeof claims.acr === 'string' ? claims.acr : session.acr;
    try {
      await this.#adopt(tokens, user, acr);
    } catch (error) {
      await this.#dropUnkeptRefresh(tokens, session, error);
    }
    return tokens.access_token;
  }

  /**
   * The IdP rotated the refresh token but the keychain (locked, or gone) would not keep the new one.
   * Fail closed: the renewed tokens are not used, the unkept refresh token is revoked at the IdP (the
   * keychain still holds the one it replaced), and the session waits for the person to unlock the
   * keychain and sign in again. Using the tokens from memory would silently leave a sign-in the next
   * start cannot restore.
   */
  async #dropUnkeptRefresh(tokens: oidc.TokenEndpointResponse, session: StoredSession, error: unknown): Promise<never> {
    const app = AppError.from(error, 'KEYCHAIN_UNAVAILABLE', 'The OS keychain could not be written.');
    if (this.#session === session) {
      this.#session = undefined;
      this.#access = undefined;
    }
    if (tokens.refresh_token && tokens.refresh_token !== session.refresh_token) {
      try {
        await oidc.tokenRevocation(await this.#discover(), tokens.refresh_token, { token_type_hint: 'refresh_token' });
      } catch (revokeError) {
        this.#log(`auth: the unkept refresh token could not be revoked (${idpError(revokeError, IDP_STEPS.revoke).code}); it expires on its own`);
      }
    }
    const reason = `${app.message} Your renewed sign-in could not be kept there, so Countersign stopped using it: unlock the keychain and sign in again.`;
    this.#setStatus({ state: 'needs_sign_in', code: app.code, reason });
    this.#log(`auth: refresh succeeded but the keychain would not keep the rotated refresh token (${app.code}); session dropped`);
    throw new AppError(app.code, reason, { cause: error });
  }

  /** RFC 9470 §4: a fresh login in the system browser meeting `acr_values`/`max_age`; later calls get the stronger token. */
  async stepUp(challenge: StepUpChallenge, signal?: AbortSignal): Promise<void> {
    await this.signIn({
      mode: 'browser',
      prompt: 'login',
      ...(signal ? { signal } : {}),
      ...(challenge.acrValues ? { acrValues: challenge.acrValues } : {}),
      ...(challenge.maxAge !== undefined ? { maxAge: challenge.maxAge } : {}),
    });
  }

  // ---- sign-out -------------------------------------------------------------------------------

  /** RFC 7009 revocation at the IdP, then the keychain entry and memory are cleared whatever the IdP said. */
  async signOut(): Promise<void> {
    this.#signInAbort?.abort();
    const user = this.user() ?? this.#sessionOnly ?? null;
    const session = this.#session;
    let revokeError: AppError | undefined;
    if (session) {
      try {
        const config = await this.#discover();
        await oidc.tokenRevocation(config, session.refresh_token, { token_type_hint: 'refresh_token' });
      } catch (error) {
        revokeError = idpError(error, IDP_STEPS.revoke);
        this.#log(`auth: the identity provider did not confirm the revocation (${revokeError.code})`);
      }
    }
    this.#session = undefined;
    this.#sessionOnly = undefined;
    this.#access = undefined;
    await this.#secrets.delete(this.#key('session'));
    this.#setStatus({ state: 'signed_out' });
    for (const l of this.#signOutListeners) {
      try {
        l(user);
      } catch {
        /* a listener's failure is its own */
      }
    }
    await this.#record('sign_out', 'success', user, undefined, revokeError ? 'signed out locally; the identity provider did not confirm the revocation' : 'signed out; refresh token revoked at the identity provider');
  }

  /** Cancels a sign-in under way. The session stays in the keychain. */
  async close(): Promise<void> {
    this.#signInAbort?.abort();
  }
}
