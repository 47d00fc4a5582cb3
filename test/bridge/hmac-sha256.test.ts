import { createHash, createHmac } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fromHex, hmacSha256Bytes, hmacSha256Hex, sha256, toHex } from '../../bridge/hmac-sha256.ts';
import { randomHex } from '../../common/node/random.ts';
import { hmacSha256 } from '../../main/core/mcp/socket-server.ts';

const text = (s: string): Uint8Array => new TextEncoder().encode(s);

describe("the bridge's own HMAC-SHA256", () => {
  it('gives the RFC 4231 §4 test vectors', () => {
    const vectors: Array<[Uint8Array, Uint8Array, string]> = [
      [fromHex('0b'.repeat(20)), text('Hi There'), 'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7'],
      [text('Jefe'), text('what do ya want for nothing?'), '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843'],
      [fromHex('aa'.repeat(20)), fromHex('dd'.repeat(50)), '773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe'],
      // a key longer than the block is hashed first (§4.7)
      [
        fromHex('aa'.repeat(131)),
        text('Test Using Larger Than Block-Size Key - Hash Key First'),
        '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54',
      ],
    ];
    for (const [key, data, mac] of vectors) expect(toHex(hmacSha256Bytes(key, data))).toBe(mac);
  });

  it('hashes the empty message and messages that straddle a block boundary as FIPS 180-4 does', () => {
    expect(toHex(sha256(new Uint8Array()))).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    for (const n of [55, 56, 63, 64, 65, 119, 120, 1000]) {
      const data = new Uint8Array(n).map((_, i) => i * 7);
      expect(toHex(sha256(data))).toBe(createHash('sha256').update(data).digest('hex'));
    }
  });

  it("agrees with node:crypto (what the core uses) on any key and message, so both halves of the handshake compute the same proofs", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.string({ maxLength: 300 }), (key, data) => {
        expect(hmacSha256Hex(toHex(key), data)).toBe(createHmac('sha256', key).update(data).digest('hex'));
        expect(hmacSha256Hex(toHex(key), data)).toBe(hmacSha256(toHex(key), data));
      }),
      { numRuns: 300 },
    );
  });

  it('reads hex keys as Buffer does, including a key with a stray character', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), (hex) => {
        expect(toHex(fromHex(hex))).toBe(Buffer.from(hex, 'hex').toString('hex'));
      }),
    );
  });

  it('draws 32 fresh random bytes for each nonce', () => {
    const nonces = Array.from({ length: 200 }, () => randomHex(32));
    for (const n of nonces) expect(n).toMatch(/^[0-9a-f]{64}$/);
    expect(new Set(nonces).size).toBe(200);
  });
});
