import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { calculateJwkThumbprint } from 'jose';
import type { JWK } from 'jose';
import { AppError } from '../../../common/errors.ts';
import type { SecretStore } from '../ports.ts';

/**
 * The install's audit keys, kept in the SecretStore (the OS keychain), never in the data directory:
 * an Ed25519 key that signs checkpoints of the chain head and forwarded Security Event Tokens, and a
 * 256-bit HMAC key for argument values the policy says to hash. Created on first use.
 */
const SIGNING_KEY_NAME = 'audit.signing-key.v1';
const HMAC_KEY_NAME = 'audit.hmac-key.v1';

export interface InstallKeys {
  privateKey: KeyObject;
  publicKey: KeyObject;
  publicJwk: JWK;
  /** RFC 7638 thumbprint of the public key: the `kid` of everything it signs. */
  kid: string;
  hmacKey: Uint8Array;
}

export async function loadInstallKeys(secrets: SecretStore): Promise<InstallKeys> {
  let signing: string | null;
  let hmac: string | null;
  try {
    signing = await secrets.get(SIGNING_KEY_NAME);
    hmac = await secrets.get(HMAC_KEY_NAME);
  } catch (e) {
    throw AppError.from(e, 'KEYCHAIN_UNAVAILABLE', 'The audit keys could not be read from the keychain.');
  }
  let privateKey: KeyObject;
  if (signing) {
    try {
      privateKey = createPrivateKey({ key: JSON.parse(signing) as JWK & { kty: string }, format: 'jwk' });
    } catch (e) {
      throw AppError.from(e, 'AUDIT_FAILED', 'The audit signing key in the keychain is unreadable.');
    }
  } else {
    privateKey = generateKeyPairSync('ed25519').privateKey;
    await store(secrets, SIGNING_KEY_NAME, JSON.stringify(privateKey.export({ format: 'jwk' })));
  }
  let hmacKey: Uint8Array;
  if (hmac) {
    hmacKey = Buffer.from(hmac, 'base64url');
  } else {
    hmacKey = randomBytes(32);
    await store(secrets, HMAC_KEY_NAME, Buffer.from(hmacKey).toString('base64url'));
  }
  const publicKey = createPublicKey(privateKey);
  const publicJwk = publicKey.export({ format: 'jwk' }) as JWK;
  const kid = await calculateJwkThumbprint(publicJwk);
  return { privateKey, publicKey, publicJwk: { ...publicJwk, kid, alg: 'EdDSA', use: 'sig' }, kid, hmacKey };
}

async function store(secrets: SecretStore, name: string, value: string): Promise<void> {
  try {
    await secrets.set(name, value);
  } catch (e) {
    throw AppError.from(e, 'KEYCHAIN_UNAVAILABLE', 'The audit keys could not be saved to the keychain.');
  }
}
