import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '../../../common/errors.ts';
import { idpError, IDP_STEPS, isClientRejected, isRefusal } from '../../../main/core/idp/errors.ts';

// A token endpoint over a real socket that answers what each test tells it, so the errors mapped are
// the ones openid-client really throws.
let answer: { status: number; body: string; type?: string } = { status: 200, body: '{}' };
let server: Server;
let issuer: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(answer.status, { 'Content-Type': answer.type ?? 'application/json' });
      res.end(answer.body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

async function thrownBy(status: number, body: string, type?: string, at = () => issuer): Promise<unknown> {
  answer = { status, body, ...(type ? { type } : {}) };
  const config = new oidc.Configuration({ issuer: at(), token_endpoint: `${at()}/token` }, 'countersign', undefined, oidc.None());
  oidc.allowInsecureRequests(config);
  return oidc.refreshTokenGrant(config, 'rt').then(
    () => expect.unreachable('the grant should fail'),
    (e: unknown) => e,
  );
}

describe("the IdP's errors, mapped in one place", () => {
  it('reads an OAuth refusal by its code, with the description made printable, per step', async () => {
    const refused = await thrownBy(400, JSON.stringify({ error: 'invalid_grant', error_description: 'Refresh token\u0000 expired' }));
    expect(isRefusal(refused)).toBe(true);
    const mapped = idpError(refused, IDP_STEPS.refresh);
    expect(mapped.code).toBe('REFRESH_FAILED');
    expect(mapped.message).toBe('Your identity provider refused renewing your sign-in (invalid_grant): Refresh token  expired.');
    expect(idpError(refused, IDP_STEPS.exchange).code).toBe('IDP_DENIED');
  });

  it('gives access_denied its own meaning where a step has one (a refused step-up push)', async () => {
    const denied = await thrownBy(400, JSON.stringify({ error: 'access_denied' }));
    expect(idpError(denied, IDP_STEPS.stepUp).code).toBe('IDP_STEP_UP_DENIED');
    expect(idpError(denied, IDP_STEPS.exchange).code).toBe('IDP_DENIED');
    expect(idpError(denied, IDP_STEPS.signIn).code).toBe('SIGN_IN_FAILED');
  });

  it('does not repeat an error code that is not an OAuth code', async () => {
    const odd = await thrownBy(400, JSON.stringify({ error: 'x"><script>alert(1)</script>' }));
    expect(idpError(odd, IDP_STEPS.exchange).message).toContain('(unknown_error)');
  });

  it('reads a 5xx as the IdP being unavailable at every step, whatever the body', async () => {
    const down = await thrownBy(503, JSON.stringify({ error: 'temporarily_unavailable' }));
    for (const step of Object.values(IDP_STEPS)) expect(idpError(down, step).code, step.what).toBe('IDP_UNAVAILABLE');
    expect(isRefusal(down)).toBe(false);
  });

  it('reads an answer that is not JSON as a bad response and never copies it', async () => {
    const garbage = await thrownBy(200, 'access_token=planted-secret-123', 'text/plain');
    for (const step of [IDP_STEPS.signIn, IDP_STEPS.exchange]) {
      const mapped = idpError(garbage, step);
      expect(mapped.code).toBe('IDP_BAD_RESPONSE');
      expect(mapped.message).not.toContain('planted-secret-123');
    }
  });

  it('reads a closed port as the IdP being unreachable', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const unreachable = await thrownBy(200, '{}', undefined, () => `http://127.0.0.1:${port}`);
    expect(idpError(unreachable, IDP_STEPS.refresh).code).toBe('IDP_UNAVAILABLE');
  });

  it('knows invalid_client as the IdP no longer accepting this client, and passes an AppError through', async () => {
    expect(isClientRejected(await thrownBy(401, JSON.stringify({ error: 'invalid_client' })))).toBe(true);
    expect(isClientRejected(await thrownBy(400, JSON.stringify({ error: 'invalid_grant' })))).toBe(false);
    const own = new AppError('NOT_SIGNED_IN', 'Sign in first.');
    expect(idpError(own, IDP_STEPS.exchange)).toBe(own);
  });
});
