import { createHmac } from 'node:crypto';
import { AppError } from '../../../common/errors.ts';
import { canonicalJson } from '../../../common/canonical-json.ts';

/**
 * Redaction at write: nothing that looks like a credential reaches the audit store. A recursive scrubber
 * walks every string of a record and masks (or, in `refuse` mode, rejects the record for) JWTs and JWEs,
 * `Bearer`/`DPoP` authorization values, Vault tokens (`hvs.`, `hvb.`, `hvr.`, legacy `s.`/`b.`/`r.`),
 * the values of fields whose name says they hold a secret, and any value the caller names as a known
 * secret. Tool arguments named in the policy's `hmacArgs` are replaced by an HMAC-SHA256 under a
 * per-install key, as Vault's audit devices do (`hmac-sha256:<hex>`), so equal values still correlate
 * while low-entropy values (record numbers) cannot be recovered by hashing guesses.
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
const MIN_KNOWN_SECRET = 6;

export const MASK = '[redacted]';

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
   * Scrubs a whole record. `args` get the HMAC policy first; `knownSecrets` are values the caller holds
   * right now (the OBO token, the database password) and wants kept out whatever shape they take.
   */
  scrubRecord<T extends Record<string, unknown>>(record: T, knownSecrets: readonly string[] = []): RedactionResult<T> {
    const known = knownSecrets.filter((s) => typeof s === 'string' && s.length >= MIN_KNOWN_SECRET);
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

  #walk(value: unknown, path: string[], known: string[], redacted: string[]): unknown {
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
        path.push(k);
        let scrubbed: unknown;
        if (SECRET_FIELD.test(k) && v !== null && v !== undefined && v !== '') {
          redacted.push(`${pointer(path)}: secret field`);
          scrubbed = MASK;
        } else {
          scrubbed = this.#walk(v, path, known, redacted);
        }
        // defineProperty, so a member named __proto__ stays a member of a plain object.
        if (k === '__proto__') Object.defineProperty(out, k, { value: scrubbed, enumerable: true, writable: true, configurable: true });
        else out[k] = scrubbed;
        path.pop();
      }
      return out;
    }
    return value;
  }
}

/** One cheap test before the four precise ones: most strings in a record hold nothing like a credential. */
const MAYBE_SECRET = /eyJ|bearer|dpop|basic|hv[sbr]\.|\b[sbr]\.[A-Za-z0-9]{24}/i;

function scrubString(s: string, path: string[], known: string[], redacted: string[]): string {
  let out = s;
  for (const secret of known) {
    if (out.includes(secret)) {
      out = out.split(secret).join(MASK);
      redacted.push(`${pointer(path)}: known secret`);
    }
  }
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

/** JSON Pointer (RFC 6901) of a path, built only when something was masked. */
function pointer(path: string[]): string {
  return path.map((k) => '/' + k.replaceAll('~', '~0').replaceAll('/', '~1')).join('');
}
