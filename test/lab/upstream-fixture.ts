/**
 * A minimal token issuer for testing the upstream before (and independently of) the lab IdP: an ES256
 * key served as a JWKS over real HTTP, and tokens shaped like the IdP's OBO tokens.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT } from 'jose';
import type { CryptoKey, JWK } from 'jose';
import { argumentDigest } from '../../lab/upstream/canonical-json.ts';

export interface TestIssuer {
  issuer: string;
  jwksUri: string;
  mint(claims: Record<string, unknown>, options?: { key?: CryptoKey; lifetime?: number }): Promise<string>;
  stop(): Promise<void>;
}

export async function startTestIssuer(): Promise<TestIssuer> {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'test-1', alg: 'ES256', use: 'sig' };
  const server = createServer((req, res) => {
    if (req.url === '/jwks') res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }));
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    issuer,
    jwksUri: `${issuer}/jwks`,
    async mint(claims, options = {}) {
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ jti: randomUUID(), iat: now, exp: now + (options.lifetime ?? 60), ...claims })
        .setProtectedHeader({ alg: 'ES256', kid: 'test-1', typ: 'at+jwt' })
        .setIssuer(issuer)
        .sign(options.key ?? privateKey);
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The claims of an OBO token for one call of `tool` at `url`, as the lab IdP issues them. */
export function callClaims(url: string, tool: string, args: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return {
    sub: 'alice-sub',
    aud: url,
    act: { sub: 'countersign-desktop' },
    client_id: 'countersign-desktop',
    acr: 'urn:countersign:acr:pwd',
    auth_time: Math.floor(Date.now() / 1000) - 10,
    vault_role: 'upstream-call',
    authorization_details: [
      { type: 'mcp_tool_call', locations: [url], actions: ['call'], identifier: tool, argument_digest: argumentDigest(args) },
    ],
    ...extra,
  };
}

export async function dpopKey(): Promise<{ privateKey: CryptoKey; publicJwk: JWK; jkt: string }> {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const publicJwk = await exportJWK(publicKey);
  return { privateKey, publicJwk, jkt: await calculateJwkThumbprint(publicJwk) };
}

export async function dpopProof(key: { privateKey: CryptoKey; publicJwk: JWK }, method: string, url: string, token: string) {
  return new SignJWT({
    jti: randomUUID(),
    htm: method,
    htu: url,
    iat: Math.floor(Date.now() / 1000),
    ath: createHash('sha256').update(token).digest('base64url'),
  })
    .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: key.publicJwk })
    .sign(key.privateKey);
}
