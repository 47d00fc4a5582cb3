import { randomUUID } from 'node:crypto';
import { createLocalJWKSet, exportJWK, generateKeyPair, importJWK, SignJWT } from 'jose';
import type { JWK, JWTPayload, JWTVerifyGetKey } from 'jose';

type SigningKey = Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
type PrivateJwk = JWK & { kid: string; alg: string; use: string };

/**
 * The IdP's signing keys. The first key is also the provider's own (ID tokens, JWT access tokens);
 * `rotate()` adds a new current key for what this lab signs itself (OBOs, step-up assertions) and
 * keeps every earlier key published, so tokens already out stay verifiable while relying parties
 * (Vault) have to fetch the JWKS again to learn the new `kid`.
 */
export class LabKeys {
  #keys: { jwk: PrivateJwk; key: SigningKey }[] = [];

  static async create(): Promise<LabKeys> {
    const keys = new LabKeys();
    await keys.rotate();
    return keys;
  }

  /** Keys kept from an earlier run (`privateJwks()`), newest first. */
  static async restore(jwks: PrivateJwk[]): Promise<LabKeys> {
    const keys = new LabKeys();
    for (const jwk of jwks) keys.#keys.push({ jwk, key: (await importJWK(jwk, 'ES256')) as SigningKey });
    return keys;
  }

  /** Private keys, newest first: for an IdP that must come back with the same keys after a restart. */
  privateJwks(): PrivateJwk[] {
    return this.#keys.map(({ jwk }) => jwk);
  }

  async rotate(): Promise<void> {
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    const jwk = { ...(await exportJWK(privateKey)), kid: randomUUID(), alg: 'ES256', use: 'sig' } as PrivateJwk;
    this.#keys.unshift({ jwk, key: privateKey });
  }

  /** The provider's key: the one it was constructed with, which it uses for everything it signs. */
  get providerJwk(): PrivateJwk {
    return this.#keys[this.#keys.length - 1]!.jwk;
  }

  publicJwks(): { keys: JWK[] } {
    return {
      keys: this.#keys.map(({ jwk }) => {
        const { d: _d, ...pub } = jwk;
        return pub;
      }),
    };
  }

  verifier(): JWTVerifyGetKey {
    return createLocalJWKSet(this.publicJwks() as Parameters<typeof createLocalJWKSet>[0]);
  }

  async sign(payload: JWTPayload, typ: string): Promise<string> {
    const current = this.#keys[0]!;
    return new SignJWT(payload).setProtectedHeader({ alg: 'ES256', kid: current.jwk.kid, typ }).sign(current.key);
  }
}
