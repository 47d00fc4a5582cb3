import { createHmac } from 'node:crypto';
import { AppError } from '../../../common/errors.ts';
import { canonicalJson } from '../../../common/canonical-json.ts';
import { setOwnMember } from '../../../common/own-member.ts';

/**
 * The one scrubber of what a call records and answers (docs/audit.md "Redaction at write"). A call's own
 * secrets (the user's access token, the OBO, the Vault token, the database password, an API key) go
 * into its `KnownSecrets` as it obtains them; the call masks them, in every encoded form below, from the
 * error and result it answers, and hands them to the audit store with its record. The store's
 * `Redactor` masks them there too, plus whatever looks like a credential whoever wrote the record: JWTs
 * and JWEs, `Bearer`/`DPoP`/`Basic` values, Vault tokens, the values of fields whose name says they hold
 * a secret. In `refuse` mode it rejects such a record instead. Tool arguments named in `hmacArgs` are
 * replaced by an HMAC-SHA256 under a per-install key, as Vault's audit devices do (`hmac-sha256:<hex>`),
 * so equal values still correlate while low-entropy values (record numbers) cannot be recovered by
 * hashing guesses.
 */
export interface RedactionPolicy {
  /** Top-level argument names whose values are HMAC'd rather than kept. */
  hmacArgs?: string[];
  /** `mask` replaces what it finds and records where; `refuse` throws AUDIT_REDACTION_REFUSED. */
  onSecret?: 'mask' | 'refuse';
}

export interface RedactionResult<T> {
  value: T;
  /** JSON-pointer-like paths of what was masked, and why (`/args/sql: jwt`). Never the secret itself. */
  redacted: string[];
}

const JWT = /\beyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)?/g;
const AUTH_HEADER = /\b(Bearer|DPoP|Basic)\s+[A-Za-z0-9\-._~+/]{8,}=*/gi;
const VAULT_TOKEN = /\bhv[sbr]\.[A-Za-z0-9_-]{20,}/g;
const VAULT_LEGACY_TOKEN = /\b[sbr]\.[A-Za-z0-9]{24}\b/g;
const SECRET_FIELD =
  /^(?:.*[_-])?(?:password|passwd|pwd|passphrase|secret|token|api[_-]?key|apikey|client[_-]?secret|authorization|cookie|private[_-]?key|credentials?|code[_-]?verifier|subject[_-]?token|actor[_-]?token|access[_-]?token|refresh[_-]?token|id[_-]?token|assertion)s?$/i;
/** Shorter values would be masked wherever they occur by chance. */
const MIN_KNOWN_SECRET = 6;
/** An encoded piece shorter than this (a base64 fragment of a short secret) occurs by chance too often. */
const MIN_FORM = 8;

export const MASK = '[redacted]';

/**
 * The forms a secret takes in text a careless line of code (or a hostile target) could produce, longest
 * first: raw, JSON-escaped, percent- and form-encoded, hex in either case, base64 and base64url whole
 * and inside a longer encoded value (each of the three byte alignments, as `user:password` in a Basic
 * header), and a JWT's payload and signature segments on their own. A secret cut into pieces (half in
 * one field, half in another) is not among them.
 */
export function secretForms(secret: string): string[] {
  const bytes = Buffer.from(secret, 'utf8');
  const forms = new Set([
    secret,
    JSON.stringify(secret).slice(1, -1),
    encodeURIComponent(secret),
    new URLSearchParams({ x: secret }).toString().slice(2),
    bytes.toString('hex'),
    bytes.toString('hex').toUpperCase(),
    bytes.toString('base64'),
    bytes.toString('base64url'),
  ]);
  for (let k = 0; k < 3; k += 1) {
    // Of `bytes` behind k other bytes, the characters that depend on the secret's bytes alone.
    const b64 = Buffer.concat([Buffer.alloc(k), bytes]).toString('base64');
    const inner = b64.slice(k === 0 ? 0 : k + 1, Math.floor((k + bytes.length) / 3) * 4);
    forms.add(inner);
    forms.add(inner.replaceAll('+', '-').replaceAll('/', '_'));
  }
  const parts = secret.split('.');
  if (parts.length === 3) for (const part of parts.slice(1)) if (part.length >= 16) forms.add(part);
  return [...forms].filter((f) => f.length >= MIN_FORM || f === secret).sort((a, b) => b.length - a.length);
}

