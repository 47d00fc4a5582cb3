/**
 * Vault ACL policies: the HCL subset Vault policies use (`path "<glob>" { capabilities = [...] }`,
 * plus the legacy `policy = "read"` shorthand), and the path matching Vault applies on every request
 * (exact match beats a glob; among globs the most specific wins; `+` matches one segment, a trailing
 * `*` any suffix; `deny` overrides everything). Sources: docs/concepts/policies.mdx ("Priority
 * matching"), vault/policy.go.
 */

export type Capability = 'create' | 'read' | 'update' | 'patch' | 'delete' | 'list' | 'sudo' | 'deny';
const CAPABILITIES = new Set<string>(['create', 'read', 'update', 'patch', 'delete', 'list', 'sudo', 'deny', 'subscribe', 'recover']);

export interface PathRule {
  pattern: string;
  capabilities: Set<string>;
}

export class PolicyParseError extends Error {}

type Tok = { t: 'str' | 'id' | 'num' | 'punct'; v: string };

function tokenize(src: string): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c === '#' || (c === '/' && src[i + 1] === '/')) {
      while (i < src.length && src[i] !== '\n') i++;
    } else if (c === '/' && src[i + 1] === '*') {
      const end = src.indexOf('*/', i + 2);
      if (end < 0) throw new PolicyParseError('unterminated comment');
      i = end + 2;
    } else if (c === '"') {
      let v = '';
      i++;
      while (i < src.length && src[i] !== '"') {
        if (src[i] === '\\' && i + 1 < src.length) {
          const n = src[i + 1]!;
          v += n === 'n' ? '\n' : n === 't' ? '\t' : n;
          i += 2;
        } else {
          v += src[i++];
        }
      }
      if (src[i] !== '"') throw new PolicyParseError('unterminated string');
      i++;
      out.push({ t: 'str', v });
    } else if ('{}[]=,:'.includes(c)) {
      out.push({ t: 'punct', v: c });
      i++;
    } else if (/[A-Za-z_]/.test(c)) {
      let v = '';
      while (i < src.length && /[A-Za-z0-9_\-.]/.test(src[i]!)) v += src[i++];
      out.push({ t: 'id', v });
    } else if (/[0-9-]/.test(c)) {
      let v = '';
      while (i < src.length && /[0-9a-z.-]/i.test(src[i]!)) v += src[i++];
      out.push({ t: 'num', v });
    } else {
      throw new PolicyParseError(`unexpected character ${JSON.stringify(c)}`);
    }
  }
  return out;
}

type Value = string | Value[] | { [k: string]: Value };

class Parser {
  private i = 0;
  private readonly toks: Tok[];
  constructor(toks: Tok[]) {
    this.toks = toks;
  }
  private peek(): Tok | undefined {
    return this.toks[this.i];
  }
  private next(): Tok {
    const t = this.toks[this.i++];
    if (!t) throw new PolicyParseError('unexpected end of policy');
    return t;
  }
  private expect(v: string): void {
    const t = this.next();
    if (t.v !== v || t.t !== 'punct') throw new PolicyParseError(`expected "${v}", got "${t.v}"`);
  }
  /** Body of a block or the whole file: a list of `key = value` and `key "label" { … }`. */
  body(end?: string): Array<{ key: string; label?: string; value: Value }> {
    const items: Array<{ key: string; label?: string; value: Value }> = [];
    for (;;) {
      const t = this.peek();
      if (!t) {
        if (end) throw new PolicyParseError(`expected "${end}"`);
        return items;
      }
      if (end && t.t === 'punct' && t.v === end) {
        this.i++;
        return items;
      }
      const key = this.next();
      if (key.t !== 'id' && key.t !== 'str') throw new PolicyParseError(`unexpected "${key.v}"`);
      const after = this.peek();
      if (after?.t === 'str') {
        this.i++;
        this.expect('{');
        items.push({ key: key.v, label: after.v, value: this.object('}') });
      } else if (after?.t === 'punct' && after.v === '{') {
        this.i++;
        items.push({ key: key.v, value: this.object('}') });
      } else {
        const eq = this.next();
        if (eq.v !== '=' && eq.v !== ':') throw new PolicyParseError(`expected "=" after ${key.v}`);
        items.push({ key: key.v, value: this.value() });
      }
      if (this.peek()?.v === ',') this.i++;
    }
  }
  private object(end: string): { [k: string]: Value } {
    const o: { [k: string]: Value } = {};
    for (const item of this.body(end)) o[item.label ? `${item.key} ${item.label}` : item.key] = item.value;
    return o;
  }
  private value(): Value {
    const t = this.next();
    if (t.t === 'str' || t.t === 'num' || t.t === 'id') return t.v;
    if (t.v === '[') {
      const list: Value[] = [];
      for (;;) {
        if (this.peek()?.v === ']') {
          this.i++;
          return list;
        }
        list.push(this.value());
        if (this.peek()?.v === ',') this.i++;
      }
    }
    if (t.v === '{') return this.object('}');
    throw new PolicyParseError(`unexpected "${t.v}"`);
  }
}

