/**
 * Vault's JWT auth method (hashicorp/vault-plugin-auth-jwt) for `role_type: "jwt"`: config with
 * `jwks_url` (re-fetched when a token names a key it has not seen: IdP key rotation),
 * `jwt_validation_pubkeys` or `oidc_discovery_url`; roles with bound audiences, subject and claims
 * (JSON-pointer keys, string or glob matching, a list claim matching when any element does), user
 * claim, claim mappings, leeways and token fields; and login with the plugin's own error messages
 * (path_login.go, claims.go, path_role.go). Like Vault, it keeps no record of used `jti`s.
 */
import { createPublicKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { compactVerify, decodeProtectedHeader } from 'jose';
import { getClaim, ipv4InCidr, leeway, normalizeList, validateBoundClaims } from './jwt-claims.ts';
import { RemoteKeys } from './remote-keys.ts';
import { badRequest, permissionDenied, toBool, toList, toSeconds, VaultError, notFound } from './types.ts';
import type { AuthBlock, Backend, BackendResponse, VaultRequest } from './types.ts';

export interface TokenIssuer {
  issueToken(opts: {
    policies: string[];
    noDefaultPolicy: boolean;
    meta: Record<string, string>;
    displayName: string;
    path: string;
    ttl: number;
    maxTtl: number;
    numUses: number;
  }): AuthBlock;
}

interface JwtConfig {
  jwks_url: string;
  jwt_validation_pubkeys: string[];
  oidc_discovery_url: string;
  bound_issuer: string;
  jwt_supported_algs: string[];
  default_role: string;
}

interface JwtRole {
  role_type: 'jwt' | 'oidc';
  bound_audiences: string[];
  bound_subject: string;
  bound_claims: Record<string, unknown> | null;
  bound_claims_type: 'string' | 'glob';
  user_claim: string;
  groups_claim: string;
  claim_mappings: Record<string, string> | null;
  clock_skew_leeway: number;
  expiration_leeway: number;
  not_before_leeway: number;
  allowed_redirect_uris: string[];
  token_ttl: number;
  token_max_ttl: number;
  token_policies: string[];
  token_bound_cidrs: string[];
  token_no_default_policy: boolean;
  token_num_uses: number;
  token_type: string;
}

export const ALL_ALGS = ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512', 'EdDSA'];

function stringMap(v: unknown, field: string): Record<string, string> | null {
  if (v === undefined || v === null || v === '') return null;
  if (typeof v !== 'object' || Array.isArray(v)) throw badRequest(`error converting input for field "${field}": expected a map`);
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v)) out[k] = String(val);
  return out;
}

export class JwtAuthBackend implements Backend {
  readonly type = 'jwt';
  readonly accessor: string;
  private readonly mountPath: string;
  private readonly issuer: TokenIssuer;
  private config: JwtConfig | null = null;
  private keys: RemoteKeys | KeyObject[] | null = null;
  private readonly roles = new Map<string, JwtRole>();

  constructor(mountPath: string, accessor: string, issuer: TokenIssuer) {
    this.mountPath = mountPath;
    this.accessor = accessor;
    this.issuer = issuer;
  }

  async handle(req: VaultRequest, rel: string): Promise<BackendResponse | null> {
    if (rel === 'login') {
      if (req.operation !== 'update' && req.operation !== 'create') throw new VaultError(405, 'unsupported operation');
      return this.login(req);
    }
    if (rel === 'config') {
      if (req.operation === 'read') return { data: this.config ? { ...this.config } : null };
      if (req.operation === 'update' || req.operation === 'create') return this.writeConfig(req.body);
      throw new VaultError(405, 'unsupported operation');
    }
    if (rel === 'role' || rel === 'role/') {
      if (req.operation !== 'list') throw new VaultError(405, 'unsupported operation');
      if (this.roles.size === 0) throw notFound();
      return { data: { keys: [...this.roles.keys()].sort() } };
    }
    const m = /^role\/([^/]+)$/.exec(rel);
    if (m) {
      const name = m[1]!;
      if (req.operation === 'read') {
        const role = this.roles.get(name);
        if (!role) return null;
        return { data: { ...role } as unknown as Record<string, unknown> };
      }
      if (req.operation === 'delete') {
        this.roles.delete(name);
        return null;
      }
      if (req.operation === 'update' || req.operation === 'create') return this.writeRole(name, req.body);
      throw new VaultError(405, 'unsupported operation');
    }
    throw new VaultError(404, [`unsupported path`]);
  }

