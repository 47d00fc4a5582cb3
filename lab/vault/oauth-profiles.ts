/**
 * Vault Enterprise's OAuth resource server profiles (api-docs/system/config-oauth-resource-server):
 * which issuers Vault trusts for JWTs presented directly in `X-Vault-Token`, with their keys (static
 * `public_keys` matched by `kid`, or a `jwks_uri`), audiences, claims and flags; and the validation of
 * such a JWT against the profile its `iss` names (signature, algorithm, `aud`, `exp`, `nbf`).
 */
import { createPublicKey, randomUUID } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { compactVerify, decodeProtectedHeader } from 'jose';
import { RemoteKeys } from './remote-keys.ts';
import { badRequest, toBool, toList, toSeconds, VaultError } from './types.ts';
import type { BackendResponse, VaultRequest } from './types.ts';

export interface Profile {
  profile_name: string;
  config_id: string;
  issuer_id: string;
  use_jwks: boolean;
  jwks_uri: string;
  public_keys: Array<{ key_id: string; pem: string }>;
  audiences: string[];
  user_claim: string;
  actor_claim: string;
  unique_id_claim: string;
  supported_algorithms: string[];
  jwt_type: string;
  clock_skew_leeway: number;
  no_default_policy: boolean;
  optional_authorization_details: boolean;
  enabled: boolean;
  local: boolean;
}

/** RSA, RSA-PSS and ECDSA only: "HMAC algorithms, including HS256 … are not supported" (docs/ai/oauth-server). */
const ASYMMETRIC = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512'];
const IMMUTABLE = ['issuer_id', 'local', 'unique_id_claim'] as const;

export const normalizeIssuer = (v: string): string => v.trim().replace(/\/+$/, '').toLowerCase();
export const accessorOf = (p: Profile): string => `oauth-resource-server_root_${p.config_id}`;

/** A refusal of the presented JWT: 403 permission denied, with the reason after it. */
export const refuseJwt = (why: string): VaultError => new VaultError(403, ['permission denied', `invalid OAuth JWT: ${why}`]);

export class OAuthProfiles {
  private readonly byName = new Map<string, Profile>();
  private readonly keys = new Map<string, RemoteKeys | Map<string, KeyObject>>();

  all(): Profile[] {
    return [...this.byName.values()];
  }

  byIssuer(issuer: string): Profile | undefined {
    const want = normalizeIssuer(issuer);
    return this.all().find((p) => p.issuer_id === want);
  }

  /** `sys/config/oauth-resource-server[/…]`; `rel` is the part after `config/oauth-resource-server`. */
  handle(req: VaultRequest, rel: string): BackendResponse | null {
    const op = req.operation;
    if (rel === '' && op === 'list') return { data: { keys: [...this.byName.keys()].sort() } };
    const byId = /^\/id\/([^/]+)$/.exec(rel);
    if (byId && op === 'read') {
      const p = this.all().find((x) => x.config_id === byId[1]);
      if (!p) throw new VaultError(404, 'profile not found');
      return { data: this.view(p) };
    }
    const named = /^\/([^/]+)$/.exec(rel);
    if (!named) throw new VaultError(404, [`no handler for route "sys/config/oauth-resource-server${rel}". route entry not found.`]);
    const name = named[1]!;
    if (op === 'read') {
      const p = this.byName.get(name);
      if (!p) throw new VaultError(404, 'profile not found');
      return { data: this.view(p) };
    }
    if (op === 'delete') {
      this.byName.delete(name);
      this.keys.delete(name);
      return null;
    }
    if (op === 'create' || op === 'update') return this.write(name, req.body);
    throw new VaultError(405, 'unsupported operation');
  }

  private view(p: Profile): Record<string, unknown> {
    return { ...p, public_keys: p.public_keys.map((k) => ({ ...k })), mount_accessor: accessorOf(p) };
  }

