import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { decodeJwt, exportJWK, generateKeyPair } from 'jose';
import Provider from 'oidc-provider';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '../../../common/errors.ts';
import { startIdp } from '../../../lab/idp/index.ts';
import type { LabIdp } from '../../../lab/idp/index.ts';
import { AuthService } from '../../../main/core/auth/auth-service.ts';
import type { AuthStatus } from '../../../main/core/auth/auth-service.ts';
import type { IdpConfigInput } from '../../../main/core/auth/config.ts';
import { createTokenExchanger } from '../../../main/core/idp/token-exchange.ts';
import type { OpenExternal } from '../../../main/core/ports.ts';
import { KeychainSecretStore } from '../../../main/core/secrets/keychain-store.ts';
import { MemorySecretStore } from '../../../main/core/secrets/memory-store.ts';
import { launchBrowser, logInOnLabPage } from '../../helpers/browser.ts';
import type { LabBrowser } from '../../helpers/browser.ts';
import { startTestKeyring } from '../../helpers/keyring.ts';
import type { TestKeyring } from '../../helpers/keyring.ts';

// RFC 7591 client identity per install, against the lab IdP (open registration for private_key_jwt
// clients), with a real Secret Service and Chromium as the system browser. Two more real
// identity providers (oidc-provider, as the lab uses) stand for IdPs the lab is not: one whose
// registration needs an initial access token (as Keycloak's and Okta's do), one with no
// registration endpoint at all.

const run = promisify(execFile);
const READ = [{ type: 'postgres', locations: ['postgres://lab/clinic'], actions: ['SELECT'], identifier: 'patients', tables: ['patients'], bounded: true }];

let idp: LabIdp;
let keyring: TestKeyring;
let browser: LabBrowser;
let secrets: KeychainSecretStore;
type OtherIdp = { issuer: string; provider: Provider; stop(): Promise<void> };
let guarded: OtherIdp;
let plain: OtherIdp;
const logs: string[] = [];
const idpLogs: string[] = [];

/** A real OpenID provider on loopback with the public client the app is configured with. */
async function startOtherIdp(registration: { enabled: boolean; initialAccessToken?: boolean }): Promise<OtherIdp> {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'countersign-desktop',
        application_type: 'native',
        token_endpoint_auth_method: 'none',
        redirect_uris: ['http://127.0.0.1/callback'],
        response_types: ['code'],
        grant_types: ['authorization_code', 'refresh_token'],
      },
    ],
    jwks: { keys: [{ ...(await exportJWK(privateKey)), alg: 'ES256', use: 'sig', kid: 'k1' }] },
    clientDefaults: { grant_types: ['authorization_code'], response_types: ['code'], id_token_signed_response_alg: 'ES256' },
    cookies: { keys: ['test-cookie-key-not-a-secret'] },
    pkce: { required: () => true },
    clientAuthMethods: ['none', 'private_key_jwt'],
    features: { devInteractions: { enabled: false }, registration: registration },
  });
  server.on('request', provider.callback());
  return {
    issuer,
    provider,
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

beforeAll(async () => {
  keyring = await startTestKeyring({ private: true });
  secrets = await KeychainSecretStore.open();
  [idp, browser, guarded, plain] = await Promise.all([
    startIdp({ log: (l) => idpLogs.push(l) }),
    launchBrowser(),
    startOtherIdp({ enabled: true, initialAccessToken: true }),
    startOtherIdp({ enabled: false }),
  ]);
});

afterAll(async () => {
  await browser?.close();
  await idp?.stop();
  await guarded?.stop();
  await plain?.stop();
  await keyring?.stop();
});

const config = (issuer: string, extra: Partial<IdpConfigInput> = {}): IdpConfigInput => ({
  issuer,
  clientId: 'countersign-desktop',
  resource: 'urn:countersign:app',
  allowInsecureHttpForLoopbackOnly: true,
  dynamicRegistration: 'when-offered',
  requestTimeoutSeconds: 3,
  signInTimeoutSeconds: 20,
  ...extra,
});

/** Chromium as the system browser: logs in on the lab's page as alice. */
const chromiumSignsIn: OpenExternal = (url) => logInOnLabPage(browser, url);

const noBrowser: OpenExternal = async () => {
  throw new Error('this start must not open the browser');
};

const keyFor = (issuer: string, name: string) => `${createHash('sha256').update(issuer).digest('hex').slice(0, 12)}:${name}`;

async function keychainEntry(issuer: string, name: string): Promise<string | null> {
  const { stdout } = await run('secret-tool', ['lookup', 'service', 'Countersign', 'username', keyFor(issuer, name)], { env: { ...process.env, ...keyring.env } }).catch(() => ({ stdout: '' }));
  return stdout || null;
}

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) out.push(join(e.parentPath, e.name));
  return out;
}