const LEGACY: Record<string, string[]> = {
  deny: ['deny'],
  read: ['read', 'list'],
  write: ['create', 'read', 'update', 'delete', 'list'],
  sudo: ['create', 'read', 'update', 'delete', 'list', 'sudo'],
};

/** Parses a policy's HCL into path rules. Throws PolicyParseError with a readable reason. */
export function parsePolicy(hcl: string): PathRule[] {
  const items = new Parser(tokenize(hcl)).body();
  const rules: PathRule[] = [];
  for (const item of items) {
    if (item.key !== 'path') continue; // name, etc. are ignored by Vault too
    if (item.label === undefined || typeof item.value !== 'object' || Array.isArray(item.value)) {
      throw new PolicyParseError('a path stanza needs a quoted path and a block');
    }
    const block = item.value;
    const caps = new Set<string>();
    const list = block['capabilities'];
    if (list !== undefined) {
      if (!Array.isArray(list)) throw new PolicyParseError(`path "${item.label}": capabilities must be a list`);
      for (const c of list) {
        if (typeof c !== 'string' || !CAPABILITIES.has(c)) throw new PolicyParseError(`path "${item.label}": invalid capability ${JSON.stringify(c)}`);
        caps.add(c);
      }
    }
    const legacy = block['policy'];
    if (typeof legacy === 'string') {
      const mapped = LEGACY[legacy];
      if (!mapped) throw new PolicyParseError(`path "${item.label}": invalid policy "${legacy}"`);
      for (const c of mapped) caps.add(c);
    }
    rules.push({ pattern: item.label.replace(/^\//, ''), capabilities: caps });
  }
  return rules;
}

function matches(pattern: string, path: string): boolean {
  const glob = pattern.endsWith('*');
  const body = glob ? pattern.slice(0, -1) : pattern;
  const pSeg = body.split('/');
  const segs = path.split('/');
  if (!glob && pSeg.length !== segs.length) return false;
  if (glob && segs.length < pSeg.length) return false;
  for (let i = 0; i < pSeg.length; i++) {
    const p = pSeg[i]!;
    const s = segs[i]!;
    const last = i === pSeg.length - 1;
    if (p === '+') {
      if (s === '' && !last) return false;
      continue;
    }
    if (last && glob) return s.startsWith(p);
    if (p !== s) return false;
  }
  return true;
}

/**
 * Vault's priority among matching patterns (docs/concepts/policies.mdx): the earlier first wildcard
 * loses; a trailing `*` loses to none; more `+` loses; shorter loses; then lexical order.
 */
function moreSpecific(a: string, b: string): boolean {
  const firstWild = (p: string): number => {
    const i = p.search(/[+*]/);
    return i < 0 ? Infinity : i;
  };
  if (firstWild(a) !== firstWild(b)) return firstWild(a) > firstWild(b);
  if (a.endsWith('*') !== b.endsWith('*')) return !a.endsWith('*');
  const plus = (p: string): number => p.split('+').length - 1;
  if (plus(a) !== plus(b)) return plus(a) < plus(b);
  if (a.length !== b.length) return a.length > b.length;
  return a > b;
}

/** The capabilities a set of policies grants on one path (rules for the same pattern are merged). */
export function capabilitiesFor(policies: PathRule[][], path: string): Set<string> {
  const merged = new Map<string, Set<string>>();
  for (const rules of policies) {
    for (const r of rules) {
      if (!matches(r.pattern, path)) continue;
      const s = merged.get(r.pattern) ?? new Set<string>();
      for (const c of r.capabilities) s.add(c);
      merged.set(r.pattern, s);
    }
  }
  let best: string | undefined;
  for (const p of merged.keys()) if (best === undefined || moreSpecific(p, best)) best = p;
  const caps = best === undefined ? new Set<string>() : merged.get(best)!;
  return caps.has('deny') ? new Set(['deny']) : caps;
}

/** Vault's built-in `default` policy, as far as the paths this stand-in serves (vault/policy_store.go). */
export const DEFAULT_POLICY = `# Allow tokens to look up their own properties
path "auth/token/lookup-self" {
    capabilities = ["read"]
}

# Allow tokens to renew themselves
path "auth/token/renew-self" {
    capabilities = ["update"]
}

# Allow tokens to revoke themselves
path "auth/token/revoke-self" {
    capabilities = ["update"]
}

# Allow a token to look up its own capabilities on a path
path "sys/capabilities-self" {
    capabilities = ["update"]
}

# Allow a token to renew a lease via lease_id in the request body
path "sys/leases/renew" {
    capabilities = ["update"]
}

# Allow looking up lease properties
path "sys/leases/lookup" {
    capabilities = ["update"]
}

# Allow a token to manage its own cubbyhole
path "cubbyhole/*" {
    capabilities = ["create", "read", "update", "delete", "list"]
}

# Allow general purpose tools
path "sys/tools/hash" {
    capabilities = ["update"]
}
path "sys/tools/hash/*" {
    capabilities = ["update"]
}
`;