/**
 * One call's secrets, each with its encoded forms, computed once. A call adds a secret just before it
 * sends a request (the subject token before the exchange, the OBO before the Vault login, the Vault
 * token before the credential's request, the password before the database login), so the forms are
 * worked out in the next turn of the event loop, while that request is on its way; the first mask
 * before then works them out at once.
 */
export class KnownSecrets implements Iterable<string> {
  readonly #forms = new Map<string, string[]>();
  /** Secrets added whose forms are still to be worked out. */
  #unworked: string[] = [];
  #scheduled = false;
  /** Every form of every secret, longest first, rebuilt when a secret's forms are worked out. */
  #all: string[] = [];
  /** The length of the shortest form (no text shorter can hold one); infinite while there is none. */
  #shortest = Infinity;

  static of(secrets: Iterable<string> | undefined): KnownSecrets {
    if (secrets instanceof KnownSecrets) return secrets;
    const k = new KnownSecrets();
    for (const s of secrets ?? []) k.add(s);
    return k;
  }

  /** Holds a secret from now on; a value too short to mask safely is ignored. */
  add(secret: string | undefined): void {
    if (typeof secret !== 'string' || secret.length < MIN_KNOWN_SECRET || this.#forms.has(secret)) return;
    this.#forms.set(secret, []);
    this.#unworked.push(secret);
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#work();
    });
  }

  /** Works out the forms of the secrets added since the last time. */
  #work(): void {
    if (this.#unworked.length === 0) return;
    for (const secret of this.#unworked) this.#forms.set(secret, secretForms(secret));
    this.#unworked = [];
    this.#all = [...this.#forms.values()].flat().sort((a, b) => b.length - a.length);
    this.#shortest = this.#all[this.#all.length - 1]!.length;
  }

  get size(): number {
    return this.#forms.size;
  }

  [Symbol.iterator](): Iterator<string> {
    return this.#forms.keys();
  }

  /** The text with every form of every secret masked. */
  mask(text: string): string {
    this.#work();
    // Most of a record's strings (names, codes, outcomes) are shorter than any form: nothing to look for.
    if (text.length < this.#shortest) return text;
    let out = text;
    for (const form of this.#all) if (out.includes(form)) out = out.split(form).join(MASK);
    return out;
  }

  /**
   * A copy of a JSON value (a tool's result) with every string masked, and whether anything was; the
   * value itself when nothing was (one serialisation decides, so a clean result costs no walk).
   */
  maskDeep<T>(value: T): { value: T; masked: boolean } {
    this.#work();
    if (this.#all.length === 0) return { value, masked: false };
    let text: string | undefined;
    try {
      text = JSON.stringify(value);
    } catch {
      text = undefined;
    }
    if (text !== undefined && !this.#all.some((f) => text.includes(f))) return { value, masked: false };
    let masked = false;
    const walk = (v: unknown): unknown => {
      if (typeof v === 'string') {
        const m = this.mask(v);
        if (m !== v) masked = true;
        return m;
      }
      if (Array.isArray(v)) return v.map(walk);
      if (v && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
        const out: Record<string, unknown> = {};
        for (const [k, x] of Object.entries(v)) {
          // A member's name is text the result carries too (a column named by the statement).
          const name = this.mask(k);
          if (name !== k) masked = true;
          setOwnMember(out, freeName(name, k, out, v), walk(x));
        }
        return out;
      }
      return v;
    };
    const out = walk(value) as T;
    return { value: out, masked };
  }
}

export class Redactor {
  readonly #hmacKey: Uint8Array | undefined;
  readonly #policy: Required<RedactionPolicy>;

  constructor(policy: RedactionPolicy = {}, hmacKey?: Uint8Array) {
    this.#policy = { hmacArgs: policy.hmacArgs ?? [], onSecret: policy.onSecret ?? 'mask' };
    if (this.#policy.hmacArgs.length > 0 && !hmacKey) {
      throw new AppError('CONFIG_INVALID', 'Audit argument hashing needs the install key.');
    }
    this.#hmacKey = hmacKey;
  }

  /** HMAC-SHA256 of a value's canonical JSON under the install key, in Vault's audit notation. */
  hmac(value: unknown): string {
    if (!this.#hmacKey) throw new AppError('CONFIG_INVALID', 'Audit argument hashing needs the install key.');
    return `hmac-sha256:${createHmac('sha256', this.#hmacKey).update(canonicalJson(value)).digest('hex')}`;
  }

  /**
   * Scrubs a whole record. `knownSecrets` are the values the call held (the OBO token, the database
   * password), masked in every form `secretForms` lists; then `args` named in `hmacArgs` are HMAC'd.
   */
  scrubRecord<T extends Record<string, unknown>>(record: T, knownSecrets?: Iterable<string>): RedactionResult<T> {
    const known = KnownSecrets.of(knownSecrets);
    const redacted: string[] = [];
    const out = this.#walk(record, [], known, redacted) as T;
    const args = (out as Record<string, unknown>).args;
    if (args && typeof args === 'object' && !Array.isArray(args)) {
      for (const name of this.#policy.hmacArgs) {
        const a = args as Record<string, unknown>;
        if (Object.hasOwn(a, name) && a[name] !== MASK) a[name] = this.hmac(a[name]);
      }
    }
    if (redacted.length > 0 && this.#policy.onSecret === 'refuse') {
      throw new AppError('AUDIT_REDACTION_REFUSED', `An audit record carried something that looks like a secret (${redacted.join(', ')}).`);
    }
    return { value: out, redacted };
  }

  /** In `refuse` mode, what in `value` a record would be refused for (pointers and reasons); nothing in `mask` mode. */
  refusals(value: Record<string, unknown>, knownSecrets?: Iterable<string>): string[] {
    if (this.#policy.onSecret !== 'refuse') return [];
    const redacted: string[] = [];
    this.#walk(value, [], KnownSecrets.of(knownSecrets), redacted);
    return redacted;
  }

  #walk(value: unknown, path: string[], known: KnownSecrets, redacted: string[]): unknown {
    if (typeof value === 'string') return scrubString(value, path, known, redacted);
    if (Array.isArray(value)) {
      return value.map((v, i) => {
        path.push(String(i));
        const out = this.#walk(v, path, known, redacted);
        path.pop();
        return out;
      });
    }
    if (value && typeof value === 'object') {
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(value)) {
        const v = (value as Record<string, unknown>)[k];
        // A member's name is masked as its value would be: arguments are the model's to name.
        const found = redacted.length;
        const name = freeName(scrubString(k, path, known, redacted), k, out, value);
        for (let i = found; i < redacted.length; i++) redacted[i] += ' (in a member name)';
        path.push(name);
        let scrubbed: unknown;
        if (SECRET_FIELD.test(k) && v !== null && v !== undefined && v !== '') {
          redacted.push(`${pointer(path)}: secret field`);
          scrubbed = MASK;
        } else {
          scrubbed = this.#walk(v, path, known, redacted);
        }
        setOwnMember(out, name, scrubbed);
        path.pop();
      }
      return out;
    }
    return value;
  }
}

/** One cheap test before the four precise ones: most strings in a record hold nothing like a credential. */
const MAYBE_SECRET = /eyJ|bearer|dpop|basic|hv[sbr]\.|\b[sbr]\.[A-Za-z0-9]{24}/i;

function scrubString(s: string, path: string[], known: KnownSecrets, redacted: string[]): string {
  let out = known.mask(s);
  if (out !== s) redacted.push(`${pointer(path)}: known secret`);
  if (out.length < 12 || !MAYBE_SECRET.test(out)) return out;
  const rules: [RegExp, string][] = [
    [JWT, 'jwt'],
    [AUTH_HEADER, 'authorization'],
    [VAULT_TOKEN, 'vault token'],
    [VAULT_LEGACY_TOKEN, 'vault token'],
  ];
  for (const [re, why] of rules) {
    re.lastIndex = 0;
    if (re.test(out)) {
      re.lastIndex = 0;
      out = why === 'authorization' ? out.replace(re, (_m, scheme: string) => `${scheme} ${MASK}`) : out.replace(re, MASK);
      redacted.push(`${pointer(path)}: ${why}`);
    }
  }
  return out;
}

/**
 * The name a member keeps in a masked copy: `name`, the original `key` masked, unless that is taken in
 * the copy or the original (two names that mask alike, or a member already named `[redacted]`), then
 * `name (2)`, `name (3)`…, so no member is lost.
 */
function freeName(name: string, key: string, out: object, source: object): string {
  if (name === key) return name;
  let free = name;
  for (let n = 2; Object.hasOwn(out, free) || Object.hasOwn(source, free); n++) free = `${name} (${n})`;
  return free;
}

/** JSON Pointer (RFC 6901) of a path, built only when something was masked. */
function pointer(path: string[]): string {
  return path.map((k) => '/' + k.replaceAll('~', '~0').replaceAll('/', '~1')).join('');
}
