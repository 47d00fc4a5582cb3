import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { calculateJwkThumbprint, decodeJwt, exportJWK } from 'jose';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '../../../common/errors.ts';
import { startIdp } from '../../../lab/idp/index.ts';
import type { LabIdp } from '../../../lab/idp/index.ts';
import { AuthService } from '../../../main/core/auth/auth-service.ts';
import type { AuthStatus } from '../../../main/core/auth/auth-service.ts';
import { AuditStore } from '../../../main/core/audit/store.ts';
import type { OpenExternal } from '../../../main/core/ports.ts';
import { KeychainSecretStore } from '../../../main/core/secrets/keychain-store.ts';
import { MemorySecretStore } from '../../../main/core/secrets/memory-store.ts';
import { launchBrowser } from '../../helpers/browser.ts';
import type { LabBrowser } from '../../helpers/browser.ts';
import { startTestKeyring } from '../../helpers/keyring.ts';
import type { TestKeyring } from '../../helpers/keyring.ts';

// Sign-in against the lab IdP with a real Chromium playing the system browser, tokens in a real
// Secret Service (gnome-keyring on a private bus), and the real audit store.

const run = promisify(execFile);

let idp: LabIdp;
let keyring: TestKeyring;
let browser: LabBrowser;
let secrets: KeychainSecretStore;
let auditDir: string;
let audit: AuditStore;
const logs: string[] = [];
const statuses: AuthStatus[] = [];
/** Every token this file sees, to look for them in logs, files, audit and status afterwards. */
const planted = new Set<string>();

beforeAll(async () => {
  keyring = await startTestKeyring({ private: true });
  secrets = await KeychainSecretStore.open();
  idp = await startIdp({ log: (l) => logs.push(l) });
  browser = await launchBrowser();
  auditDir = await mkdtemp(join(tmpdir(), 'countersign-auth-audit-'));
  audit = await AuditStore.open({ dataDir: auditDir, secrets: new MemorySecretStore('audit keys for this test') });
});

afterAll(async () => {
  await audit?.close();
  await browser?.close();
  await idp?.stop();
  await keyring?.stop();
  if (auditDir) await rm(auditDir, { recursive: true, force: true });
});

const config = () => ({
  issuer: idp.issuer,
  clientId: idp.nativeClientId,
  resource: 'urn:countersign:app',
  allowInsecureHttpForLoopbackOnly: true,
  requestTimeoutSeconds: 2,
  signInTimeoutSeconds: 20,
});

/** Chromium as the system browser: opens the sign-in page and logs in as the given lab user. */
function chromiumSignsIn(username: string, password: string, otp?: string): OpenExternal & { seen: URL[] } {
  const seen: URL[] = [];
  const open = async (url: string) => {
    // A fresh IdP browser session each time, so the login page is always shown.
    await browser.context.clearCookies();
    const page = await browser.context.newPage();
    page.on('request', (r) => {
      if (r.url().includes('/callback?')) seen.push(new URL(r.url()));
    });
    await page.goto(url);
    await page.fill('#username', username);
    await page.fill('#password', password);
    if (otp !== undefined) await page.fill('#otp', otp);
    await page.click('button[type=submit]:has-text("Sign in")');
    await page.waitForURL(/\/callback\?/);
    await page.close();
  };
  return Object.assign(open, { seen });
}

const nsKey = () => `${createHash('sha256').update(idp.issuer).digest('hex').slice(0, 12)}:session`;

async function keychainSession(): Promise<{ refresh_token: string; user: { sub: string } } | null> {
  const { stdout } = await run('secret-tool', ['lookup', 'service', 'Countersign', 'username', nsKey()], { env: { ...process.env, ...keyring.env } }).catch(() => ({ stdout: '' }));
  return stdout ? (JSON.parse(stdout) as { refresh_token: string; user: { sub: string } }) : null;
}

async function create(openExternal: OpenExternal, store = secrets): Promise<AuthService> {
  const service = await AuthService.create({ config: config(), secrets: store, openExternal, audit, log: (l) => logs.push(l) });
  service.onStatus((s) => statuses.push(s));
  return service;
}

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) out.push(join(e.parentPath, e.name));
  return out;
}

