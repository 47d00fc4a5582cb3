/**
 * The per-install DPoP key (RFC 9449): made once and kept in the keychain, so a restored session keeps
 * the binding its tokens were issued under. In memory the private half is never extractable.
 */
import { webcrypto } from 'node:crypto';
import type { AuthKeychain } from './keychain.ts';

const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256' };

export async function installDpopKey(keychain: AuthKeychain, log: (line: string) => void): Promise<webcrypto.CryptoKeyPair> {
  const stored = await keychain.dpopKey();
  if (stored && stored !== 'unreadable') {
    const { d: _d, ...pub } = stored;
    return {
      privateKey: await webcrypto.subtle.importKey('jwk', stored, EC_P256, false, ['sign']),
      publicKey: await webcrypto.subtle.importKey('jwk', { ...pub, key_ops: ['verify'] }, EC_P256, true, ['verify']),
    };
  }
  // Tokens bound to an unreadable key cannot be used either: a new key, and a new sign-in, replace it.
  if (stored === 'unreadable') log('auth: the DPoP key kept in the keychain is unreadable; making a new one');
  const pair = (await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const jwk = await webcrypto.subtle.exportKey('jwk', pair.privateKey);
  await keychain.setDpopKey(jwk);
  return { privateKey: await webcrypto.subtle.importKey('jwk', jwk, EC_P256, false, ['sign']), publicKey: pair.publicKey };
}