function create(cfg: IdpConfigInput, openExternal: OpenExternal, store: KeychainSecretStore | MemorySecretStore = secrets): Promise<AuthService> {
  return AuthService.create({ config: cfg, secrets: store, openExternal, log: (l) => logs.push(l) });
}

describe('a per-install client registered with the lab IdP (RFC 7591, private_key_jwt)', () => {
  let registeredId: string;
  let service: AuthService;

  it('registers once, keeps the client id and its private key in the keychain, and signs in as that client', async () => {
    const statuses: AuthStatus[] = [];
    service = await create(config(idp.issuer), chromiumSignsIn);
    service.onStatus((s) => statuses.push(s));
    const client = await service.client();
    expect(client.authMethod).toBe('private_key_jwt');
    expect(client.clientId).toMatch(/^lab-client-/);
    expect(client.clientId).not.toBe('countersign-desktop');
    registeredId = client.clientId;
    expect(await service.client()).toBe(client);

    const stored = JSON.parse((await keychainEntry(idp.issuer, 'client'))!) as { client_id: string; jwk: { kty: string; d?: string } };
    expect(stored.client_id).toBe(registeredId);
    expect(stored.jwk).toMatchObject({ kty: 'EC', crv: 'P-256' });
    expect(stored.jwk.d).toBeTypeOf('string');
    // The private key is only in the keychain (encrypted by the Secret Service), never in a log or a file.
    expect(logs.join('\n')).not.toContain(stored.jwk.d);
    for (const file of await filesUnder(keyring.dataDir)) expect((await readFile(file)).includes(Buffer.from(stored.jwk.d!))).toBe(false);

    await service.signIn();
    const authUrl = new URL((statuses.find((s) => s.state === 'signing_in') as { url: string }).url);
    expect(authUrl.searchParams.get('client_id')).toBe(registeredId);
    expect(decodeJwt(await service.getAccessToken())).toMatchObject({ client_id: registeredId, sub: idp.users.find((u) => u.username === 'alice')!.sub });
  });

  it('uses the same client after a restart, without registering again, and the session it signed in survives', async () => {
    const restarted = await create(config(idp.issuer), noBrowser);
    // Restoring the session refreshed it at the IdP, authenticating with the stored key (private_key_jwt).
    expect(restarted.status()).toMatchObject({ state: 'signed_in', persistent: true });
    expect((await restarted.client()).clientId).toBe(registeredId);
    expect(decodeJwt(await restarted.getAccessToken()).client_id).toBe(registeredId);
    expect(logs.filter((l) => l.startsWith('auth: registered this install')).length).toBe(1);
    service = restarted;
  });

  it('makes the token exchange authenticate as the registered client: the OBO names it as actor and client_id', async () => {
    const exchanger = createTokenExchanger({ issuer: idp.issuer, clientId: 'countersign-desktop', client: () => service.client(), allowInsecureHttpForLoopbackOnly: true, timeoutMs: 3_000 });
    const obo = await exchanger.exchange({
      subjectToken: await service.getAccessToken(),
      authorizationDetails: READ,
      audience: 'countersign-vault',
      ...(service.dpopKeyPair() ? { dpopKeyPair: service.dpopKeyPair() } : {}),
    });
    expect(decodeJwt(obo.token)).toMatchObject({ act: { sub: registeredId }, client_id: registeredId, vault_role: 'clinic-read' });
    expect(idpLogs.some((l) => l.includes(`jti=${obo.jti}`) && l.includes(`client=${registeredId}`))).toBe(true);
  });

  it("is refused by the IdP when the exchange presents the public client instead of the registered one (the subject token isn't its)", async () => {
    const fixed = createTokenExchanger({ issuer: idp.issuer, clientId: 'countersign-desktop', allowInsecureHttpForLoopbackOnly: true, timeoutMs: 3_000 });
    const error = await fixed
      .exchange({ subjectToken: await service.getAccessToken(), authorizationDetails: READ, audience: 'countersign-vault', ...(service.dpopKeyPair() ? { dpopKeyPair: service.dpopKeyPair() } : {}) })
      .catch((e: unknown) => e);
    expect(AppError.is(error, 'IDP_DENIED')).toBe(true);
    expect((error as AppError).message).toContain('issued to another client');
  });

  it('keeps the registered client through a sign-out: the next sign-in is the same install', async () => {
    await service.signOut();
    expect(await keychainEntry(idp.issuer, 'session')).toBeNull();
    expect(JSON.parse((await keychainEntry(idp.issuer, 'client'))!).client_id).toBe(registeredId);
    const again = await create(config(idp.issuer), chromiumSignsIn);
    expect(again.status()).toEqual({ state: 'signed_out' });
    await again.signIn();
    expect(decodeJwt(await again.getAccessToken()).client_id).toBe(registeredId);
    await again.signOut();
  });

  it('registers again, as a confidential client, when the stored registration is damaged, and forgets the session it cannot refresh', async () => {
    const store = new MemorySecretStore('an install whose keychain entry was damaged');
    await store.set(keyFor(idp.issuer, 'client'), '{"client_id":"lab-client-gone","jwk":{"kty":"EC"}}');
    await store.set(keyFor(idp.issuer, 'session'), JSON.stringify({ refresh_token: 'not-a-token-of-the-new-client', user: { sub: 'x' } }));
    const service = await create(config(idp.issuer), noBrowser, store);
    const client = await service.client();
    expect(client.authMethod).toBe('private_key_jwt');
    expect(client.clientId).toMatch(/^lab-client-/);
    expect(client.clientId).not.toBe('lab-client-gone');
    expect(JSON.parse((await store.get(keyFor(idp.issuer, 'client')))!).client_id).toBe(client.clientId);
    expect(await store.get(keyFor(idp.issuer, 'session'))).toBeNull();
    expect(logs.some((l) => l.includes('registration kept in the keychain is unreadable'))).toBe(true);
  });

  it('registers again when the client entry was deleted, and drops the session signed in as the deleted client without sending its refresh token', async () => {
    const store = new MemorySecretStore('an install whose client entry was deleted');
    const first = await create(config(idp.issuer), chromiumSignsIn, store);
    await first.signIn();
    const oldId = (await first.client()).clientId;
    expect(JSON.parse((await store.get(keyFor(idp.issuer, 'session')))!)).toMatchObject({ refresh_token: expect.any(String) });
    await store.delete(keyFor(idp.issuer, 'client'));
    const registered = () => logs.filter((l) => l.startsWith('auth: registered this install')).length;
    const registeredBefore = registered();
    const idpSeen = idpLogs.length;

    const restarted = await create(config(idp.issuer), noBrowser, store);
    const client = await restarted.client();
    expect(client.authMethod).toBe('private_key_jwt');
    expect(client.clientId).not.toBe(oldId);
    expect(registered()).toBe(registeredBefore + 1);
    expect(JSON.parse((await store.get(keyFor(idp.issuer, 'client')))!).client_id).toBe(client.clientId);
    expect(await store.get(keyFor(idp.issuer, 'session'))).toBeNull();
    expect(logs.some((l) => l.includes('no client registration is kept in the keychain, but a session is'))).toBe(true);
    // The person signs in again; the old client's refresh token never reached the token endpoint as the
    // new client (the lab would have refused it invalid_grant: it was issued to another client).
    expect(restarted.user()).toBeNull();
    expect(restarted.status()).toMatchObject({ state: 'needs_sign_in', code: 'NOT_SIGNED_IN', reason: expect.stringContaining('Sign in again') });
    await expect(restarted.getAccessToken()).rejects.toMatchObject({ code: 'NOT_SIGNED_IN' });
    expect(idpLogs.slice(idpSeen).filter((l) => l.includes('grant error'))).toEqual([]);
  });

  it('registers a new client for another install (another keychain), never sharing the first one', async () => {
    const other = await create(config(idp.issuer), noBrowser, new MemorySecretStore('another install in this test'));
    const client = await other.client();
    expect(client.authMethod).toBe('private_key_jwt');
    expect(client.clientId).not.toBe(registeredId);
  });
});

