/**
 * HMAC-SHA256 (RFC 2104 over FIPS 180-4 SHA-256), for the bridge's handshake only.
 *
 * Written here instead of calling node:crypto because loading node:crypto costs the bridge more than
 * the rest of its own start: 6–9 ms on Node 24 and 3–7 ms on Node 20 on this machine, when the bridge
 * is run as a script (`node -e` loads node:crypto before its code runs, so timing it there shows ~0),
 * and Claude Desktop waits for that start every time it spawns the bridge. Its first run, interpreted,
 * takes well under a millisecond (docs/benchmarks.md, "Where the start went"). The handshake needs two
 * HMACs under one key; the key's two padded blocks are hashed once, when the secret is read
 * (`hmacKey`), while the core works on the hello. Checked against RFC 4231's test vectors and against
 * node:crypto on random inputs (test/bridge/hmac-sha256.test.ts). The compression function uses no
 * key-indexed table and no key-dependent branch.
 */

const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
  0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
  0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
  0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const H0 = new Int32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
const BLOCK = 64;

/**
 * One block into `state` (FIPS 180-4 §6.2.2). The rotations are written out rather than called: the
 * bridge runs this once or twice per start, interpreted, where every call costs.
 */
function compress(state: Int32Array, bytes: Uint8Array, at: number, w: Int32Array): void {
  for (let t = 0; t < 16; t++) {
    const i = at + t * 4;
    w[t] = (bytes[i]! << 24) | (bytes[i + 1]! << 16) | (bytes[i + 2]! << 8) | bytes[i + 3]!;
  }
  for (let t = 16; t < 64; t++) {
    const x = w[t - 15]!;
    const y = w[t - 2]!;
    const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
    const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
    w[t] = (w[t - 16]! + s0 + w[t - 7]! + s1) | 0;
  }
  let a = state[0]!;
  let b = state[1]!;
  let c = state[2]!;
  let d = state[3]!;
  let e = state[4]!;
  let f = state[5]!;
  let g = state[6]!;
  let h = state[7]!;
  for (let t = 0; t < 64; t++) {
    const s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const t1 = (h + s1 + ((e & f) ^ (~e & g)) + K[t]! + w[t]!) | 0;
    const s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const t2 = (s0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  state[0] = (state[0]! + a) | 0;
  state[1] = (state[1]! + b) | 0;
  state[2] = (state[2]! + c) | 0;
  state[3] = (state[3]! + d) | 0;
  state[4] = (state[4]! + e) | 0;
  state[5] = (state[5]! + f) | 0;
  state[6] = (state[6]! + g) | 0;
  state[7] = (state[7]! + h) | 0;
}

/** The digest of `data` hashed on from `state`, which has already taken in `before` bytes (whole blocks). */
function finish(state: Int32Array, data: Uint8Array, before: number): Buffer {
  const s = Int32Array.from(state);
  const padded = Buffer.alloc(Math.ceil((data.length + 9) / BLOCK) * BLOCK);
  padded.set(data);
  padded[data.length] = 0x80;
  const bits = (before + data.length) * 8;
  padded.writeUInt32BE(Math.floor(bits / 0x100000000), padded.length - 8);
  padded.writeUInt32BE(bits >>> 0, padded.length - 4);
  const w = new Int32Array(64);
  for (let at = 0; at < padded.length; at += BLOCK) compress(s, padded, at, w);
  const out = Buffer.alloc(32);
  for (let i = 0; i < 8; i++) out.writeInt32BE(s[i]!, i * 4);
  return out;
}

/** SHA-256 of `data` (FIPS 180-4 §6.2). */
export function sha256(data: Uint8Array): Buffer {
  return finish(H0, data, 0);
}

/** HMAC-SHA256 (RFC 2104 §2) under `key`: the key's inner and outer blocks are hashed once, here. */
export function hmacKey(key: Uint8Array): (data: Uint8Array) => Buffer {
  const k = key.length > BLOCK ? sha256(key) : key;
  const pad = Buffer.alloc(BLOCK * 2);
  for (let i = 0; i < BLOCK; i++) {
    const byte = i < k.length ? k[i]! : 0;
    pad[i] = byte ^ 0x36;
    pad[BLOCK + i] = byte ^ 0x5c;
  }
  const w = new Int32Array(64);
  const inner = Int32Array.from(H0);
  const outer = Int32Array.from(H0);
  compress(inner, pad, 0, w);
  compress(outer, pad, BLOCK, w);
  return (data) => finish(outer, finish(inner, data, BLOCK), BLOCK);
}

/**
 * The handshake's HMAC under a hex key (read as Buffer reads hex), data as UTF-8, result as lowercase
 * hex: what node:crypto gives the core for the same proof.
 */
export function hmacSha256Hex(keyHex: string): (data: string) => string {
  const mac = hmacKey(Buffer.from(keyHex, 'hex'));
  return (data) => mac(Buffer.from(data, 'utf8')).toString('hex');
}
