import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startIdp } from '../../lab/idp/index.ts';
import type { LabIdp } from '../../lab/idp/index.ts';
import { launchBrowser } from '../helpers/browser.ts';
import type { LabBrowser } from '../helpers/browser.ts';
import { APP_RESOURCE, decodeJwt, exchange, pkce, postForm, readDetails, signIn, SIGN_IN_SCOPE } from './idp-fixtures.ts';

// The lab IdP's pages in a real Chromium: PKCE sign-in through the login page (as the app does with
// the system browser and a loopback redirect), the one-time code step, the device flow, and the lab phone.

let idp: LabIdp;
let browser: LabBrowser;
let callback: Server;
let callbackBase: string;
const received: URL[] = [];

beforeAll(async () => {
  idp = await startIdp();
  callback = createServer((req, res) => {
    received.push(new URL(req.url ?? '/', callbackBase));
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('Signed in. You can close this window.');
  });
  await new Promise<void>((r) => callback.listen(0, '127.0.0.1', () => r()));
  callbackBase = `http://127.0.0.1:${(callback.address() as AddressInfo).port}`;
  browser = await launchBrowser();
});

afterAll(async () => {
  await browser?.close();
  callback?.closeAllConnections();
  await new Promise<void>((r) => (callback ? callback.close(() => r()) : r()));
  await idp?.stop();
});

function authUrl(challenge: string, state: string, extra: Record<string, string> = {}): string {
  const url = new URL(`${idp.issuer}/auth`);
  url.search = new URLSearchParams({
    client_id: idp.nativeClientId,
    response_type: 'code',
    redirect_uri: `${callbackBase}/callback`,
    scope: SIGN_IN_SCOPE,
    resource: APP_RESOURCE,
    state,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    ...extra,
  }).toString();
  return url.href;
}

