import { request } from 'node:http';
import { describe, expect, it } from 'vitest';
import { AppError } from '../../../common/errors.ts';
import { startLoopbackListener } from '../../../main/core/auth/loopback.ts';

const STATE = 'expected-state-value-0123456789';

async function rejection(p: Promise<unknown>): Promise<AppError> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  if (!(e instanceof AppError)) throw new Error(`expected an AppError, got ${String(e)}`);
  return e;
}

function getWithHost(url: string, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: { host } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('the loopback sign-in listener (RFC 8252 §7.3)', () => {
  it('listens on 127.0.0.1 at /callback and hands back the callback URL with a page that says to return to the app', async () => {
    const l = await startLoopbackListener({ expectedState: STATE, timeoutMs: 5000 });
    expect(l.redirectUri).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/callback$/);
    const res = await fetch(`${l.redirectUri}?code=abc&state=${STATE}`);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toContain('return to the app');
    expect(text).not.toContain('abc');
    const url = await l.callback;
    expect(url.searchParams.get('code')).toBe('abc');
    await l.close();
  });

  it('refuses a callback with the wrong state and fails the sign-in with SIGN_IN_STATE_MISMATCH', async () => {
    const l = await startLoopbackListener({ expectedState: STATE, timeoutMs: 5000 });
    const res = await fetch(`${l.redirectUri}?code=abc&state=attacker-state`);
    expect(res.status).toBe(400);
    expect((await rejection(l.callback)).code).toBe('SIGN_IN_STATE_MISMATCH');
  });

  it('refuses a callback without state', async () => {
    const l = await startLoopbackListener({ expectedState: STATE, timeoutMs: 5000 });
    expect((await fetch(`${l.redirectUri}?code=abc`)).status).toBe(400);
    expect((await rejection(l.callback)).code).toBe('SIGN_IN_STATE_MISMATCH');
  });

  it('turns an error callback (access_denied) into IDP_DENIED without echoing the description', async () => {
    const l = await startLoopbackListener({ expectedState: STATE, timeoutMs: 5000 });
    const res = await fetch(`${l.redirectUri}?error=access_denied&error_description=%3Cscript%3Ealert(1)%3C/script%3E&state=${STATE}`);
    expect(await res.text()).not.toContain('<script>');
    const e = await rejection(l.callback);
    expect(e.code).toBe('IDP_DENIED');
    expect(e.message).not.toContain('script');
  });

  it('answers another path 404 and keeps waiting for the real callback', async () => {
    const l = await startLoopbackListener({ expectedState: STATE, timeoutMs: 5000 });
    const base = new URL(l.redirectUri).origin;
    expect((await fetch(`${base}/favicon.ico`)).status).toBe(404);
    expect((await fetch(`${base}/callback/../admin?state=${STATE}&code=x`)).status).toBe(404);
    expect((await fetch(`${base}/other?state=${STATE}&code=x`)).status).toBe(404);
    expect((await fetch(`${l.redirectUri}?state=${STATE}&code=real`)).status).toBe(200);
    expect((await l.callback).searchParams.get('code')).toBe('real');
  });

  it('refuses a request that names another Host (DNS rebinding) without settling the sign-in', async () => {
    const l = await startLoopbackListener({ expectedState: STATE, timeoutMs: 5000 });
    expect(await getWithHost(`${l.redirectUri}?state=${STATE}&code=x`, 'evil.example:80')).toBe(400);
    expect((await fetch(`${l.redirectUri}?state=${STATE}&code=real`)).status).toBe(200);
    expect((await l.callback).searchParams.get('code')).toBe('real');
  });

  it('takes one callback only: a second callback after the first finds the port closed', async () => {
    const l = await startLoopbackListener({ expectedState: STATE, timeoutMs: 5000 });
    await fetch(`${l.redirectUri}?code=first&state=${STATE}`);
    expect((await l.callback).searchParams.get('code')).toBe('first');
    await l.close();
    await expect(fetch(`${l.redirectUri}?code=second&state=${STATE}`)).rejects.toThrow();
  });

  it('gives up after its time-out with SIGN_IN_TIMEOUT and stops listening', async () => {
    const l = await startLoopbackListener({ expectedState: STATE, timeoutMs: 150 });
    expect((await rejection(l.callback)).code).toBe('SIGN_IN_TIMEOUT');
    await l.close();
    await expect(fetch(`${l.redirectUri}?code=late&state=${STATE}`)).rejects.toThrow();
  });

  it('is cancelled by its abort signal with SIGN_IN_CANCELLED', async () => {
    const ac = new AbortController();
    const l = await startLoopbackListener({ expectedState: STATE, timeoutMs: 5000, signal: ac.signal });
    ac.abort();
    expect((await rejection(l.callback)).code).toBe('SIGN_IN_CANCELLED');
  });
});