describe('when registration is not to be had', () => {
  it('fails closed with a clear reason when the IdP refuses the registration: no sign-in, no fallback to the public client', async () => {
    let opened = 0;
    const service = await create(config(guarded.issuer), async () => {
      opened += 1;
    });
    const error = await service.signIn().catch((e: unknown) => e);
    expect(AppError.is(error, 'CLIENT_REGISTRATION_FAILED')).toBe(true);
    expect((error as AppError).message).toMatch(/refused to register this install as a client \(invalid_token/);
    expect((error as AppError).message).toContain('does not fall back');
    expect(opened).toBe(0);
    expect(service.status()).toEqual({ state: 'signed_out' });
    await expect(service.client()).rejects.toMatchObject({ code: 'CLIENT_REGISTRATION_FAILED' });
    expect(await keychainEntry(guarded.issuer, 'client')).toBeNull();

    // The exchange fails the same way instead of presenting another client.
    const exchanger = createTokenExchanger({ issuer: guarded.issuer, clientId: 'countersign-desktop', client: () => service.client(), allowInsecureHttpForLoopbackOnly: true, timeoutMs: 3_000 });
    const exchangeError = await exchanger.exchange({ subjectToken: 'not-used', authorizationDetails: READ, audience: 'countersign-vault' }).catch((e: unknown) => e);
    expect(AppError.is(exchangeError, 'CLIENT_REGISTRATION_FAILED')).toBe(true);
  });

  it('uses the configured public client when the IdP has no registration endpoint', async () => {
    const ac = new AbortController();
    let authUrl: URL | undefined;
    const service = await create(config(plain.issuer), async (url) => {
      authUrl = new URL(url);
      ac.abort();
    });
    const client = await service.client();
    expect(client).toMatchObject({ clientId: 'countersign-desktop', authMethod: 'none' });
    await expect(service.signIn({ signal: ac.signal })).rejects.toMatchObject({ code: 'SIGN_IN_CANCELLED' });
    expect(authUrl?.searchParams.get('client_id')).toBe('countersign-desktop');
    expect(await keychainEntry(plain.issuer, 'client')).toBeNull();
  });

  it('uses the configured public client when registration is offered but turned off', async () => {
    const service = await create(config(idp.issuer, { dynamicRegistration: 'off' }), noBrowser, new MemorySecretStore('a third install in this test'));
    expect(await service.client()).toMatchObject({ clientId: 'countersign-desktop', authMethod: 'none' });
  });
});

describe('registration with an initial access token (RFC 7591 §3), as Keycloak asks by default', () => {
  /** What an administrator (or a device-management script) runs to provision the token for this issuer. */
  async function provision(token: string): Promise<void> {
    const child = spawn('secret-tool', ['store', '--label=Countersign registration', 'service', 'Countersign', 'username', keyFor(guarded.issuer, 'registration-token')], {
      env: { ...process.env, ...keyring.env },
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    child.stdin.end(token);
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code).toBe(0);
  }

  it('refuses a registration whose initial access token the IdP does not know, and keeps the token for a retry', async () => {
    await provision('not-an-initial-access-token-of-this-idp');
    const error = await (await create(config(guarded.issuer), noBrowser)).client().catch((e: unknown) => e);
    expect(AppError.is(error, 'CLIENT_REGISTRATION_FAILED')).toBe(true);
    expect((error as AppError).message).toContain('invalid_token');
    expect((error as AppError).message).not.toContain('not-an-initial-access-token-of-this-idp');
    expect(await keychainEntry(guarded.issuer, 'client')).toBeNull();
    expect(await keychainEntry(guarded.issuer, 'registration-token')).toBe('not-an-initial-access-token-of-this-idp');
  });

  it('registers with the provisioned token, uses it once, removes it, and the next start keeps the client', async () => {
    const token = await new guarded.provider.InitialAccessToken({}).save();
    await provision(token);
    const service = await create(config(guarded.issuer), noBrowser);
    const client = await service.client();
    expect(client.authMethod).toBe('private_key_jwt');
    expect(client.clientId).not.toBe('countersign-desktop');
    expect(await keychainEntry(guarded.issuer, 'registration-token')).toBeNull();
    expect(JSON.parse((await keychainEntry(guarded.issuer, 'client'))!).client_id).toBe(client.clientId);
    expect(logs.join('\n')).not.toContain(token);
    // The IdP knows it: it answers the client's own RFC 7523 assertion at the token endpoint (a refresh
    // token it never issued is refused as invalid_grant, not as an unknown client).
    const restarted = await create(config(guarded.issuer), noBrowser);
    const again = await restarted.client();
    expect(again.clientId).toBe(client.clientId);
    const cfg = new oidc.Configuration(again.serverMetadata, again.clientId, again.clientMetadata, again.clientAuth);
    oidc.allowInsecureRequests(cfg);
    const refused = await oidc.refreshTokenGrant(cfg, 'a-refresh-token-this-idp-never-issued').catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(oidc.ResponseBodyError);
    expect((refused as oidc.ResponseBodyError).error).toBe('invalid_grant');
  });
});

describe('a registration the IdP no longer knows (an administrator deleted it)', () => {
  // An IdP of its own, so this install's keychain entries (named by issuer) start empty here.
  let forgetful: LabIdp;
  let service: AuthService;
  let firstId: string;
  const opened: string[] = [];
  const statuses: AuthStatus[] = [];
  const countingBrowser: OpenExternal = async (url) => {
    opened.push(url);
    await chromiumSignsIn(url);
  };

  beforeAll(async () => {
    forgetful = await startIdp({ log: (l) => idpLogs.push(l) });
    service = await create(config(forgetful.issuer), countingBrowser);
    service.onStatus((s) => statuses.push(s));
  });
  afterAll(async () => {
    await forgetful?.stop();
  });

  it('pushes its authorization request (RFC 9126): the browser carries only a reference, the PKCE challenge and resource went over the back channel', async () => {
    await service.signIn();
    firstId = (await service.client()).clientId;
    const url = new URL(opened.at(-1)!);
    expect(url.searchParams.get('client_id')).toBe(firstId);
    expect(url.searchParams.get('request_uri')).toMatch(/^urn:ietf:params:oauth:request_uri:/);
    for (const p of ['code_challenge', 'resource', 'redirect_uri', 'state', 'nonce']) expect(url.searchParams.get(p)).toBeNull();
    expect(decodeJwt(await service.getAccessToken()).client_id).toBe(firstId);
  });

  it('drops the registration and the session when the token exchange is refused invalid_client, and says what to do', async () => {
    const subjectToken = await service.getAccessToken();
    expect(await forgetful.forgetClient(firstId)).toBe(true);
    const exchanger = createTokenExchanger({
      issuer: forgetful.issuer,
      clientId: 'countersign-desktop',
      client: () => service.client(),
      onClientRejected: () => service.clientRejected(),
      allowInsecureHttpForLoopbackOnly: true,
      timeoutMs: 3_000,
    });
    const refused = await exchanger
      .exchange({ subjectToken, authorizationDetails: READ, audience: 'countersign-vault', ...(service.dpopKeyPair() ? { dpopKeyPair: service.dpopKeyPair() } : {}) })
      .catch((e: unknown) => e);
    expect(AppError.is(refused, 'IDP_DENIED')).toBe(true);
    expect(service.status()).toMatchObject({ state: 'needs_sign_in', code: 'CLIENT_REGISTRATION_FAILED', reason: expect.stringContaining('Sign in again') });
    expect(service.user()).toBeNull();
    expect(await keychainEntry(forgetful.issuer, 'client')).toBeNull();
    expect(await keychainEntry(forgetful.issuer, 'session')).toBeNull();
  });

  it('registers anew at the next sign-in and signs in as the new client', async () => {
    await service.signIn();
    const second = (await service.client()).clientId;
    expect(second).not.toBe(firstId);
    expect(new URL(opened.at(-1)!).searchParams.get('client_id')).toBe(second);
    expect(decodeJwt(await service.getAccessToken()).client_id).toBe(second);
    expect(JSON.parse((await keychainEntry(forgetful.issuer, 'client'))!)).toMatchObject({ client_id: second });
  });

  it('finds a forgotten client when it pushes the sign-in, before the browser opens, registers once more and signs in', async () => {
    const before = (await service.client()).clientId;
    await service.signOut();
    expect(await forgetful.forgetClient(before)).toBe(true);
    const browsersBefore = opened.length;
    await service.signIn();
    const after = (await service.client()).clientId;
    expect(after).not.toBe(before);
    // one browser visit, already for the new client: the forgotten one never reached the person
    expect(opened.slice(browsersBefore).map((u) => new URL(u).searchParams.get('client_id'))).toEqual([after]);
    expect(service.status()).toMatchObject({ state: 'signed_in' });
  });

  it('drops the registration and the session when a refresh at start is refused invalid_client', async () => {
    const current = (await service.client()).clientId;
    expect(await forgetful.forgetClient(current)).toBe(true);
    const restarted = await create(config(forgetful.issuer), noBrowser);
    expect(restarted.status()).toMatchObject({ state: 'needs_sign_in', code: 'CLIENT_REGISTRATION_FAILED' });
    expect(await keychainEntry(forgetful.issuer, 'client')).toBeNull();
    expect(await keychainEntry(forgetful.issuer, 'session')).toBeNull();
    expect(logs.some((l) => l.includes(`no longer knows client ${current}`))).toBe(true);
  });

  it('shows the plain sign-in address when no browser opens: a pushed request expires before a person could copy it', async () => {
    const shown: string[] = [];
    const headless = await create(
      config(forgetful.issuer),
      async () => {
        throw new Error('no browser on this machine');
      },
      new MemorySecretStore('a machine without a browser'),
    );
    headless.onStatus((s) => void (s.state === 'signing_in' && shown.push(s.url)));
    const signing = headless.signIn();
    await expect.poll(() => shown.length, { timeout: 10_000 }).toBe(2);
    expect(new URL(shown[0]!).searchParams.get('request_uri')).toBeTruthy();
    const plain = new URL(shown[1]!);
    expect(plain.searchParams.get('request_uri')).toBeNull();
    expect(plain.searchParams.get('code_challenge_method')).toBe('S256');
    await chromiumSignsIn(plain.href);
    await signing;
    expect(headless.status().state).toBe('signed_in');
  });

  it('never forgets a client it was configured with, and the lab refuses to delete one', async () => {
    expect(await forgetful.forgetClient('countersign-desktop')).toBe(false);
    const fixed = await create(config(forgetful.issuer, { dynamicRegistration: 'off' }), noBrowser, new MemorySecretStore('a configured public client'));
    expect((await fixed.client()).clientId).toBe('countersign-desktop');
    await fixed.clientRejected();
    expect(fixed.status().state).toBe('signed_out');
    expect((await fixed.client()).clientId).toBe('countersign-desktop');
  });
});