async function waitForCallback(state: string): Promise<URL> {
  for (let i = 0; i < 100; i++) {
    const hit = received.find((u) => u.searchParams.get('state') === state);
    if (hit) return hit;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('the browser never reached the loopback callback');
}

function redeem(code: string, verifier: string) {
  return postForm(idp.tokenEndpoint, {
    grant_type: 'authorization_code',
    code,
    code_verifier: verifier,
    redirect_uri: `${callbackBase}/callback`,
    client_id: idp.nativeClientId,
  });
}

describe('sign-in in Chromium', () => {
  let page: Page;

  beforeAll(async () => {
    page = await browser.context.newPage();
  });

  it('shows the lab banner and refuses a wrong password on the page', async () => {
    const { challenge } = pkce();
    await page.goto(authUrl(challenge, 'wrong-pw'));
    await expect(page.getByRole('banner').textContent()).resolves.toContain('Countersign lab');
    await page.fill('#username', 'alice');
    await page.fill('#password', 'not-her-password');
    await page.click('button[type=submit]:has-text("Sign in")');
    await expect(page.getByRole('alert').textContent()).resolves.toContain('Wrong username or password');
    expect(await page.locator('#otp').count()).toBe(0);
    expect(received.some((u) => u.searchParams.get('state') === 'wrong-pw')).toBe(false);
  });

  it('completes Authorization Code + PKCE through the login page, and the code cannot be replayed', async () => {
    const { verifier, challenge } = pkce();
    await page.goto(authUrl(challenge, 'state-1'));
    await page.fill('#username', 'alice');
    await page.fill('#password', 'alice-lab-pw');
    await page.click('button[type=submit]:has-text("Sign in")');
    const back = await waitForCallback('state-1');
    expect(back.searchParams.get('iss')).toBe(idp.issuer);
    const code = back.searchParams.get('code')!;

    const tokens = await redeem(code, verifier);
    expect(tokens.status).toBe(200);
    expect(decodeJwt(String(tokens.json.access_token))).toMatchObject({ aud: APP_RESOURCE, acr: 'urn:countersign:acr:pwd' });
    expect(decodeJwt(String(tokens.json.id_token))).toMatchObject({ name: 'Alice Lab', email: 'alice@lab.countersign.test' });

    const replay = await redeem(code, verifier);
    expect(replay.status).toBe(400);
    expect(replay.json.error).toBe('invalid_grant');
  });

  it('asks for the one-time code again when acr_values asks for mfa, even with a password session', async () => {
    const { verifier, challenge } = pkce();
    await page.goto(authUrl(challenge, 'state-mfa', { acr_values: 'urn:countersign:acr:mfa' }));
    await expect(page.locator('#otp').isVisible()).resolves.toBe(true);
    await page.fill('#username', 'alice');
    await page.fill('#password', 'alice-lab-pw');
    await page.fill('#otp', '246810');
    await page.click('button[type=submit]:has-text("Sign in")');
    const back = await waitForCallback('state-mfa');
    const tokens = await redeem(back.searchParams.get('code')!, verifier);
    expect(decodeJwt(String(tokens.json.access_token))).toMatchObject({ acr: 'urn:countersign:acr:mfa', amr: ['pwd', 'otp'] });
  });
});

describe('device authorization grant (RFC 8628)', () => {
  it('lets a person approve a device code in the browser while the device polls', async () => {
    await browser.context.clearCookies();
    const start = await postForm(`${idp.issuer}/device/auth`, { client_id: idp.nativeClientId, scope: SIGN_IN_SCOPE });
    expect(start.status).toBe(200);
    const { device_code, verification_uri_complete, user_code } = start.json as Record<string, string>;
    expect(user_code).toBeTypeOf('string');
    const poll = () =>
      postForm(idp.tokenEndpoint, {
        grant_type: 'urn:ietf:params:oauth:grant-type:device_code',
        device_code: device_code!,
        client_id: idp.nativeClientId,
      });
    expect((await poll()).json.error).toBe('authorization_pending');

    const page = await browser.context.newPage();
    await page.goto(verification_uri_complete!);
    await page.click('button:has-text("Continue")');
    await page.waitForSelector('#username');
    await page.fill('#username', 'bob');
    await page.fill('#password', 'bob-lab-pw');
    await page.click('button[type=submit]:has-text("Sign in")');
    await page.waitForLoadState('load');

    let tokens = await poll();
    for (let i = 0; i < 20 && tokens.json.error === 'authorization_pending'; i++) {
      await new Promise((r) => setTimeout(r, 100));
      tokens = await poll();
    }
    expect(tokens.status).toBe(200);
    expect(decodeJwt(String(tokens.json.access_token))).toMatchObject({ aud: APP_RESOURCE, sub: idp.users.find((u) => u.username === 'bob')!.sub });
    expect((await poll()).status).toBe(400);
    await page.close();
  });
});

describe('the lab phone', () => {
  it('lists a pending push and approves it with a click', async () => {
    const alice = await signIn(idp, { username: 'alice', password: 'alice-lab-pw' });
    const details = readDetails({ privileges: ['sensitive'], statement_digest: `sha256:${'e'.repeat(64)}` });
    const ch = await exchange(idp, alice.access_token, { details });
    const auth = { authorization: `Bearer ${String(ch.json.access_token)}` };
    const { factors } = (await (await fetch(`${idp.issuer}/v2.0/factors`, { headers: auth })).json()) as {
      factors: { id: string; references: { authenticatorId: string } }[];
    };
    const started = await fetch(`${idp.issuer}/v1.0/authenticators/${factors[0]!.references.authenticatorId}/verifications`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({
        transactionData: { message: 'Read VIP patient rows', digest: `sha256:${'e'.repeat(64)}` },
        authenticationMethods: [{ id: factors[0]!.id, methodType: 'signature' }],
        logic: 'OR',
      }),
    });
    const { transactionUri } = (await started.json()) as { transactionUri: string };

    const page = await browser.context.newPage();
    await page.goto(`${idp.issuer}/lab/phone`);
    await expect(page.locator('li', { hasText: 'Read VIP patient rows' }).textContent()).resolves.toContain('alice');
    await page.click('li:has-text("Read VIP patient rows") button:has-text("Approve")');
    await page.waitForURL(`${idp.issuer}/lab/phone`);
    await expect(page.locator('body').textContent()).resolves.toContain('No pending requests');

    const state = (await (await fetch(`${transactionUri}?returnJwt=true`, { headers: auth })).json()) as { state: string; assertion?: string };
    expect(state.state).toBe('VERIFY_SUCCESS');
    expect(state.assertion).toBeTypeOf('string');
    await page.close();
  });
});
