/**
 * Sign-in for the core, as one facade over its parts: the IdP as discovered, with the client this
 * install is and its DPoP key (./discovered-idp.ts), the grants at the IdP (./grants.ts) and what is
 * kept in the keychain (./keychain.ts); what the session tells the UI, sign-out listeners and the
 * audit store is ./session-events.ts. This file holds the session itself: sign-in and step-up, the
 * access token in memory, refresh and sign-out.
 */
import type { webcrypto } from 'node:crypto';
import type * as oidc from 'openid-client';
import { AppError } from '../../../common/errors.ts';
import type { AuditSink, OpenExternal, SecretStore, StepUpChallenge, TokenSource, UserIdentity } from '../ports.ts';
import { parseIdpConfig } from './config.ts';
import type { IdpConfig, IdpConfigInput } from './config.ts';
import { idpError, IDP_STEPS, isClientRejected, isRefusal } from '../idp/errors.ts';
import { DiscoveredIdp } from './discovered-idp.ts';
import { browserGrant, checkSignInClaims, deviceGrant, refreshGrant, revokeRefreshToken, userOf, type SignInOptions } from './grants.ts';
import type { InstallClient } from './install-client.ts';
import { AuthKeychain, type StoredSession } from './keychain.ts';
import { SessionEvents, signInFailureOutcome, type AuthStatus } from './session-events.ts';

export type { InstallClient } from './install-client.ts';
export type { SignInOptions } from './grants.ts';
export type { AuthStatus } from './session-events.ts';

type CryptoKeyPair = webcrypto.CryptoKeyPair;

export interface AuthServiceOptions {
  config: IdpConfigInput | IdpConfig;
  secrets: SecretStore;
  openExternal: OpenExternal;
  audit?: AuditSink;
  log?: (line: string) => void;
  /** Tags audit records written while running against the local lab. */
  demo?: boolean;
}

/**
 * What the core needs of sign-in: the user's tokens, and the session's state for the UI (this module).
 * `client` and `clientRejected` are there when sign-in may use this install's own registered client
 * (RFC 7591): the exchange must present the client the subject token was issued to.
 */
export type CoreAuth = Pick<AuthService, 'getAccessToken' | 'stepUp' | 'user' | 'dpopKeyPair' | 'status' | 'onStatus' | 'onSignOut' | 'signIn' | 'signOut' | 'close'> &
  Partial<Pick<AuthService, 'client' | 'clientRejected'>>;

const EXPIRY_MARGIN_MS = 30_000;

const SESSION_OF_OLD_CLIENT =
  'This Countersign install registered anew with your identity provider (its registration was no longer in the keychain), and the sign-in kept for the old registration was dropped.';

const CLIENT_FORGOTTEN =
  'Your identity provider no longer knows this Countersign install (its registration was removed or expired). Sign in again: the install registers anew.';

/**
 * The refresh token lives in the keychain, the access token only in this process's memory. It is the
 * TokenSource the broker exchanges from: refresh with rotation, one refresh in flight whatever the
 * number of callers, and a refused refresh moves the session to `needs_sign_in`.
 */
export class AuthService implements TokenSource {
  readonly config: IdpConfig;
  readonly #keychain: AuthKeychain;
  readonly #openExternal: OpenExternal;
  readonly #log: (line: string) => void;
  readonly #events: SessionEvents;
  readonly #idp: DiscoveredIdp;
  #session: StoredSession | undefined;
  /** The session as read from the keychain at start, before the discovery that settles the client. */
  #readAtStart: StoredSession | undefined;
  #access: { token: string; expiresAt: number } | undefined;
  #refreshing: Promise<string> | undefined;
  #signInAbort: AbortController | undefined;