  private write(name: string, body: Record<string, unknown>): BackendResponse | null {
    const prev = this.byName.get(name);
    const has = (k: string): boolean => k in body && body[k] !== undefined && body[k] !== null;
    if (prev) {
      for (const k of IMMUTABLE) {
        if (!has(k)) continue;
        const v = k === 'issuer_id' ? normalizeIssuer(String(body[k])) : k === 'local' ? toBool(body[k], false) : String(body[k]);
        if (v !== prev[k]) throw badRequest(`${k} cannot be changed after the profile is created`);
      }
    }
    const str = (k: keyof Profile, dflt: string): string => (has(k) ? String(body[k]) : prev ? (prev[k] as string) : dflt);
    const issuer = has('issuer_id') ? normalizeIssuer(String(body['issuer_id'])) : (prev?.issuer_id ?? '');
    if (!issuer) throw badRequest('issuer_id is required');
    const publicKeys = has('public_keys') ? parseKeys(body['public_keys']) : (prev?.public_keys ?? []);
    const p: Profile = {
      profile_name: name,
      config_id: prev?.config_id ?? randomUUID(),
      issuer_id: issuer,
      use_jwks: has('use_jwks') ? toBool(body['use_jwks'], false) : (prev?.use_jwks ?? false),
      jwks_uri: str('jwks_uri', ''),
      public_keys: publicKeys,
      audiences: has('audiences') ? toList(body['audiences']) : (prev?.audiences ?? []),
      user_claim: str('user_claim', 'sub'),
      actor_claim: str('actor_claim', 'act.sub'),
      unique_id_claim: str('unique_id_claim', 'jti'),
      supported_algorithms: has('supported_algorithms') ? toList(body['supported_algorithms']) : (prev?.supported_algorithms ?? ASYMMETRIC),
      jwt_type: str('jwt_type', 'access_token'),
      clock_skew_leeway: has('clock_skew_leeway') ? toSeconds(body['clock_skew_leeway'], 'clock_skew_leeway') : (prev?.clock_skew_leeway ?? 0),
      no_default_policy: has('no_default_policy') ? toBool(body['no_default_policy'], false) : (prev?.no_default_policy ?? false),
      optional_authorization_details: has('optional_authorization_details')
        ? toBool(body['optional_authorization_details'], false)
        : (prev?.optional_authorization_details ?? false),
      enabled: has('enabled') ? toBool(body['enabled'], true) : (prev?.enabled ?? true),
      local: has('local') ? toBool(body['local'], false) : (prev?.local ?? false),
    };
    if (p.use_jwks && !p.jwks_uri) throw badRequest('jwks_uri is required when use_jwks=true');
    if (p.use_jwks && p.public_keys.length) throw badRequest('jwks_uri and public_keys are mutually exclusive');
    if (!p.use_jwks && !p.public_keys.length) throw badRequest('public_keys is required when use_jwks=false');
    if (p.jwt_type !== 'access_token') throw badRequest('jwt_type must be access_token');
    for (const alg of p.supported_algorithms) if (!ASYMMETRIC.includes(alg)) throw badRequest(`unsupported algorithm ${JSON.stringify(alg)}`);
    const other = this.all().find((x) => x.issuer_id === issuer && x.profile_name !== name);
    if (other) throw badRequest(`duplicate issuer_id ${issuer} found in profile ${other.profile_name}`);
    const warnings: string[] = [];
    if (p.use_jwks && p.jwks_uri.startsWith('http:')) warnings.push('jwks_uri uses HTTP: allowed for development only');
    this.byName.set(name, p);
    this.keys.set(name, p.use_jwks ? new RemoteKeys(p.jwks_uri) : new Map(p.public_keys.map((k) => [k.key_id, createPublicKey(k.pem)])));
    return warnings.length ? { data: this.view(p), warnings } : null;
  }

  /** Verifies a JWT against the enabled profile of its `iss`; returns that profile and the claims. */
  async verify(jwt: string): Promise<{ profile: Profile; claims: Record<string, unknown> }> {
    let claims: Record<string, unknown>;
    let header: { alg?: string; kid?: string };
    try {
      header = decodeProtectedHeader(jwt);
      claims = JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<string, unknown>;
      if (!claims || typeof claims !== 'object' || Array.isArray(claims)) throw new Error('not an object');
    } catch {
      throw refuseJwt('malformed token');
    }
    const profile = typeof claims['iss'] === 'string' ? this.byIssuer(claims['iss']) : undefined;
    if (!profile || !profile.enabled) throw refuseJwt('no enabled profile trusts this issuer');
    const alg = header.alg ?? '';
    if (!ASYMMETRIC.includes(alg) || !profile.supported_algorithms.includes(alg)) throw refuseJwt(`algorithm ${alg || 'none'} is not accepted`);
    const keys = this.keys.get(profile.profile_name);
    try {
      if (keys instanceof RemoteKeys) {
        await keys.verify(jwt, [alg]);
      } else {
        const key = header.kid ? keys?.get(header.kid) : undefined;
        if (!key) throw new Error('unknown kid');
        await compactVerify(jwt, key, { algorithms: [alg] });
      }
    } catch {
      throw refuseJwt('signature not verified by the profile keys');
    }
    const now = Date.now() / 1000;
    const skew = profile.clock_skew_leeway;
    const exp = claims['exp'];
    if (typeof exp !== 'number') throw refuseJwt('no exp claim');
    if (now > exp + skew) throw refuseJwt('token is expired');
    if (typeof claims['nbf'] === 'number' && now < claims['nbf'] - skew) throw refuseJwt('token is not valid yet');
    if (typeof claims['iat'] === 'number' && now < claims['iat'] - skew) throw refuseJwt('token issued in the future');
    if (profile.audiences.length) {
      const aud = toList(claims['aud']);
      if (!aud.some((a) => profile.audiences.includes(a))) throw refuseJwt('no audience this profile accepts');
    }
    return { profile, claims };
  }
}

function parseKeys(v: unknown): Array<{ key_id: string; pem: string }> {
  if (!Array.isArray(v)) throw badRequest('public_keys must be a list of {key_id, pem}');
  return v.map((k: unknown) => {
    const o = (k ?? {}) as Record<string, unknown>;
    if (typeof o['key_id'] !== 'string' || !o['key_id'] || typeof o['pem'] !== 'string') throw badRequest('each public key needs key_id and pem');
    try {
      createPublicKey(o['pem']);
    } catch {
      throw badRequest(`public key ${o['key_id']} is not a PEM public key`);
    }
    return { key_id: o['key_id'], pem: o['pem'] };
  });
}

/** Reads a dotted claim path (`act.sub`), as `actor_claim` names one. */
export function dottedClaim(claims: Record<string, unknown>, path: string): unknown {
  let cur: unknown = claims;
  for (const part of path.split('.')) {
    if (!cur || typeof cur !== 'object' || Array.isArray(cur)) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}
