import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LineSplitter, clientProof, constantTimeEqual, parseChallenge, parseHello, serverProof } from '../../common/handshake.ts';
import { resolvePaths } from '../../common/paths.ts';
import { resultId } from '../../bridge/json-rpc.ts';
import { hmacSha256 } from '../../main/core/mcp/socket-server.ts';

describe('resolvePaths', () => {
  it('follows XDG on Linux, with the socket in the runtime directory', () => {
    expect(resolvePaths({ platform: 'linux', env: { XDG_STATE_HOME: '/s', XDG_RUNTIME_DIR: '/run/user/1000' }, home: '/home/u' })).toMatchObject({
      dataDir: '/s/countersign',
      runDir: '/run/user/1000/countersign',
      socketPath: '/run/user/1000/countersign/core.sock',
      secretPath: '/run/user/1000/countersign/core.secret',
      logDir: '/s/countersign/logs',
    });
    expect(resolvePaths({ platform: 'linux', env: {}, home: '/home/u' })).toMatchObject({
      dataDir: '/home/u/.local/state/countersign',
      runDir: '/home/u/.local/state/countersign/run',
    });
  });

  it('uses Application Support and Logs on macOS', () => {
    expect(resolvePaths({ platform: 'darwin', env: {}, home: '/Users/u' })).toMatchObject({
      dataDir: '/Users/u/Library/Application Support/Countersign',
      socketPath: '/Users/u/Library/Application Support/Countersign/run/core.sock',
      logDir: '/Users/u/Library/Logs/Countersign',
    });
  });

  it('uses a named pipe carrying the SID and a random part on Windows', () => {
    const p = resolvePaths({ platform: 'win32', env: { LOCALAPPDATA: 'C:\\Users\\u\\AppData\\Local' }, home: 'C:\\Users\\u', sid: 'S-1-5-21-1-2-3-1001', pipeNonce: 'k3j4' });
    expect(p.socketPath).toBe('\\\\.\\pipe\\countersign-S-1-5-21-1-2-3-1001-k3j4');
    expect(p.dataDir).toBe('C:\\Users\\u\\AppData\\Local\\Countersign');
  });

  it('lets COUNTERSIGN_HOME override everything', () => {
    expect(resolvePaths({ platform: 'darwin', env: { COUNTERSIGN_HOME: '/t/h/', XDG_RUNTIME_DIR: '/r' }, home: '/Users/u' })).toEqual({
      dataDir: '/t/h',
      runDir: '/t/h/run',
      socketPath: '/t/h/run/core.sock',
      secretPath: '/t/h/run/core.secret',
      logDir: '/t/h/logs',
      pipeNoncePath: '/t/h/pipe-nonce',
    });
  });
});

describe('handshake', () => {
  const secret = 'a1'.repeat(32);
  const cn = 'b2'.repeat(32);
  const sn = 'c3'.repeat(32);

  it('gives the two roles different proofs, so a reflected proof does not pass', () => {
    expect(serverProof(hmacSha256, secret, cn, sn)).not.toBe(clientProof(hmacSha256, secret, cn, sn));
    expect(serverProof(hmacSha256, secret, cn, sn)).not.toBe(serverProof(hmacSha256, 'ff'.repeat(32), cn, sn));
  });

  it('accepts only well-formed handshake lines', () => {
    expect(parseHello(JSON.stringify({ t: 'countersign/hello', v: 1, nonce: cn }))).toBeDefined();
    expect(parseHello(JSON.stringify({ t: 'countersign/hello', v: 2, nonce: cn }))).toBeUndefined();
    expect(parseHello(JSON.stringify({ t: 'countersign/hello', v: 1, nonce: 'short' }))).toBeUndefined();
    expect(parseChallenge(JSON.stringify({ t: 'countersign/challenge', v: 1, nonce: sn, proof: 'zz' }))).toBeUndefined();
    expect(parseChallenge('{"t":"countersign/refused","code":"HANDSHAKE_FAILED","message":"no"}')).toMatchObject({ code: 'HANDSHAKE_FAILED' });
  });

  it('compares proofs by value', () => {
    fc.assert(fc.property(fc.string(), fc.string(), (a, b) => constantTimeEqual(a, b) === (a === b)));
  });
});