  exists(rel: string): boolean {
    const m = /^role\/([^/]+)$/.exec(rel);
    return m ? this.roles.has(m[1]!) : rel === 'config' ? this.config !== null : true;
  }

  private async writeConfig(body: Record<string, unknown>): Promise<BackendResponse | null> {
    const cfg: JwtConfig = {
      jwks_url: typeof body['jwks_url'] === 'string' ? body['jwks_url'] : '',
      jwt_validation_pubkeys: toList(body['jwt_validation_pubkeys']),
      oidc_discovery_url: typeof body['oidc_discovery_url'] === 'string' ? body['oidc_discovery_url'] : '',
      bound_issuer: typeof body['bound_issuer'] === 'string' ? body['bound_issuer'] : '',
      jwt_supported_algs: toList(body['jwt_supported_algs']),
      default_role: typeof body['default_role'] === 'string' ? body['default_role'] : '',
    };
    const set = [cfg.jwks_url, cfg.jwt_validation_pubkeys.length ? 'x' : '', cfg.oidc_discovery_url].filter(Boolean).length;
    if (set !== 1) throw badRequest("exactly one of 'jwt_validation_pubkeys', 'jwks_url' or 'oidc_discovery_url' must be set");
    for (const alg of cfg.jwt_supported_algs) if (!ALL_ALGS.includes(alg)) throw badRequest(`invalid jwt_supported_algs: ${alg}`);
    if (cfg.jwt_validation_pubkeys.length) {
      try {
        this.keys = cfg.jwt_validation_pubkeys.map((pem) => createPublicKey(pem));
      } catch {
        throw badRequest('error parsing public key');
      }
    } else {
      let jwksUrl = cfg.jwks_url;
      if (cfg.oidc_discovery_url) {
        try {
          const res = await fetch(`${cfg.oidc_discovery_url.replace(/\/$/, '')}/.well-known/openid-configuration`, { signal: AbortSignal.timeout(5_000) });
          const doc = (await res.json()) as { jwks_uri?: unknown; issuer?: unknown };
          if (typeof doc.jwks_uri !== 'string') throw new Error('no jwks_uri');
          jwksUrl = doc.jwks_uri;
        } catch {
          throw badRequest('error checking oidc discovery URL');
        }
      }
      const remote = new RemoteKeys(jwksUrl);
      try {
        await remote.refresh();
      } catch {
        throw badRequest('error checking jwks URL');
      }
      this.keys = remote;
    }
    this.config = cfg;
    return null;
  }

