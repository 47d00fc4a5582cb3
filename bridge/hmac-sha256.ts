/**
 * HMAC-SHA256 for the bridge's handshake, from @noble/hashes (audited, no dependencies, pure
 * JavaScript) rather than node:crypto: loading node:crypto in a process that has node:net already
 * costs the bridge 6-14 ms on Node 24 (3-4 ms on Node 20) of a start Claude Desktop waits for at
 * every launch, where the two proofs from this module take well under a millisecond. The key is
 * taken in once, while the core works on the hello, and cloned for each proof. Checked against
 * RFC 4231's vectors and against node:crypto, which the core uses (test/bridge/hmac-sha256.test.ts).
 */
import { hmac } from '@noble/hashes/hmac';
import { sha256 as nobleSha256 } from '@noble/hashes/sha2';

/** SHA-256 of `data`. */
export function sha256(data: Uint8Array): Buffer {
  return Buffer.from(nobleSha256(data));
}

/** HMAC-SHA256 (RFC 2104) under `key`: the keyed state is built once, here. */
export function hmacKey(key: Uint8Array): (data: Uint8Array) => Buffer {
  const keyed = hmac.create(nobleSha256, key);
  return (data) => Buffer.from(keyed.clone().update(data).digest());
}

/**
 * The handshake's HMAC under a hex key (read as Buffer reads hex), data as UTF-8, result as lowercase
 * hex: what node:crypto gives the core for the same proof.
 */
export function hmacSha256Hex(keyHex: string): (data: string) => string {
  const mac = hmacKey(Buffer.from(keyHex, 'hex'));
  return (data) => mac(Buffer.from(data, 'utf8')).toString('hex');
}