const alice = () => idp.users.find((u) => u.username === 'alice')!;

describe('sign-in in the system browser against the lab IdP', () => {
  let service: AuthService;
  let firstRefreshToken: string;

  it('ends signed in as alice, the refresh token in the Secret Service keychain and the access token DPoP-bound', async () => {
    const opener = chromiumSignsIn('alice', 'alice-lab-pw');
    service = await create(opener);
    expect(service.status()).toEqual({ state: 'signed_out' });
    const user = await service.signIn({ mode: 'browser' });
    expect(user).toEqual({ sub: alice().sub, name: alice().name, email: alice().email });

    const signingIn = statuses.find((s) => s.state === 'signing_in');
    expect(signingIn && new URL(signingIn.url).searchParams.get('code_challenge_method')).toBe('S256');
    const authUrl = new URL((signingIn as { url: string }).url);
    for (const p of ['state', 'nonce', 'code_challenge']) expect(authUrl.searchParams.get(p)).toBeTruthy();
    expect(authUrl.searchParams.get('resource')).toBe('urn:countersign:app');
    expect(authUrl.searchParams.get('redirect_uri')).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/callback$/);
    expect(service.status()).toMatchObject({ state: 'signed_in', user: { sub: alice().sub, email: alice().email }, persistent: true });

    const access = await service.getAccessToken();
    planted.add(access);
    const claims = decodeJwt(access);
    expect(claims).toMatchObject({ sub: alice().sub, aud: 'urn:countersign:app', acr: 'urn:countersign:acr:pwd' });
    const jkt = await calculateJwkThumbprint(await exportJWK(service.dpopKeyPair()!.publicKey));
    expect((claims.cnf as { jkt?: string }).jkt).toBe(jkt);

    const stored = await keychainSession();
    expect(stored?.user.sub).toBe(alice().sub);
    expect(stored!.refresh_token.length).toBeGreaterThan(20);
    firstRefreshToken = stored!.refresh_token;
    planted.add(firstRefreshToken);
    for (const file of await filesUnder(keyring.dataDir)) expect((await readFile(file)).includes(Buffer.from(firstRefreshToken))).toBe(false);
    expect(JSON.stringify(service.status())).not.toContain(access);
  });

  it('is still signed in as alice from a new service on the same keychain, without a browser', async () => {
    const restarted = await create(async () => {
      throw new Error('a restart must not open the browser');
    });
    expect(restarted.status()).toMatchObject({ state: 'signed_in', user: { sub: alice().sub } });
    const access = await restarted.getAccessToken();
    planted.add(access);
    expect(decodeJwt(access).sub).toBe(alice().sub);
    const rotated = (await keychainSession())!.refresh_token;
    planted.add(rotated);
    expect(rotated).not.toBe(firstRefreshToken);
    service = restarted;
  });

  it('shares one refresh among concurrent callers when the access token is due', async () => {
    idp.setAccessTokenTtl(10);
    try {
      // A 10 s token is inside the 30 s renewal margin: every call needs a refresh, and concurrent ones share it.
      service = await create(async () => undefined);
      const before = (await keychainSession())!.refresh_token;
      planted.add(before);
      const tokens = await Promise.all(Array.from({ length: 8 }, () => service.getAccessToken()));
      tokens.forEach((t) => planted.add(t));
      expect(new Set(tokens).size).toBe(1);
      const after = (await keychainSession())!.refresh_token;
      planted.add(after);
      expect(after).not.toBe(before);
      expect(service.status().state).toBe('signed_in');
    } finally {
      idp.setAccessTokenTtl(null);
    }
  });

  it('steps up to acr urn:countersign:acr:mfa with a fresh login that enters the one-time code', async () => {
    const opener = chromiumSignsIn('alice', 'alice-lab-pw', '246810');
    const stepped = await create(opener);
    await stepped.stepUp({ acrValues: 'urn:countersign:acr:mfa' });
    const access = await stepped.getAccessToken();
    planted.add(access);
    expect(decodeJwt(access)).toMatchObject({ sub: alice().sub, acr: 'urn:countersign:acr:mfa' });
    expect(stepped.status()).toMatchObject({ state: 'signed_in', acr: 'urn:countersign:acr:mfa' });
    const stepUrl = new URL((statuses.filter((s) => s.state === 'signing_in').at(-1) as { url: string }).url);
    expect(stepUrl.searchParams.get('acr_values')).toBe('urn:countersign:acr:mfa');
    expect(stepUrl.searchParams.get('prompt')).toBe('login');
    service = stepped;
  });

  it('signs out: revokes at the IdP, empties the keychain, tells listeners, and the old refresh token is refused', async () => {
    const lastRefresh = (await keychainSession())!.refresh_token;
    planted.add(lastRefresh);
    const dpop = service.dpopKeyPair()!;
    const told: unknown[] = [];
    service.onSignOut((u) => told.push(u));
    await service.signOut();
    expect(service.status()).toEqual({ state: 'signed_out' });
    expect(told).toEqual([expect.objectContaining({ sub: alice().sub })]);
    expect(await keychainSession()).toBeNull();
    await expect(service.getAccessToken()).rejects.toMatchObject({ code: 'NOT_SIGNED_IN' });

    const cfg = await oidc.discovery(new URL(idp.issuer), idp.nativeClientId, undefined, oidc.None(), { execute: [oidc.allowInsecureRequests] });
    const refused = await oidc.refreshTokenGrant(cfg, lastRefresh, undefined, { DPoP: oidc.getDPoPHandle(cfg, dpop) }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(oidc.ResponseBodyError);
    expect((refused as oidc.ResponseBodyError).error).toBe('invalid_grant');

    const kinds = audit.page({}).records.map((r) => `${r.kind}:${r.outcome}`);
    expect(kinds).toEqual(expect.arrayContaining(['sign_in:success', 'step_up:success', 'sign_out:success']));
  });

  it('moves to needs_sign_in and clears the keychain when the refresh token was revoked at the IdP', async () => {
    const revokedService = await create(chromiumSignsIn('alice', 'alice-lab-pw'));
    await revokedService.signIn();
    const rt = (await keychainSession())!.refresh_token;
    planted.add(rt);
    const cfg = await oidc.discovery(new URL(idp.issuer), idp.nativeClientId, undefined, oidc.None(), { execute: [oidc.allowInsecureRequests] });
    await oidc.tokenRevocation(cfg, rt, { token_type_hint: 'refresh_token' });
    // A new service must refresh to start: the IdP refuses the revoked token.
    const after = await create(async () => undefined);
    expect(after.status()).toMatchObject({ state: 'needs_sign_in', code: 'REFRESH_FAILED' });
    await expect(after.getAccessToken()).rejects.toMatchObject({ code: 'NOT_SIGNED_IN' });
    expect(await keychainSession()).toBeNull();
    await revokedService.signOut();
  });
});