  private writeRole(name: string, body: Record<string, unknown>): BackendResponse | null {
    const prev = this.roles.get(name);
    const pick = <T>(key: string, conv: (v: unknown) => T, dflt: T): T =>
      key in body ? conv(body[key]) : prev ? ((prev as unknown as Record<string, T>)[key] ?? dflt) : dflt;
    const roleType = pick('role_type', (v) => String(v), 'oidc');
    if (roleType !== 'jwt' && roleType !== 'oidc') throw badRequest(`invalid 'role_type': ${roleType}`);
    const boundClaimsType = pick('bound_claims_type', (v) => String(v || 'string'), 'string');
    if (boundClaimsType !== 'string' && boundClaimsType !== 'glob') throw badRequest(`invalid 'bound_claims_type': ${boundClaimsType}`);
    const boundClaims = pick(
      'bound_claims',
      (v) => {
        if (v === null || v === undefined || v === '') return null;
        if (typeof v !== 'object' || Array.isArray(v)) throw badRequest('bound_claims must be a map');
        return v as Record<string, unknown>;
      },
      null as Record<string, unknown> | null,
    );
    if (boundClaims) {
      for (const [k, v] of Object.entries(boundClaims)) {
        const list = normalizeList(v);
        if (!list || list.some((x) => typeof x === 'object')) throw badRequest(`claim is not a string or list: ${k}`);
        if (boundClaimsType === 'glob' && list.some((x) => typeof x !== 'string')) throw badRequest(`claim is not a string: ${k}`);
      }
    }
    const policies = 'token_policies' in body ? toList(body['token_policies']) : 'policies' in body ? toList(body['policies']) : (prev?.token_policies ?? []);
    const role: JwtRole = {
      role_type: roleType,
      bound_audiences: pick('bound_audiences', toList, []),
      bound_subject: pick('bound_subject', (v) => String(v ?? ''), ''),
      bound_claims: boundClaims,
      bound_claims_type: boundClaimsType,
      user_claim: pick('user_claim', (v) => String(v ?? ''), ''),
      groups_claim: pick('groups_claim', (v) => String(v ?? ''), ''),
      claim_mappings: pick('claim_mappings', (v) => stringMap(v, 'claim_mappings'), null),
      clock_skew_leeway: pick('clock_skew_leeway', (v) => toSeconds(v, 'clock_skew_leeway'), 0),
      expiration_leeway: pick('expiration_leeway', (v) => toSeconds(v, 'expiration_leeway'), 0),
      not_before_leeway: pick('not_before_leeway', (v) => toSeconds(v, 'not_before_leeway'), 0),
      allowed_redirect_uris: pick('allowed_redirect_uris', toList, []),
      token_ttl: pick('token_ttl', (v) => toSeconds(v, 'token_ttl'), 0),
      token_max_ttl: pick('token_max_ttl', (v) => toSeconds(v, 'token_max_ttl'), 0),
      token_policies: policies,
      token_bound_cidrs: pick('token_bound_cidrs', toList, []),
      token_no_default_policy: pick('token_no_default_policy', (v) => toBool(v, false), false),
      token_num_uses: pick('token_num_uses', (v) => Number(v) || 0, 0),
      token_type: pick('token_type', (v) => String(v || 'default'), 'default'),
    };
    if (!role.user_claim) throw badRequest('a user claim must be defined on the role');
    if (role.role_type === 'oidc' && role.allowed_redirect_uris.length === 0) {
      throw badRequest("'allowed_redirect_uris' must be set if 'role_type' is 'oidc' or unspecified.");
    }
    if (
      role.role_type === 'jwt' &&
      role.bound_audiences.length === 0 &&
      !role.bound_subject &&
      (!role.bound_claims || Object.keys(role.bound_claims).length === 0) &&
      role.token_bound_cidrs.length === 0
    ) {
      throw badRequest('must have at least one bound constraint when creating/updating a role');
    }
    if (role.token_max_ttl > 0 && role.token_ttl > role.token_max_ttl) throw badRequest('ttl should not be greater than max ttl');
    this.roles.set(name, role);
    return null;
  }

  private async login(req: VaultRequest): Promise<BackendResponse> {
    const body = req.body;
    const roleName = (typeof body['role'] === 'string' && body['role']) || this.config?.default_role || '';
    if (!roleName) throw badRequest('missing role');
    const role = this.roles.get(roleName);
    if (!role) throw badRequest(`role "${roleName}" could not be found`);
    if (role.role_type === 'oidc') throw badRequest('role with oidc role_type is not allowed');
    const token = typeof body['jwt'] === 'string' ? body['jwt'] : '';
    if (!token) throw badRequest('missing token');
    if (!this.config || !this.keys) throw badRequest('could not load configuration');
    if (role.token_bound_cidrs.length && !role.token_bound_cidrs.some((c) => ipv4InCidr(req.remoteAddress, c))) {
      throw permissionDenied();
    }

    const claims = await this.verify(token, role);

    // path_login.go: the alias comes from user_claim, then bound claims are checked.
    const user = getClaim(claims, role.user_claim);
    if (user === undefined || user === null) throw badRequest(`claim "${role.user_claim}" not found in token`);
    if (typeof user !== 'string') throw badRequest(`claim "${role.user_claim}" could not be converted to string`);
    if (role.bound_claims) {
      try {
        validateBoundClaims(role.bound_claims_type, role.bound_claims, claims);
      } catch (e) {
        throw badRequest(`error validating claims: ${(e as Error).message}`);
      }
    }

    const meta: Record<string, string> = { role: roleName };
    for (const [claim, key] of Object.entries(role.claim_mappings ?? {})) {
      const v = getClaim(claims, claim);
      if (v === undefined || v === null) continue;
      if (typeof v === 'object') continue;
      meta[key] = String(v);
    }
    const auth = this.issuer.issueToken({
      policies: role.token_policies,
      noDefaultPolicy: role.token_no_default_policy,
      meta,
      displayName: `${this.mountPath.replace(/\/$/, '').replace(/\//g, '-')}-${user}`,
      path: `auth/${this.mountPath}login`,
      ttl: role.token_ttl,
      maxTtl: role.token_max_ttl,
      numUses: role.token_num_uses,
    });
    return { auth, data: {} };
  }

