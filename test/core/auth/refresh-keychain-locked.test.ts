/**
 * The keychain locks while the app runs, and the next token refresh must keep a rotated refresh token
 * there: a real Secret Service (gnome-keyring on a private bus, test/helpers/keyring.ts), the lab IdP,
 * and Chromium playing the system browser for the sign-in.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '../../../common/errors.ts';
import { startIdp, type LabIdp } from '../../../lab/idp/index.ts';
import { AuthService, type AuthStatus } from '../../../main/core/auth/auth-service.ts';
import type { OpenExternal } from '../../../main/core/ports.ts';
import { KeychainSecretStore } from '../../../main/core/secrets/keychain-store.ts';
import { launchBrowser, logInOnLabPage, type LabBrowser } from '../../helpers/browser.ts';
import { startTestKeyring, type TestKeyring } from '../../helpers/keyring.ts';

const run = promisify(execFile);

let idp: LabIdp;
let keyring: TestKeyring;
let browser: LabBrowser;
const idpLog: string[] = [];
const coreLog: string[] = [];

beforeAll(async () => {
  keyring = await startTestKeyring({ private: true });
  idp = await startIdp({ log: (l) => idpLog.push(l) });
  browser = await launchBrowser();
}, 60_000);
afterAll(async () => {
  await browser?.close();
  await idp?.stop();
  await keyring?.stop();
});

const signsInAsAlice: OpenExternal = (url: string) => logInOnLabPage(browser, url);

async function storedRefreshToken(): Promise<string | null> {
  const key = `${createHash('sha256').update(idp.issuer).digest('hex').slice(0, 12)}:session`;
  const { stdout } = await run('secret-tool', ['lookup', 'service', 'Countersign', 'username', key], { env: { ...process.env, ...keyring.env } }).catch(() => ({ stdout: '' }));
  return stdout ? (JSON.parse(stdout) as { refresh_token: string }).refresh_token : null;
}

describe('a token refresh while the keychain is locked', () => {
  it('fails closed with KEYCHAIN_LOCKED and a status that says what to do, uses nothing it could not keep, and revokes the unkept refresh token', async () => {
    const secrets = await KeychainSecretStore.open();
    const statuses: AuthStatus[] = [];
    // Access tokens inside the renewal margin: every getAccessToken refreshes (and the IdP rotates).
    idp.setAccessTokenTtl(10);
    try {
      const service = await AuthService.create({
        config: { issuer: idp.issuer, clientId: idp.nativeClientId, resource: 'urn:countersign:app', allowInsecureHttpForLoopbackOnly: true, requestTimeoutSeconds: 5 },
        secrets,
        openExternal: signsInAsAlice,
        log: (l) => coreLog.push(l),
      });
      service.onStatus((s) => statuses.push(s));
      await service.signIn({ mode: 'browser' });
      const signedIn = await storedRefreshToken();
      expect(signedIn).toBeTruthy();
      const first = await service.getAccessToken();
      const rotated = await storedRefreshToken();
      expect(rotated).not.toBe(signedIn);

      await keyring.relock();
      try {
        const revokedBefore = idpLog.filter((l) => l.includes('grant revoked')).length;
        const refused = await service.getAccessToken().catch((e: unknown) => e);
        expect(AppError.is(refused, 'KEYCHAIN_LOCKED'), String(refused)).toBe(true);
        expect((refused as AppError).message).toMatch(/locked.*unlock the keychain and sign in again/is);
        expect(service.status()).toMatchObject({ state: 'needs_sign_in', code: 'KEYCHAIN_LOCKED' });
        expect((service.status() as { reason: string }).reason).toMatch(/Unlock it.*could not be kept/s);
        expect(service.user()).toBeNull();

        // Nothing renewed is used from memory: the next call is refused too, with the same reason.
        const again = await service.getAccessToken().catch((e: unknown) => e);
        expect(AppError.is(again, 'NOT_SIGNED_IN'), String(again)).toBe(true);
        expect((again as AppError).message).toContain('could not be kept');

        // The refresh token the keychain would not take was revoked at the IdP.
        expect(idpLog.filter((l) => l.includes('grant revoked')).length).toBe(revokedBefore + 1);
        expect(coreLog.some((l) => l.includes('session dropped') && l.includes('KEYCHAIN_LOCKED'))).toBe(true);

        const visible = JSON.stringify([statuses, coreLog, (refused as AppError).message]);
        for (const secret of [first, signedIn!, rotated!]) expect(visible).not.toContain(secret);
      } finally {
        await keyring.unlock();
      }

      // Unlocked: signing in again works and is kept.
      await service.signIn({ mode: 'browser' });
      expect(service.status()).toMatchObject({ state: 'signed_in', persistent: true });
      expect(await storedRefreshToken()).toBeTruthy();
      await service.signOut();
    } finally {
      idp.setAccessTokenTtl(null);
    }
  });
});
