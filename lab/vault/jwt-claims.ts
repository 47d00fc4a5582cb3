/**
 * What the JWT auth method checks of a token's claims, as the plugin does (claims.go): a claim read by
 * name or JSON pointer, bound claims matched as strings or globs (a list matching when any element
 * does); and the role's leeways and bound CIDRs.
 */

/** Reads a claim by name or JSON pointer (RFC 6901), as the plugin's getClaim does. */
export function getClaim(claims: Record<string, unknown>, name: string): unknown {
  if (!name.startsWith('/')) return claims[name];
  let cur: unknown = claims;
  for (const raw of name.slice(1).split('/')) {
    const part = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(cur)) {
      if (!/^\d+$/.test(part)) return undefined;
      cur = cur[Number(part)];
    } else if (cur && typeof cur === 'object') {
      cur = (cur as Record<string, unknown>)[part];
    } else {
      return undefined;
    }
  }
  return cur;
}

/** A claim as a list: a scalar is a list of one; anything else is not a list. */
export function normalizeList(v: unknown): unknown[] | null {
  if (Array.isArray(v)) return v;
  if (typeof v === 'string' || typeof v === 'boolean' || typeof v === 'number') return [v];
  return null;
}

function globMatch(pattern: string, value: string): boolean {
  const re = new RegExp(`^${pattern.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`, 's');
  return re.test(value);
}

/** claims.go validateBoundClaims: every bound claim must be present and match any of its values. */
export function validateBoundClaims(type: 'string' | 'glob', bound: Record<string, unknown>, claims: Record<string, unknown>): void {
  for (const [name, expected] of Object.entries(bound)) {
    const actual = getClaim(claims, name);
    if (actual === undefined || actual === null) throw new Error(`claim "${name}" is missing`);
    const actVals = normalizeList(actual);
    if (!actVals) throw new Error(`received claim is not a string or list: ${JSON.stringify(actual)}`);
    const expVals = normalizeList(expected);
    if (!expVals) throw new Error(`bound claim is not a string or list: ${JSON.stringify(expected)}`);
    let found = false;
    for (const e of expVals) {
      for (const a of actVals) {
        if (type === 'glob') {
          if (typeof e !== 'string') throw new Error(`bound claim is not a string: ${JSON.stringify(e)}`);
          if (typeof a === 'string' && globMatch(e, a)) found = true;
        } else if (String(e) === String(a) && typeof a !== 'object') {
          found = true;
        }
      }
    }
    if (!found) throw new Error(`claim "${name}" does not match any associated bound claim values`);
  }
}

/** A role's leeway in seconds: 0 means the plugin's default, a negative value none. */
export function leeway(v: number, dflt: number): number {
  return v === 0 ? dflt : v < 0 ? 0 : v;
}

/** Whether an IPv4 address (or its IPv6-mapped form) is inside a CIDR block. */
export function ipv4InCidr(ip: string, cidr: string): boolean {
  const [base, bitsRaw] = cidr.split('/');
  const bits = bitsRaw === undefined ? 32 : Number(bitsRaw);
  const toInt = (s: string): number => s.split('.').reduce((acc, o) => (acc << 8) + Number(o), 0) >>> 0;
  const addr = ip.replace(/^::ffff:/, '');
  if (!/^\d+\.\d+\.\d+\.\d+$/.test(addr) || !base) return false;
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
  return (toInt(addr) & mask) === (toInt(base) & mask);
}
