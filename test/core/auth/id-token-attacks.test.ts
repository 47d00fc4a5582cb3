import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import type { CryptoKey, JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '../../../common/errors.ts';
import { AuthService } from '../../../main/core/auth/auth-service.ts';
import { MemorySecretStore } from '../../../main/core/secrets/memory-store.ts';

// A hostile identity provider on a real socket: it completes the sign-in but signs ID tokens whose
// issuer, audience or nonce are not what the sign-in asked for, or answers discovery with garbage.

type Mode = 'honest' | 'wrong-iss' | 'wrong-aud' | 'wrong-nonce' | 'garbage-discovery';
let mode: Mode = 'honest';
let server: Server;
let issuer: string;
let key: CryptoKey;
let jwk: JWK;
const nonces = new Map<string, string>();

beforeAll(async () => {
  const pair = await generateKeyPair('ES256');
  key = pair.privateKey;
  jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
  server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', issuer);
    const json = (body: unknown) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (url.pathname === '/.well-known/openid-configuration') {
      if (mode === 'garbage-discovery') {
        res.writeHead(200, { 'content-type': 'application/json' });
        return res.end('<html>surprise');
      }
      return json({
        issuer,
        authorization_endpoint: `${issuer}/authorize`,
        token_endpoint: `${issuer}/token`,
        jwks_uri: `${issuer}/jwks`,
        response_types_supported: ['code'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['ES256'],
        code_challenge_methods_supported: ['S256'],
      });
    }
    if (url.pathname === '/jwks') return json({ keys: [jwk] });
    if (url.pathname === '/authorize') {
      const code = `code-${Math.random().toString(36).slice(2)}`;
      nonces.set(code, url.searchParams.get('nonce') ?? '');
      const back = new URL(url.searchParams.get('redirect_uri')!);
      back.searchParams.set('code', code);
      back.searchParams.set('state', url.searchParams.get('state')!);
      res.writeHead(302, { location: back.href });
      return res.end();
    }
    if (url.pathname === '/token' && req.method === 'POST') {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const code = new URLSearchParams(body).get('code') ?? '';
        void new SignJWT({
          nonce: mode === 'wrong-nonce' ? 'a-nonce-from-another-sign-in' : nonces.get(code),
          name: 'Mallory',
        })
          .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
          .setIssuer(mode === 'wrong-iss' ? 'https://evil.example' : issuer)
          .setAudience(mode === 'wrong-aud' ? 'some-other-client' : 'countersign-desktop')
          .setSubject('mallory')
          .setIssuedAt()
          .setExpirationTime('5m')
          .sign(key)
          .then((id_token) => json({ access_token: 'evil-access-token', token_type: 'Bearer', expires_in: 300, refresh_token: 'evil-refresh-token', id_token }));
      });
      return;
    }
    res.writeHead(404);
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server?.closeAllConnections();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
});

/** The "browser": follows the IdP's redirect straight back to the loopback listener. */
const follow = async (url: string) => {
  await fetch(url);
};

async function signInWith(m: Mode): Promise<{ error: unknown; service: AuthService; secrets: MemorySecretStore }> {
  mode = m;
  const secrets = new MemorySecretStore('test');
  const service = await AuthService.create({
    config: { issuer, clientId: 'countersign-desktop', allowInsecureHttpForLoopbackOnly: true, requestTimeoutSeconds: 2 },
    secrets,
    openExternal: follow,
  });
  const error = await service.signIn().then(
    () => null,
    (e: unknown) => e,
  );
  return { error, service, secrets };
}

describe('ID token validation at sign-in', () => {
  it('signs in against this IdP when it behaves (the attacks below differ only in one claim)', async () => {
    const { error, service } = await signInWith('honest');
    expect(error).toBeNull();
    expect(service.status()).toMatchObject({ state: 'signed_in', user: { sub: 'mallory' } });
  });

  for (const [m, claim] of [
    ['wrong-iss', 'iss'],
    ['wrong-aud', 'aud'],
    ['wrong-nonce', 'nonce'],
  ] as const) {
    it(`refuses an ID token with the wrong ${claim} and keeps nothing`, async () => {
      const { error, service } = await signInWith(m);
      expect(AppError.is(error, 'IDP_BAD_RESPONSE')).toBe(true);
      expect((error as AppError).message).toContain(`its ${claim} claim`);
      expect(service.status()).toEqual({ state: 'signed_out' });
      expect(service.user()).toBeNull();
      await expect(service.getAccessToken()).rejects.toMatchObject({ code: 'NOT_SIGNED_IN' });
    });
  }

  it('refuses an IdP whose discovery document is not JSON with IDP_BAD_RESPONSE', async () => {
    const { error } = await signInWith('garbage-discovery');
    expect(AppError.is(error, 'IDP_BAD_RESPONSE')).toBe(true);
    expect((error as AppError).message).not.toContain('surprise');
  });
});