describe('sign-in failures', () => {
  it('turns the user pressing Cancel on the login page (access_denied) into IDP_DENIED and stays signed out', async () => {
    const service = await create(async (url) => {
      await browser.context.clearCookies();
      const page = await browser.context.newPage();
      await page.goto(url);
      await page.click('button:has-text("Cancel")');
      await page.waitForURL(/\/callback\?/);
      await page.close();
    });
    const error = await service.signIn().catch((e: unknown) => e);
    expect(AppError.is(error, 'IDP_DENIED')).toBe(true);
    expect(service.status()).toEqual({ state: 'signed_out' });
  });

  it('is cancelled by its signal while waiting for the browser', async () => {
    const ac = new AbortController();
    const service = await create(async () => {
      setTimeout(() => ac.abort(), 100);
    });
    const error = await service.signIn({ signal: ac.signal }).catch((e: unknown) => e);
    expect(AppError.is(error, 'SIGN_IN_CANCELLED')).toBe(true);
    expect(service.status()).toEqual({ state: 'signed_out' });
  });

  it('refuses a code replayed into a new sign-in (the IdP rejects it) and stays signed out', async () => {
    const first = chromiumSignsIn('alice', 'alice-lab-pw');
    const a = await create(first);
    await a.signIn();
    const oldCode = first.seen.at(-1)!.searchParams.get('code')!;
    await a.signOut();
    const b = await create(async (url) => {
      const u = new URL(url);
      // The attacker's page sends the stolen code to the new sign-in's loopback with the right state.
      await fetch(`${u.searchParams.get('redirect_uri')}?code=${encodeURIComponent(oldCode)}&state=${u.searchParams.get('state')}&iss=${encodeURIComponent(idp.issuer)}`);
    });
    const error = await b.signIn().catch((e: unknown) => e);
    expect(AppError.is(error, 'SIGN_IN_FAILED')).toBe(true);
    expect((error as AppError).message).toContain('invalid_grant');
    expect(b.status()).toEqual({ state: 'signed_out' });
  });

  it('gives IDP_UNAVAILABLE when the token endpoint does not answer in time, and IDP_BAD_RESPONSE for garbage', async () => {
    const service = await create(chromiumSignsIn('bob', 'bob-lab-pw'));
    await service.signIn();
    idp.setAccessTokenTtl(5);
    try {
      await service.signOut();
      await service.signIn();
      idp.setFault({ delayMs: 3000 });
      const slow = await service.getAccessToken().catch((e: unknown) => e);
      expect((slow as AppError).code).toBe('IDP_UNAVAILABLE');
      expect(service.status()).toMatchObject({ state: 'needs_sign_in', code: 'IDP_UNAVAILABLE' });
      idp.setFault({ garbage: true });
      const garbage = await service.getAccessToken().catch((e: unknown) => e);
      expect((garbage as AppError).code).toBe('IDP_BAD_RESPONSE');
      idp.setFault(null);
      // The refresh token survived the outage: the session recovers.
      await expect(service.getAccessToken()).resolves.toBeTypeOf('string');
      expect(service.status()).toMatchObject({ state: 'signed_in' });
    } finally {
      idp.setFault(null);
      idp.setAccessTokenTtl(null);
      await service.signOut();
    }
  });
});

