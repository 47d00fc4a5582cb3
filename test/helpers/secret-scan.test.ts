import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { SignJWT } from 'jose';
import { artifactBytes, scanForSecrets, secretForms, type SecretEncoding } from './secret-scan.ts';

let dir: string;
let jwt: string;
const password = 'A1a-' + randomBytes(18).toString('base64url');
const apiKey = 'k/+' + randomBytes(21).toString('base64') + ' "q"&=';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'countersign-scan-'));
  jwt = await new SignJWT({ sub: 'alice', jti: randomBytes(8).toString('hex') })
    .setProtectedHeader({ alg: 'HS256' })
    .sign(randomBytes(32));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const found = async (secret: string, text: string): Promise<SecretEncoding[]> =>
  (await scanForSecrets({ s: secret }, [{ kind: 'text', name: 't', text }])).map((h) => h.encoding);

describe('the secret scanner', () => {
  it('finds a secret raw', async () => {
    expect(await found(password, `log: connecting with ${password} now`)).toContain('raw');
  });

  it('finds a secret base64url- and base64-encoded', async () => {
    // Chosen so that the two alphabets differ (`+`/`/` against `-`/`_`).
    const key = '??>>??>>~~~~' + password;
    expect(Buffer.from(key).toString('base64')).toMatch(/[+/]/);
    expect(await found(key, `x=${Buffer.from(key).toString('base64url')}`)).toContain('base64url');
    expect(await found(key, `x=${Buffer.from(key).toString('base64')}`)).toContain('base64');
  });

  it('finds a secret base64-encoded inside a longer value at every byte alignment (user:password in a Basic header)', async () => {
    for (const prefix of ['u:', 'us:', 'use:', 'v-clinic-read-12:']) {
      const header = `Authorization: Basic ${Buffer.from(prefix + password + '\n').toString('base64')}`;
      expect(await found(password, header), prefix).toContain('base64');
    }
  });

  it('finds a secret percent-encoded and form-encoded', async () => {
    expect(await found(apiKey, `GET /x?key=${encodeURIComponent(apiKey)}`)).toContain('percent');
    expect(await found(apiKey, `body: ${new URLSearchParams({ key: apiKey }).toString()}`)).toContain('form-urlencoded');
  });

  it('finds a secret JSON-escaped', async () => {
    expect(await found(apiKey, JSON.stringify({ key: apiKey }))).toContain('json');
    expect(await found(apiKey, apiKey)).not.toContain('json');
  });

  it('finds a secret hex-encoded, in lower and upper case', async () => {
    const hex = Buffer.from(apiKey).toString('hex');
    expect(await found(apiKey, `dump: ${hex}`)).toContain('hex');
    expect(await found(apiKey, `DUMP: ${hex.toUpperCase()}`)).toContain('hex-upper');
    expect(await found(apiKey, 'no hex of it here: ' + Buffer.from(password).toString('hex'))).toEqual([]);
  });

  it('finds a secret stored as UTF-16 little- and big-endian inside a binary file (as SQLite pages of a browser profile hold it)', async () => {
    const le = Buffer.from(password, 'utf16le');
    const be = Buffer.from(password, 'utf16le').swap16();
    await writeFile(join(dir, 'utf16le.db'), Buffer.concat([randomBytes(200), le, randomBytes(200)]));
    await writeFile(join(dir, 'utf16be.db'), Buffer.concat([randomBytes(200), be, randomBytes(200)]));
    const hits = await scanForSecrets({ password }, [
      { kind: 'file', path: join(dir, 'utf16le.db') },
      { kind: 'file', path: join(dir, 'utf16be.db') },
    ]);
    // (A random neighbouring byte can also line up the other byte order, one time in 256.)
    expect(hits.map((h) => [h.encoding, h.where.slice(dir.length)])).toEqual(
      expect.arrayContaining([
        ['utf16le', '/utf16le.db'],
        ['utf16be', '/utf16be.db'],
      ]),
    );
  });

  it('finds each segment of a JWT on its own, but not the header every token of the issuer shares', async () => {
    const [header, payload, signature] = jwt.split('.') as [string, string, string];
    expect(await found(jwt, `payload only: ${payload}`)).toEqual(['jwt-payload']);
    expect(await found(jwt, `signature only: ${signature}`)).toEqual(['jwt-signature']);
    expect(await found(jwt, `header only: ${header}.`)).toEqual([]);
    expect(await found(jwt, `Bearer ${jwt}`)).toEqual(expect.arrayContaining(['raw', 'jwt-payload', 'jwt-signature']));
  });

  it('searches files and directories recursively, binary files included, and names where', async () => {
    await mkdir(join(dir, 'a/b'), { recursive: true });
    await writeFile(join(dir, 'a/b/app.log'), `line\nline ${encodeURIComponent(password)}\n`);
    await writeFile(join(dir, 'a/blob.db'), Buffer.concat([randomBytes(300), Buffer.from(apiKey), randomBytes(300)]));
    await writeFile(join(dir, 'clean.txt'), 'nothing here');
    const hits = await scanForSecrets({ password, apiKey }, [{ kind: 'dir', path: dir }]);
    expect(hits.map((h) => [h.secret, h.where.slice(dir.length)])).toEqual(
      expect.arrayContaining([
        ['password', '/a/b/app.log'],
        ['apiKey', '/a/blob.db'],
      ]),
    );
    expect(hits.every((h) => !h.context.includes(password) && !h.context.includes(apiKey))).toBe(true);
    expect(await artifactBytes([{ kind: 'dir', path: dir }])).toBeGreaterThan(600);
  });

  it('fails loudly on a missing file rather than reporting it clean', async () => {
    await expect(scanForSecrets({ password }, [{ kind: 'file', path: join(dir, 'missing.log') }])).rejects.toThrow();
  });

  it('refuses a secret so short it would match by chance', () => {
    expect(() => secretForms('abc')).toThrow(/at least/);
  });

  it('does not cry wolf on clean text full of other tokens, base64 and percent-encoding', async () => {
    const other = await new SignJWT({ sub: 'alice', jti: 'another' }).setProtectedHeader({ alg: 'HS256' }).sign(randomBytes(32));
    const text = [
      `Bearer ${other}`,
      Buffer.from(randomBytes(400)).toString('base64'),
      encodeURIComponent('{"type":"postgres","actions":["SELECT"]}'),
      `role v-clinic-read-${randomBytes(6).toString('hex')} password=[redacted]`,
      jwt.split('.')[0],
    ].join('\n');
    expect(await scanForSecrets({ password, apiKey, jwt }, [{ kind: 'text', name: 'clean', text }])).toEqual([]);
  });

  it('finds any planted secret embedded anywhere in random text, in each encoding (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.string({ minLength: 12, maxLength: 40 }),
        fc.string({ maxLength: 200 }),
        fc.string({ maxLength: 200 }),
        fc.constantFrom<(s: string) => string>(
          (s) => s,
          (s) => Buffer.from(s).toString('base64url'),
          (s) => Buffer.from(s).toString('base64'),
          encodeURIComponent,
          (s) => JSON.stringify(s),
          (s) => Buffer.from(s).toString('hex'),
          (s) => Buffer.from(s).toString('hex').toUpperCase(),
        ),
        async (secret, before, after, encode) => {
          fc.pre(!`${before}${after}`.includes(secret.slice(0, 8)));
          const withIt = await scanForSecrets({ secret }, [{ kind: 'text', name: 'x', text: before + encode(secret) + after }]);
          expect(withIt.length).toBeGreaterThan(0);
        },
      ),
      { numRuns: 200 },
    );
  });
});