  /** Signature, then the registered claims (cap/jwt validateAll), all as "error validating token: …". */
  private async verify(token: string, role: JwtRole): Promise<Record<string, unknown>> {
    const cfg = this.config!;
    const algorithms = cfg.jwt_supported_algs.length ? cfg.jwt_supported_algs : ALL_ALGS;
    const fail = (why: string): VaultError => badRequest(`error validating token: ${why}`);
    let payload: Uint8Array;
    try {
      const alg = decodeProtectedHeader(token).alg;
      if (!alg || !algorithms.includes(alg)) throw fail(`unsupported signing algorithm "${String(alg)}"`);
      if (this.keys instanceof RemoteKeys) {
        payload = await this.keys.verify(token, algorithms);
      } else {
        let verified: Uint8Array | undefined;
        for (const key of this.keys ?? []) {
          try {
            verified = (await compactVerify(token, key, { algorithms })).payload;
            break;
          } catch {
            /* try the next key */
          }
        }
        if (!verified) throw fail('no known key successfully validated the token signature');
        payload = verified;
      }
    } catch (e) {
      if (e instanceof VaultError) throw e;
      throw fail('failed to verify id token signature');
    }
    let claims: Record<string, unknown>;
    try {
      claims = JSON.parse(new TextDecoder().decode(payload)) as Record<string, unknown>;
      if (!claims || typeof claims !== 'object' || Array.isArray(claims)) throw new Error('not an object');
    } catch {
      throw fail('failed to parse claims');
    }

    const now = Date.now() / 1000;
    const skew = leeway(role.clock_skew_leeway, 60);
    const num = (k: string): number | undefined => (typeof claims[k] === 'number' ? (claims[k] as number) : undefined);
    const exp = num('exp');
    const nbf = num('nbf');
    const iat = num('iat');
    if (exp !== undefined) {
      if (now > exp + skew) throw fail('token is expired (exp)');
    } else if (iat !== undefined && role.expiration_leeway >= 0 && now > iat + leeway(role.expiration_leeway, 150) + skew) {
      throw fail('token is expired (exp)');
    }
    if (nbf !== undefined) {
      if (now < nbf - skew) throw fail('token not valid yet (nbf)');
    } else if (iat !== undefined && role.not_before_leeway >= 0 && now < iat - leeway(role.not_before_leeway, 150) - skew) {
      throw fail('token not valid yet (nbf)');
    }
    if (iat !== undefined && now < iat - skew) throw fail('token issued in the future (iat)');
    if (cfg.bound_issuer && claims['iss'] !== cfg.bound_issuer) throw fail('invalid issuer (iss) claim');

    const aud = toList(claims['aud']);
    if (role.bound_audiences.length === 0) {
      if (aud.length > 0) throw badRequest('audience claim found in JWT but no audiences bound to the role');
    } else if (!aud.some((a) => role.bound_audiences.includes(a))) {
      throw fail('invalid audience (aud) claim: audience claim does not match any expected audience');
    }
    if (role.bound_subject && claims['sub'] !== role.bound_subject) throw fail('sub claim does not match bound subject');
    return claims;
  }
}
