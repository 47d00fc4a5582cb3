/**
 * The JWKS a Vault auth method reads from `jwks_url`, fetched on first use and again when a token names
 * a key it has not seen (an IdP's key rotation), as go-oidc's RemoteKeySet does.
 */
import { compactVerify, createLocalJWKSet, errors as joseErrors } from 'jose';
import type { JSONWebKeySet, JWTVerifyGetKey } from 'jose';

/** A remote JWKS, re-fetched when a token's `kid` is unknown (as go-oidc's RemoteKeySet does). */
export class RemoteKeys {
  private readonly url: string;
  private set: JWTVerifyGetKey | undefined;
  private inflight: Promise<JWTVerifyGetKey> | undefined;
  constructor(url: string) {
    this.url = url;
  }
  async refresh(): Promise<JWTVerifyGetKey> {
    this.inflight ??= (async () => {
      try {
        const res = await fetch(this.url, { signal: AbortSignal.timeout(5_000) });
        if (!res.ok) throw new Error(`JWKS fetch answered ${res.status}`);
        const jwks = (await res.json()) as JSONWebKeySet;
        if (!Array.isArray(jwks.keys)) throw new Error('JWKS has no keys');
        this.set = createLocalJWKSet(jwks);
        return this.set;
      } finally {
        this.inflight = undefined;
      }
    })();
    return this.inflight;
  }
  async verify(token: string, algorithms: string[]): Promise<Uint8Array> {
    const set = this.set ?? (await this.refresh());
    try {
      return (await compactVerify(token, set, { algorithms })).payload;
    } catch (e) {
      if (!(e instanceof joseErrors.JWKSNoMatchingKey || e instanceof joseErrors.JWSSignatureVerificationFailed)) throw e;
      return (await compactVerify(token, await this.refresh(), { algorithms })).payload;
    }
  }
}
