import { createHash, webcrypto } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AuthService } from '../../../main/core/auth/auth-service.ts';
import { AuthKeychain } from '../../../main/core/auth/keychain.ts';
import { MemorySecretStore } from '../../../main/core/secrets/memory-store.ts';

// What sign-in keeps is read through schemas: an entry in another shape is reported, never cast.
const issuer = 'https://idp.example';
const key = (name: string) => `${createHash('sha256').update(issuer).digest('hex').slice(0, 12)}:${name}`;

describe("sign-in's keychain entries", () => {
  it('reads a kept session, and reports one of another shape as unreadable', async () => {
    const secrets = new MemorySecretStore('no keychain in this test');
    const keychain = new AuthKeychain(secrets, issuer);
    expect(await keychain.session()).toBeNull();
    await keychain.setSession({ refresh_token: 'rt-1', user: { sub: 'alice', name: 'Alice' } });
    expect(await keychain.session()).toEqual({ refresh_token: 'rt-1', user: { sub: 'alice', name: 'Alice' } });
    for (const bad of ['not json', '{"refresh_token":5,"user":{"sub":"alice"}}', '{"refresh_token":"rt","user":{}}', 'null']) {
      await secrets.set(key('session'), bad);
      expect(await keychain.session(), bad).toBe('unreadable');
    }
  });

  it('reads a registered client only with its private key', async () => {
    const secrets = new MemorySecretStore('no keychain in this test');
    const keychain = new AuthKeychain(secrets, issuer);
    const pair = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
    const { d: _d, ...publicOnly } = await webcrypto.subtle.exportKey('jwk', pair.privateKey);
    await secrets.set(key('client'), JSON.stringify({ client_id: 'c-1', jwk: publicOnly }));
    expect(await keychain.client()).toBe('unreadable');
    await keychain.setClient({ client_id: 'c-1', jwk: await webcrypto.subtle.exportKey('jwk', pair.privateKey) });
    expect(await keychain.client()).toMatchObject({ client_id: 'c-1', jwk: { kty: 'EC', crv: 'P-256' } });
  });

  it('drops a kept session that is not one at start instead of using it, without asking the IdP', async () => {
    const secrets = new MemorySecretStore('no keychain in this test');
    await secrets.set(key('session'), JSON.stringify({ refresh_token: ['rt'], user: { sub: 'mallory' } }));
    const logs: string[] = [];
    const service = await AuthService.create({ config: { issuer, clientId: 'countersign' }, secrets, openExternal: async () => {}, log: (l) => logs.push(l) });
    expect(service.status()).toEqual({ state: 'signed_out' });
    expect(service.user()).toBeNull();
    expect(await secrets.get(key('session'))).toBeNull();
    await service.close();
  });
});
