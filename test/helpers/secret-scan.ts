/**
 * Finds planted secrets (access and refresh tokens, OBO tokens, database passwords, API keys) in
 * whatever Countersign and the lab leave behind: log files, audit stores, exports, MCP answers.
 *
 * A secret is looked for in every form a careless line of code could give it: raw, base64url,
 * base64 (also when the secret sits inside a longer encoded value, such as `user:password` in a Basic
 * header, by trying the three byte alignments), percent-encoded (URI component and form encoding),
 * JSON-escaped, hex (either case, as a debug dump or a hashed-looking column would carry it), UTF-16
 * little- and big-endian (as Chromium's and Windows' stores keep strings), and, for a JWT, its payload
 * and signature segments on their own. A JWT's header is
 * left out: every token the same issuer signs with the same key shares it, so finding it proves nothing.
 *
 * Files are read as bytes and searched as latin1 text, so binary files (SQLite pages, WAL) are
 * searched too without a decoding step that could hide a match.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';

export type SecretEncoding =
  | 'raw'
  | 'base64url'
  | 'base64'
  | 'percent'
  | 'form-urlencoded'
  | 'json'
  | 'hex'
  | 'hex-upper'
  | 'utf16le'
  | 'utf16be'
  | 'jwt-payload'
  | 'jwt-signature';

export interface SecretForm {
  encoding: SecretEncoding;
  /** The bytes looked for. */
  bytes: Buffer;
}

export type Artifact =
  | { kind: 'file'; path: string }
  /** Every regular file below it, recursively. */
  | { kind: 'dir'; path: string }
  | { kind: 'text'; name: string; text: string };

export interface SecretHit {
  /** The name the secret was planted under (`access_token`, `obo`, `db_password`…). */
  secret: string;
  encoding: SecretEncoding;
  /** File path, or the name given to a text artifact. */
  where: string;
  offset: number;
  /** A few characters around the hit with the secret itself cut out, to locate it without repeating it. */
  context: string;
}

/** Shorter strings than this would match by chance in ordinary text; refusing them keeps the scanner honest. */
export const MIN_SECRET_LENGTH = 8;
/** An encoded fragment shorter than this is too likely to occur by chance. */
const MIN_FORM_LENGTH = 8;

const toB64Url = (b64: string): string => b64.replace(/\+/g, '-').replace(/\//g, '_');

/**
 * Base64 forms of `bytes` wherever they sit in a longer base64 string: for each of the three byte
 * alignments, the characters that depend on the secret's bytes alone (whole 6-bit groups, no padding).
 */
function base64Alignments(bytes: Buffer): string[] {
  const forms: string[] = [];
  for (let k = 0; k < 3; k += 1) {
    const padded = Buffer.concat([Buffer.alloc(k), bytes]);
    const full = Math.floor(padded.length / 3) * 4;
    const text = padded.toString('base64').slice(0, full);
    // Characters before this index mix in the k alignment bytes.
    const start = k === 0 ? 0 : k === 1 ? 2 : 3;
    // The last full group's characters are secret-only; a trailing partial group depends on what follows.
    forms.push(text.slice(start));
  }
  return forms;
}

/** Every form of one secret the scanner looks for, most specific first, duplicates removed. */
export function secretForms(secret: string): SecretForm[] {
  if (secret.length < MIN_SECRET_LENGTH) {
    throw new Error(`secret-scan: a planted secret must be at least ${MIN_SECRET_LENGTH} characters, or it matches by chance`);
  }
  const bytes = Buffer.from(secret, 'utf8');
  const out: SecretForm[] = [];
  const seen = new Set<string>();
  const add = (encoding: SecretEncoding, form: string | Buffer): void => {
    const b = typeof form === 'string' ? Buffer.from(form, 'utf8') : form;
    const key = b.toString('latin1');
    if (b.length < MIN_FORM_LENGTH || seen.has(key)) return;
    seen.add(key);
    out.push({ encoding, bytes: b });
  };
  add('raw', secret);
  const parts = secret.split('.');
  if (parts.length === 3 && parts.every((p) => /^[A-Za-z0-9_-]+$/.test(p))) {
    add('jwt-payload', parts[1]!);
    add('jwt-signature', parts[2]!);
  }
  add('json', JSON.stringify(secret).slice(1, -1));
  add('percent', encodeURIComponent(secret));
  add('form-urlencoded', new URLSearchParams({ x: secret }).toString().slice(2));
  for (const f of base64Alignments(bytes)) add('base64', f);
  for (const f of base64Alignments(bytes)) add('base64url', toB64Url(f));
  add('hex', bytes.toString('hex'));
  add('hex-upper', bytes.toString('hex').toUpperCase());
  add('utf16le', Buffer.from(secret, 'utf16le'));
  add('utf16be', Buffer.from(secret, 'utf16le').swap16());
  return out;
}

async function* filesBelow(dir: string): AsyncGenerator<string> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) yield* filesBelow(p);
    else if (entry.isFile()) yield p;
  }
}

async function* texts(artifacts: readonly Artifact[]): AsyncGenerator<{ where: string; text: string }> {
  for (const a of artifacts) {
    if (a.kind === 'text') {
      yield { where: a.name, text: Buffer.from(a.text, 'utf8').toString('latin1') };
    } else if (a.kind === 'file') {
      yield { where: a.path, text: (await readFile(a.path)).toString('latin1') };
    } else {
      for await (const p of filesBelow(a.path)) {
        // A file removed between the listing and the read (another process's temp file) was not left behind.
        const bytes = await readFile(p).catch((e: NodeJS.ErrnoException) => {
          if (e.code === 'ENOENT') return undefined;
          throw e;
        });
        if (bytes) yield { where: p, text: bytes.toString('latin1') };
      }
    }
  }
}

/**
 * Scans the artifacts for every planted secret in every form; returns each place one was found (an
 * empty list means clean). Missing files are an error: a scan of nothing proves nothing.
 */
export async function scanForSecrets(secrets: Record<string, string>, artifacts: readonly Artifact[]): Promise<SecretHit[]> {
  const planted = Object.entries(secrets).map(([name, value]) => ({ name, forms: secretForms(value) }));
  const hits: SecretHit[] = [];
  for await (const { where, text } of texts(artifacts)) {
    for (const { name, forms } of planted) {
      for (const { encoding, bytes } of forms) {
        const needle = bytes.toString('latin1');
        for (let at = text.indexOf(needle); at !== -1; at = text.indexOf(needle, at + 1)) {
          const before = text.slice(Math.max(0, at - 24), at);
          const after = text.slice(at + needle.length, at + needle.length + 24);
          hits.push({ secret: name, encoding, where, offset: at, context: `${before}[${name}]${after}`.replace(/[^\x20-\x7e]/g, '.') });
        }
      }
    }
  }
  return hits;
}

/** The count of bytes a scan covered, so a test can show it scanned something real. */
export async function artifactBytes(artifacts: readonly Artifact[]): Promise<number> {
  let n = 0;
  for (const a of artifacts) {
    if (a.kind === 'text') n += a.text.length;
    else if (a.kind === 'file') n += (await stat(a.path)).size;
    else for await (const p of filesBelow(a.path)) n += (await stat(p).catch(() => ({ size: 0 }))).size;
  }
  return n;
}

/** One line per hit, for an assertion message that says where without repeating the secret. */
export function describeHits(hits: readonly SecretHit[]): string {
  return hits.map((h) => `${h.secret} as ${h.encoding} in ${h.where} @${h.offset}: ${h.context}`).join('\n');
}
