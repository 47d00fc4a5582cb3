import { createHash, createHmac } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hmacKey, hmacSha256Hex, sha256 } from '../../bridge/hmac-sha256.ts';
import { randomHex } from '../../common/node/random.ts';
import { hmacSha256 } from '../../main/core/mcp/socket-server.ts';

const hex = (s: string): Buffer => Buffer.from(s, 'hex');
const text = (s: string): Buffer => Buffer.from(s, 'utf8');

describe("the bridge's HMAC-SHA256 (@noble/hashes)", () => {
  it('gives the RFC 4231 §4 test vectors', () => {
    const vectors: Array<[Buffer, Buffer, string]> = [
      [hex('0b'.repeat(20)), text('Hi There'), 'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7'],
      [text('Jefe'), text('what do ya want for nothing?'), '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843'],
      [hex('aa'.repeat(20)), hex('dd'.repeat(50)), '773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe'],
      // a key longer than the block is hashed first (§4.7)
      [hex('aa'.repeat(131)), text('Test Using Larger Than Block-Size Key - Hash Key First'), '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54'],
      // and a longer message under it (§4.8)
      [
        hex('aa'.repeat(131)),
        text('This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.'),
        '9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2',
      ],
    ];
    for (const [key, data, mac] of vectors) expect(hmacKey(key)(data).toString('hex')).toBe(mac);
  });

  it('hashes the empty message and messages that straddle a block boundary as FIPS 180-4 does', () => {
    expect(sha256(new Uint8Array()).toString('hex')).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    for (const n of [55, 56, 63, 64, 65, 119, 120, 1000]) {
      const data = new Uint8Array(n).map((_, i) => i * 7);
      expect(sha256(data).toString('hex')).toBe(createHash('sha256').update(data).digest('hex'));
    }
  });

  it('agrees with node:crypto (what the core uses) on any key and message, so both halves of the handshake compute the same proofs', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.string({ maxLength: 300 }), (key, data) => {
        const keyHex = Buffer.from(key).toString('hex');
        expect(hmacSha256Hex(keyHex)(data)).toBe(createHmac('sha256', key).update(data).digest('hex'));
        expect(hmacSha256Hex(keyHex)(data)).toBe(hmacSha256(keyHex, data));
      }),
      { numRuns: 300 },
    );
  });

  it('gives the same answer for every message under one keyed instance, as for each keyed afresh', () => {
    const keyHex = randomHex(32);
    const keyed = hmacSha256Hex(keyHex);
    for (const data of ['countersign/1|server|a|b', 'countersign/1|client|a|b', '', 'é'.repeat(100)]) {
      expect(keyed(data)).toBe(hmacSha256Hex(keyHex)(data));
      expect(keyed(data)).toBe(createHmac('sha256', hex(keyHex)).update(data).digest('hex'));
    }
  });

  it('reads a hex key as the core does (Buffer), including a key with a stray character', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), fc.string({ maxLength: 40 }), (keyHex, data) => {
        expect(hmacSha256Hex(keyHex)(data)).toBe(hmacSha256(keyHex, data));
      }),
    );
  });

  it('draws 32 fresh random bytes for each nonce', () => {
    const nonces = Array.from({ length: 200 }, () => randomHex(32));
    for (const n of nonces) expect(n).toMatch(/^[0-9a-f]{64}$/);
    expect(new Set(nonces).size).toBe(200);
  });
});
