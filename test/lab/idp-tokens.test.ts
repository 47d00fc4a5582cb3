import { createRemoteJWKSet, jwtVerify } from 'jose';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startIdp } from '../../lab/idp/index.ts';
import type { LabIdp } from '../../lab/idp/index.ts';
import { authorize, decodeJwt, exchange, pkce, postForm, readDetails, redeemCode, signIn } from './idp-fixtures.ts';

// The lab IdP's native-client token handling over real sockets: PKCE, loopback redirects, refresh
// rotation with reuse detection, revocation (RFC 7009), JWKS rotation and the token endpoint faults.

let idp: LabIdp;
const alice = { username: 'alice', password: 'alice-lab-pw' };

beforeAll(async () => {
  idp = await startIdp();
});

afterAll(async () => {
  idp.setFault(null);
  await idp?.stop();
});

function refresh(refreshToken: string) {
  return postForm(idp.tokenEndpoint, { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: idp.nativeClientId });
}

describe('discovery', () => {
  it('publishes the endpoints, PKCE S256 only, the grants and the RAR types', async () => {
    const meta = (await (await fetch(`${idp.issuer}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
    expect(meta).toMatchObject({
      issuer: idp.issuer,
      jwks_uri: idp.jwksUri,
      token_endpoint: idp.tokenEndpoint,
      code_challenge_methods_supported: ['S256'],
      authorization_details_types_supported: ['postgres', 'mcp_tool_call', 'api_key', 'vault:path_access'],
      acr_values_supported: ['urn:countersign:acr:pwd', 'urn:countersign:acr:mfa'],
    });
    expect(meta.grant_types_supported).toEqual(
      expect.arrayContaining([
        'authorization_code',
        'refresh_token',
        'urn:ietf:params:oauth:grant-type:token-exchange',
        'urn:ietf:params:oauth:grant-type:device_code',
        'urn:ietf:params:oauth:grant-type:jwt-bearer',
      ]),
    );
    expect(meta.issuer).not.toMatch(/\/$/);
    expect(meta.revocation_endpoint).toBeTypeOf('string');
    expect(meta.registration_endpoint).toBeTypeOf('string');
    expect(meta.device_authorization_endpoint).toBeTypeOf('string');
    expect(meta.dpop_signing_alg_values_supported).toContain('ES256');
  });
});

describe('authorization code with PKCE', () => {
  it('issues a JWT access token for the app with acr and auth_time, an ID token with name and email, and a refresh token', async () => {
    const t = await signIn(idp, alice);
    const at = await jwtVerify(t.access_token, createRemoteJWKSet(new URL(idp.jwksUri)), { issuer: idp.issuer, audience: 'urn:countersign:app', typ: 'at+jwt' });
    expect(at.payload).toMatchObject({ acr: 'urn:countersign:acr:pwd', client_id: 'countersign-desktop' });
    expect(at.payload.auth_time).toBeTypeOf('number');
    const id = decodeJwt(t.id_token!);
    expect(id).toMatchObject({ name: 'Alice Lab', email: 'alice@lab.countersign.test', aud: 'countersign-desktop' });
    expect(t.refresh_token).toBeTypeOf('string');
  });

  it('accepts loopback redirects on any port', async () => {
    for (const port of [50001, 61234]) {
      const a = await authorize(idp, { ...alice, redirectPort: port });
      expect(a.redirectUri).toBe(`http://127.0.0.1:${port}/callback`);
    }
  });

  it('refuses an authorization request without a PKCE challenge', async () => {
    const url = new URL(`${idp.issuer}/auth`);
    url.search = new URLSearchParams({
      client_id: idp.nativeClientId,
      response_type: 'code',
      redirect_uri: 'http://127.0.0.1:50002/callback',
      scope: 'openid',
      state: 'abc',
    }).toString();
    const res = await fetch(url, { redirect: 'manual' });
    const location = new URL(res.headers.get('location')!);
    expect(location.origin).toBe('http://127.0.0.1:50002');
    expect(location.searchParams.get('error')).toBe('invalid_request');
    expect(location.searchParams.get('code')).toBeNull();
  });

  it('refuses a redirect that is not a loopback address', async () => {
    const { challenge } = pkce();
    const url = new URL(`${idp.issuer}/auth`);
    url.search = new URLSearchParams({
      client_id: idp.nativeClientId,
      response_type: 'code',
      redirect_uri: 'http://evil.example/callback',
      scope: 'openid',
      code_challenge: challenge,
      code_challenge_method: 'S256',
    }).toString();
    const res = await fetch(url, { redirect: 'manual' });
    expect(res.status).toBe(400);
    expect(res.headers.get('location')).toBeNull();
  });

  it('refuses a code redeemed with the wrong verifier', async () => {
    const a = await authorize(idp, alice);
    const res = await redeemCode(idp, alice, { ...a, verifier: pkce().verifier });
    expect(res.json.error).toBe('invalid_grant');
  });

  it('refuses a code redeemed twice', async () => {
    const a = await authorize(idp, alice);
    expect((await redeemCode(idp, alice, a)).status).toBe(200);
    const again = await redeemCode(idp, alice, a);
    expect(again.json.error).toBe('invalid_grant');
  });

  it('records a one-time code login as mfa when acr_values asks for it', async () => {
    await expect(signIn(idp, { ...alice, acrValues: 'urn:countersign:acr:mfa' })).rejects.toThrow(/one-time code|not accepted|unexpected page/);
    const t = await signIn(idp, { ...alice, acrValues: 'urn:countersign:acr:mfa', otp: '246810' });
    expect(decodeJwt(t.access_token).acr).toBe('urn:countersign:acr:mfa');
    const obo = await exchange(idp, t.access_token);
    expect(decodeJwt(String(obo.json.access_token)).acr).toBe('urn:countersign:acr:mfa');
  });
});

describe('refresh tokens', () => {
  it('rotates the refresh token on every use and keeps acr in the new access token', async () => {
    const t = await signIn(idp, alice);
    const r1 = await refresh(t.refresh_token!);
    expect(r1.status).toBe(200);
    expect(r1.json.refresh_token).toBeTypeOf('string');
    expect(r1.json.refresh_token).not.toBe(t.refresh_token);
    expect(decodeJwt(String(r1.json.access_token))).toMatchObject({ acr: 'urn:countersign:acr:pwd', aud: 'urn:countersign:app' });
  });

  it('treats reuse of a rotated refresh token as theft and revokes the whole grant', async () => {
    const t = await signIn(idp, alice);
    const r1 = await refresh(t.refresh_token!);
    const reuse = await refresh(t.refresh_token!);
    expect(reuse.json.error).toBe('invalid_grant');
    const successor = await refresh(String(r1.json.refresh_token));
    expect(successor.json.error).toBe('invalid_grant');
    // the access tokens of that sign-in can no longer be exchanged either
    const obo = await exchange(idp, String(r1.json.access_token));
    expect(obo.json).toMatchObject({ error: 'invalid_request', error_description: 'the sign-in behind the subject token has ended: sign in again' });
  });

  it('revokes a refresh token (RFC 7009) so it no longer refreshes', async () => {
    const t = await signIn(idp, alice);
    const rev = await postForm(`${idp.issuer}/token/revocation`, {
      token: t.refresh_token!,
      token_type_hint: 'refresh_token',
      client_id: idp.nativeClientId,
    });
    expect(rev.status).toBe(200);
    expect((await refresh(t.refresh_token!)).json.error).toBe('invalid_grant');
    expect((await exchange(idp, t.access_token)).json.error).toBe('invalid_request');
  });

  it('keeps exchanging for a sign-in that stands', async () => {
    const t = await signIn(idp, alice);
    const r1 = await refresh(t.refresh_token!);
    expect((await exchange(idp, t.access_token)).status).toBe(200);
    expect((await exchange(idp, String(r1.json.access_token))).status).toBe(200);
  });

  it('answers 200 to the revocation of an unknown token', async () => {
    const rev = await postForm(`${idp.issuer}/token/revocation`, { token: 'no-such-token', client_id: idp.nativeClientId });
    expect(rev.status).toBe(200);
  });
});

describe('keys and faults', () => {
  it('rotates its JWKS: new OBOs carry the new kid, the old key stays published', async () => {
    const t = await signIn(idp, alice);
    const before = ((await (await fetch(idp.jwksUri)).json()) as { keys: { kid: string }[] }).keys.map((k) => k.kid);
    await idp.rotateKeys();
    const after = ((await (await fetch(idp.jwksUri)).json()) as { keys: { kid: string }[] }).keys.map((k) => k.kid);
    expect(after).toEqual(expect.arrayContaining(before));
    expect(after.length).toBe(before.length + 1);
    const obo = String((await exchange(idp, t.access_token)).json.access_token);
    const { protectedHeader } = await jwtVerify(obo, createRemoteJWKSet(new URL(idp.jwksUri)), { issuer: idp.issuer });
    expect(before).not.toContain(protectedHeader.kid);
    expect(after).toContain(protectedHeader.kid);
    // the user's token, signed before the rotation, is still accepted
    expect((await exchange(idp, t.access_token)).status).toBe(200);
  });

  it('injects token endpoint faults and clears them', async () => {
    const t = await signIn(idp, alice);
    try {
      idp.setFault({ status: 503 });
      const down = await exchange(idp, t.access_token);
      expect(down.status).toBe(503);
      expect(down.json.error).toBe('temporarily_unavailable');

      idp.setFault({ garbage: true });
      const res = await fetch(idp.tokenEndpoint, { method: 'POST', body: new URLSearchParams({ grant_type: 'refresh_token' }) });
      expect(res.status).toBe(200);
      await expect(res.clone().json()).rejects.toThrow();

      idp.setFault({ delayMs: 300 });
      const t0 = performance.now();
      const slow = await exchange(idp, t.access_token);
      expect(performance.now() - t0).toBeGreaterThanOrEqual(290);
      expect(slow.status).toBe(200);

      // discovery is not the token endpoint: unaffected
      idp.setFault({ status: 500 });
      expect((await fetch(`${idp.issuer}/.well-known/openid-configuration`)).status).toBe(200);
    } finally {
      idp.setFault(null);
    }
    expect((await exchange(idp, t.access_token)).status).toBe(200);
  });
});

describe('interoperability with openid-client (the app\'s OIDC library)', () => {
  it('validates the callback, then exchanges and refreshes with a DPoP key', async () => {
    const config = await oidc.discovery(new URL(idp.issuer), idp.nativeClientId, undefined, oidc.None(), {
      execute: [oidc.allowInsecureRequests],
    });
    const DPoP = oidc.getDPoPHandle(config, await oidc.randomDPoPKeyPair('ES256'));
    const a = await authorize(idp, alice);
    const callback = new URL(a.redirectUri);
    callback.search = new URLSearchParams({ code: a.code, iss: idp.issuer }).toString();
    const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: a.verifier }, { resource: 'urn:countersign:app' }, { DPoP });
    expect(tokens.token_type).toBe('dpop');
    expect(tokens.claims()).toMatchObject({ name: 'Alice Lab', email: 'alice@lab.countersign.test' });

    const obo = await oidc.genericGrantRequest(
      config,
      'urn:ietf:params:oauth:grant-type:token-exchange',
      {
        subject_token: tokens.access_token,
        subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
        audience: idp.vaultAudience,
        authorization_details: JSON.stringify(readDetails()),
      },
      { DPoP },
    );
    expect(obo).toMatchObject({ token_type: 'dpop', expires_in: 60, issued_token_type: 'urn:ietf:params:oauth:token-type:access_token' });

    const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token!, undefined, { DPoP });
    expect(refreshed.refresh_token).not.toBe(tokens.refresh_token);
  });
});