describe('LineSplitter', () => {
  it('reassembles lines however the bytes are chunked', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ unit: 'grapheme' }).filter((s) => !s.includes('\n') && s.trim() !== ''), { maxLength: 20 }), fc.array(fc.nat(50)), (lines, cuts) => {
        const bytes = new TextEncoder().encode(lines.map((l) => l + '\n').join(''));
        const got: string[] = [];
        const splitter = new LineSplitter({ maxLineBytes: 1 << 20, onLine: (l) => got.push(l) });
        let at = 0;
        for (const cut of cuts) {
          splitter.push(bytes.subarray(at, Math.min(bytes.length, at + cut)));
          at = Math.min(bytes.length, at + cut);
        }
        splitter.push(bytes.subarray(at));
        expect(got).toEqual(lines.map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l)));
      }),
    );
  });

  it('passes lines on byte for byte in byte mode, each with its newline, however the bytes are chunked', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ unit: 'grapheme' }).filter((s) => !s.includes('\n') && s !== '' && s !== '\r'), { maxLength: 20 }), fc.array(fc.nat(50)), (lines, cuts) => {
        const bytes = new TextEncoder().encode(lines.map((l) => l + '\n').join(''));
        const got: Uint8Array[] = [];
        const splitter = new LineSplitter({ maxLineBytes: 1 << 20, onLineBytes: (l) => got.push(l.slice()) });
        let at = 0;
        for (const cut of cuts) {
          splitter.push(bytes.subarray(at, Math.min(bytes.length, at + cut)));
          at = Math.min(bytes.length, at + cut);
        }
        splitter.push(bytes.subarray(at));
        expect(got.map((b) => new TextDecoder().decode(b))).toEqual(lines.map((l) => l + '\n'));
      }),
    );
  });

  it('drops an oversized line in byte mode too', () => {
    const got: string[] = [];
    const over: number[] = [];
    const s = new LineSplitter({ maxLineBytes: 10, onLineBytes: (l) => got.push(new TextDecoder().decode(l)), onOversize: (n) => over.push(n) });
    s.push(new TextEncoder().encode('0123456789ABCDEF\nok\n'));
    s.push(new TextEncoder().encode('0123456789A'));
    s.push(new TextEncoder().encode('B\nyes\n'));
    expect(over).toEqual([16, 12]);
    expect(got).toEqual(['ok\n', 'yes\n']);
  });

  it('drops an oversized line and carries on with the next', () => {
    const got: string[] = [];
    const over: number[] = [];
    const s = new LineSplitter({ maxLineBytes: 10, onLine: (l) => got.push(l), onOversize: (n) => over.push(n) });
    s.push(new TextEncoder().encode('0123456789ABCDEF'));
    s.push(new TextEncoder().encode('GHIJ\nok\n'));
    expect(over).toEqual([20]);
    expect(got).toEqual(['ok']);
  });

  it('hands every byte after the last handshake line to the next reader, even those that came in the same chunk, in either mode', () => {
    const dec = (chunks: Uint8Array[]): string => new TextDecoder().decode(Buffer.concat(chunks));
    fc.assert(
      fc.property(
        fc.array(fc.string().filter((s) => !s.includes('\n') && s.trim() !== ''), { maxLength: 3 }),
        fc.string({ unit: 'grapheme' }),
        fc.array(fc.nat(40)),
        fc.boolean(),
        (before, after, cuts, byteMode) => {
          const bytes = new TextEncoder().encode([...before, 'LAST'].map((l) => l + '\n').join('') + after);
          const seen: string[] = [];
          let rest: Uint8Array[] | undefined;
          const onText = (line: string): void => {
            if (rest) throw new Error('a line was emitted after takeRest');
            seen.push(line);
            if (line === 'LAST') {
              splitter.pause();
              rest = splitter.takeRest();
            }
          };
          const splitter = byteMode
            ? new LineSplitter({ maxLineBytes: 1 << 20, onLineBytes: (l) => onText(new TextDecoder().decode(l).replace(/\r?\n$/, '')) })
            : new LineSplitter({ maxLineBytes: 1 << 20, onLine: onText });
          let at = 0;
          for (const cut of cuts) {
            splitter.push(bytes.subarray(at, Math.min(bytes.length, at + cut)));
            at = Math.min(bytes.length, at + cut);
            // what a reader that took over after the handshake gets from later chunks
            if (rest && at < bytes.length) break;
          }
          if (!rest) splitter.push(bytes.subarray(at));
          else rest.push(bytes.subarray(at));
          expect(seen.at(-1)).toBe('LAST');
          expect(dec(rest!)).toBe(after);
        },
      ),
    );
  });
});

describe("the bridge's reading of a result's id (resultId)", () => {
  const enc = (m: unknown) => new TextEncoder().encode(JSON.stringify(m) + '\n');
  const id = fc.oneof(fc.integer(), fc.string({ maxLength: 40 }));
  it('reads the id of any result written in the SDK key order, and never a wrong one', () => {
    fc.assert(
      fc.property(fc.jsonValue(), id, (result, rid) => {
        const got = resultId(enc({ result, jsonrpc: '2.0', id: rid }));
        // A string id with characters JSON escapes is left to the full parse.
        if (got !== undefined || typeof rid === 'number' || JSON.stringify(rid) === `"${rid}"`) expect(got).toEqual(rid);
      }),
    );
  });
  it('reads no id from a request, a notification, an error or a result in another key order', () => {
    fc.assert(
      fc.property(fc.jsonValue(), id, (v, rid) => {
        expect(resultId(enc({ method: 'x', params: { result: v }, jsonrpc: '2.0', id: rid }))).toBeUndefined();
        expect(resultId(enc({ jsonrpc: '2.0', method: 'notifications/progress', params: { v } }))).toBeUndefined();
        expect(resultId(enc({ jsonrpc: '2.0', id: rid, error: { code: 1, message: 'm', data: v } }))).toBeUndefined();
        expect(resultId(enc({ jsonrpc: '2.0', id: rid, result: v }))).toBeUndefined();
        // A result whose own content ends the way a result does: the id is the outer one.
        const inner = { result: 1, jsonrpc: '2.0', id: 'inner' };
        expect(resultId(enc({ result: { v, inner }, jsonrpc: '2.0', id: 7 }))).toBe(7);
      }),
    );
  });
});