describe('device authorization grant (RFC 8628)', () => {
  it('shows the verification address and user code, and signs in when the person approves in a browser elsewhere', async () => {
    const service = await create(async () => {
      throw new Error('the device flow does not open a browser here');
    });
    service.onStatus(async (s) => {
      if (s.state !== 'signing_in' || !s.userCode) return;
      await browser.context.clearCookies();
      const page = await browser.context.newPage();
      await page.goto(s.url);
      await page.click('button:has-text("Continue")');
      await page.waitForSelector('#username');
      await page.fill('#username', 'bob');
      await page.fill('#password', 'bob-lab-pw');
      await page.click('button[type=submit]:has-text("Sign in")');
      await page.waitForLoadState('load');
      await page.close();
    });
    const user = await service.signIn({ mode: 'device' });
    expect(user.sub).toBe(idp.users.find((u) => u.username === 'bob')!.sub);
    const seen = statuses.filter((s): s is Extract<AuthStatus, { state: 'signing_in' }> => s.state === 'signing_in' && s.userCode !== undefined);
    expect(seen.at(-1)!.userCode).toMatch(/\S+/);
    planted.add(await service.getAccessToken());
    await service.signOut();
  });
});

describe('secrecy', () => {
  it('finds none of the tokens in logs, status objects, the audit store or the keyring files', async () => {
    expect(planted.size).toBeGreaterThan(5);
    const haystacks = [logs.join('\n'), JSON.stringify(statuses)];
    for (const file of [...(await filesUnder(auditDir)), ...(await filesUnder(keyring.dataDir))]) haystacks.push((await readFile(file)).toString('latin1'));
    for (const token of planted) for (const h of haystacks) expect(h.includes(token)).toBe(false);
    expect(logs.some((l) => l.includes('auth: signed in'))).toBe(true);
  });
});