  private constructor(options: AuthServiceOptions, config: IdpConfig) {
    this.config = config;
    this.#keychain = new AuthKeychain(options.secrets, config.issuer);
    this.#openExternal = options.openExternal;
    this.#log = options.log ?? (() => {});
    this.#idp = new DiscoveredIdp(config, this.#keychain, this.#log);
    this.#events = new SessionEvents({ audit: options.audit, issuer: config.issuer, demo: options.demo ?? false, log: this.#log });
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
    return structuredClone(this.#events.current);
  }

  onStatus(listener: (status: AuthStatus) => void): () => void {
    return this.#events.onStatus(listener);
  }

  /** Told after a sign-out, so approval caches and others can forget what belonged to the session. */
  onSignOut(listener: (user: UserIdentity | null) => void): () => void {
    return this.#events.onSignOut(listener);
  }

  user(): UserIdentity | null {
    return this.#session ? { ...this.#session.user } : null;
  }

  dpopKeyPair(): CryptoKeyPair | undefined {
    return this.#idp.dpop;
  }

  /**
   * The client sign-in uses, for the token exchange to authenticate as (the lab, like Keycloak's
   * standard token exchange, refuses a subject token issued to another client). Registers this
   * install first when dynamic registration is on and the IdP offers it; a refused registration
   * throws CLIENT_REGISTRATION_FAILED and never falls back to the public client. Resolves to the
   * same object for as long as the client does not change.
   */
  async client(): Promise<InstallClient> {
    await this.#idp.grants();
    return this.#idp.client!;
  }

  /**
   * The IdP answered `invalid_client` to a request this install's registered client authenticated
   * (the token exchange, a refresh): an administrator deleted the registration, or the IdP expired
   * it. The registration and the session issued to it are worth nothing now; both are dropped, and
   * the next sign-in registers this install again. A configured client is never forgotten.
   */
  async clientRejected(): Promise<void> {
    if (this.#idp.client?.authMethod !== 'private_key_jwt') return;
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
    this.#idp.forget({ dpop: true });
    this.#session = undefined;
    this.#access = undefined;
    await this.#keychain.forget('session', 'client', 'dpop-key');
    this.#setStatus({ state: 'signed_out' });
  }

  async #forgetClient(): Promise<void> {
    this.#log(`auth: the identity provider no longer knows client ${this.#idp.client?.clientId ?? '?'} (invalid_client); this install registers again at the next sign-in`);
    this.#idp.forget();
    this.#session = undefined;
    this.#access = undefined;
    await this.#keychain.forget('client', 'session');
  }

  #setStatus(status: AuthStatus): void {
    this.#events.set(status);
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
    const before = this.#events.current;
    const stepUp = options.acrValues !== undefined || options.maxAge !== undefined;
    try {
      const grant = async () => {
        const g = await this.#idp.grants();
        const showing = (where: { url: string; userCode?: string }) => this.#setStatus({ state: 'signing_in', ...where });
        if (options.mode === 'device') return await deviceGrant(g, showing, signal);
        const open = options.openExternal ?? this.#openExternal;
        return await browserGrant(g, { ...options, open, showing, log: this.#log }, signal);
      };
      let tokens: Awaited<ReturnType<typeof grant>>;
      try {
        tokens = await grant();
      } catch (error) {
        // The pushed request (or the device authorization) authenticates the client before anyone is
        // asked anything: a registration the IdP forgot is replaced once, then the sign-in goes on.
        if (!isClientRejected(error) || this.#idp.client?.authMethod !== 'private_key_jwt') throw error;
        if (stepUp) {
          // the session being stepped up was issued to the forgotten client: it goes too
          await this.clientRejected();
          throw new AppError('CLIENT_REGISTRATION_FAILED', CLIENT_FORGOTTEN, { cause: error });
        }
        await this.#forgetClient();
        tokens = await grant();
      }
      const claims = checkSignInClaims(tokens.claims(), options, stepUp ? this.#session?.user.sub : undefined);
      const user = userOf(claims);
      await this.#adopt(tokens, user, typeof claims.acr === 'string' ? claims.acr : undefined);
      this.#log(`auth: signed in sub=${user.sub}${claims.acr ? ` acr=${String(claims.acr)}` : ''}`);
      await this.#events.record(stepUp ? 'step_up' : 'sign_in', 'success', user, undefined, claims.acr ? `acr ${String(claims.acr)}` : undefined);
      return { ...user };
    } catch (error) {
      const app = idpError(error, IDP_STEPS.signIn);
      const final = app.code === 'CANCELLED' ? new AppError('SIGN_IN_CANCELLED', 'The sign-in was cancelled.', { cause: app }) : app;
      if (this.#signInAbort === abort) this.#setStatus(before.state === 'signing_in' ? { state: 'signed_out' } : before);
      this.#log(`auth: sign-in ended without success (${final.code})`);
      await this.#events.record(stepUp ? 'step_up' : 'sign_in', signInFailureOutcome(final.code), this.user(), final);
      throw final;
    } finally {
      if (this.#signInAbort === abort) this.#signInAbort = undefined;
    }
  }

  /** Keeps the session in the keychain first: nothing is used from memory that could not be kept. */
  async #adopt(tokens: oidc.TokenEndpointResponse, user: UserIdentity, acr: string | undefined): Promise<void> {
    const refresh = tokens.refresh_token ?? this.#session?.refresh_token;
    const session: StoredSession | undefined = refresh ? { refresh_token: refresh, user, ...(acr ? { acr } : {}) } : undefined;
    if (session) await this.#keychain.setSession(session);
    this.#access = { token: tokens.access_token, expiresAt: Date.now() + (tokens.expires_in ?? 60) * 1000 };
    this.#session = session;
    this.#setStatus({ state: 'signed_in', user: { ...user }, ...(acr ? { acr } : {}), persistent: this.#keychain.persistent && refresh !== undefined });
    if (!refresh) this.#sessionOnly = user;
  }

  /** A session whose IdP issued no refresh token: it lasts as long as its access token. */
  #sessionOnly: UserIdentity | undefined;

  async #restore(): Promise<void> {
    let stored: StoredSession | null | 'unreadable';
    try {
      stored = await this.#keychain.session();
    } catch (error) {
      const app = AppError.from(error, 'KEYCHAIN_UNAVAILABLE');
      this.#setStatus({ state: 'needs_sign_in', code: app.code, reason: app.message });
      return;
    }
    if (!stored) return;
    if (stored === 'unreadable') return void (await this.#keychain.delete('session'));
    this.#session = stored;
    this.#readAtStart = stored;
    await this.getAccessToken().catch(() => undefined);
  }

  // ---- tokens ---------------------------------------------------------------------------------

  async getAccessToken(signal?: AbortSignal): Promise<string> {
    signal?.throwIfAborted();
    if (this.#access && this.#access.expiresAt - EXPIRY_MARGIN_MS > Date.now()) return this.#access.token;
    if (!this.#session) {
      const status = this.#events.current;
      throw new AppError('NOT_SIGNED_IN', status.state === 'needs_sign_in' ? status.reason : 'You are not signed in to Countersign. Sign in from the app.');
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
    let tokens: Awaited<ReturnType<typeof refreshGrant>>;
    try {
      const grants = await this.#idp.grants();
      // A discovery that had to register this install anew dropped the session kept for the old
      // client (./install-client.ts): its refresh token is never sent as the new client.
      if (session === this.#readAtStart && (await this.#keychain.session()) === null) {
        this.#session = undefined;
        throw new AppError('NOT_SIGNED_IN', SESSION_OF_OLD_CLIENT);
      }
      tokens = await refreshGrant(grants, session.refresh_token);
    } catch (error) {
      if (isClientRejected(error) && this.#idp.client?.authMethod === 'private_key_jwt' && this.#session === session) {
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
        await this.#keychain.forget('session');
      }
      this.#setStatus({ state: 'needs_sign_in', code: app.code, reason: `${app.message} Sign in again.` });
      this.#log(`auth: refresh failed (${app.code})`);
      throw app;
    }
    const claims = tokens.claims();
    const user = claims ? userOf(claims) : session.user;
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
        await revokeRefreshToken(await this.#idp.grants(), tokens.refresh_token);
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
        await revokeRefreshToken(await this.#idp.grants(), session.refresh_token);
      } catch (error) {
        revokeError = idpError(error, IDP_STEPS.revoke);
        this.#log(`auth: the identity provider did not confirm the revocation (${revokeError.code})`);
      }
    }
    this.#session = undefined;
    this.#sessionOnly = undefined;
    this.#access = undefined;
    await this.#keychain.delete('session');
    this.#setStatus({ state: 'signed_out' });
    this.#events.signedOut(user);
    await this.#events.record('sign_out', 'success', user, undefined, revokeError ? 'signed out locally; the identity provider did not confirm the revocation' : 'signed out; refresh token revoked at the identity provider');
  }

  /** Cancels a sign-in under way. The session stays in the keychain. */
  async close(): Promise<void> {
    this.#signInAbort?.abort();
  }
}
