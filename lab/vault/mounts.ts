/**
 * The mount table and router, as Vault's (vault/mount.go, vault/router.go): secrets engines and auth
 * methods mounted at paths, each request routed to the longest mount that prefixes its path. One
 * file per backend beside it: kv.ts, database.ts, jwt-auth.ts.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { DatabaseBackend } from './database.ts';
import type { ExpirationManager } from './expiration.ts';
import { JwtAuthBackend, type TokenIssuer } from './jwt-auth.ts';
import { KvBackend } from './kv.ts';
import { SYSTEM_DEFAULT_TTL } from './token-store.ts';
import { badRequest } from './types.ts';
import type { Backend } from './types.ts';

export const VERSION = '1.21.0';

export interface Mount {
  path: string; // e.g. "secret/" or "auth/jwt/"
  type: string;
  description: string;
  accessor: string;
  options: Record<string, string> | null;
  backend: Backend;
  local: boolean;
}

const hex = (n: number): string => randomBytes(n).toString('hex');

/** Paths Vault reserves for its own backends. */
const RESERVED = ['sys/', 'auth/token/', 'cubbyhole/', 'identity/', 'agent-registry/'];

export class MountTable {
  readonly #mounts = new Map<string, Mount>();
  readonly #expiration: ExpirationManager;
  readonly #issueToken: TokenIssuer['issueToken'];
  /** Consumed by a database backend when a revocation should fail (the lab's fault knob). */
  readonly #failRevocations: () => boolean;

  constructor(deps: { expiration: ExpirationManager; issueToken: TokenIssuer['issueToken']; failRevocations: () => boolean }) {
    this.#expiration = deps.expiration;
    this.#issueToken = deps.issueToken;
    this.#failRevocations = deps.failRevocations;
  }

  get(path: string): Mount | undefined {
    return this.#mounts.get(path);
  }

  values(): IterableIterator<Mount> {
    return this.#mounts.values();
  }

  mountSecret(path: string, type: string, opts: Record<string, string> | null, description = ''): Mount {
    const accessor = `${type}_${hex(4)}`;
    let backend: Backend;
    let options = opts;
    if (type === 'kv' || type === 'kv-v2' || type === 'generic') {
      const version = type === 'kv-v2' || opts?.['version'] === '2' ? 2 : 1;
      options = { ...(opts ?? {}), version: String(version) };
      backend = new KvBackend(accessor, version);
      type = 'kv';
    } else if (type === 'database') {
      const expiration = this.#expiration;
      const db = new DatabaseBackend(path, accessor, { addLease: (o) => expiration.add(o), defaultTtl: SYSTEM_DEFAULT_TTL, maxTtl: SYSTEM_DEFAULT_TTL });
      db.failRevocations = this.#failRevocations;
      backend = db;
    } else {
      throw badRequest(`plugin not found in the catalog: ${type}`);
    }
    const m: Mount = { path, type, description, accessor, options, backend, local: false };
    this.#mounts.set(path, m);
    return m;
  }

  mountAuth(path: string, type: string, description = ''): Mount {
    if (type !== 'jwt' && type !== 'oidc') throw badRequest(`plugin not found in the catalog: ${type}`);
    const accessor = `auth_${type}_${hex(4)}`;
    const full = `auth/${path}`;
    const m: Mount = { path: full, type, description, accessor, options: null, backend: new JwtAuthBackend(path, accessor, { issueToken: this.#issueToken }), local: false };
    this.#mounts.set(full, m);
    return m;
  }

  /** Unmounts: a secrets engine's leases are revoked first (as `vault secrets disable` does). */
  async unmount(path: string, revokeLeases: boolean): Promise<void> {
    const existing = this.#mounts.get(path);
    if (existing) {
      if (revokeLeases) await this.#expiration.revokePrefix(path, true);
      await existing.backend.close?.();
    }
    this.#mounts.delete(path);
  }

  inUse(path: string): boolean {
    return [...this.#mounts.keys(), ...RESERVED].some((existing) => path.startsWith(existing) || existing.startsWith(path));
  }

  /** The longest mount whose path prefixes `path`. */
  find(path: string): Mount | undefined {
    let best: Mount | undefined;
    for (const m of this.#mounts.values()) if ((path + '/').startsWith(m.path) && (!best || m.path.length > best.path.length)) best = m;
    return best;
  }

  /** `auth/<mount>/login` of a mounted auth method: answered without a token. */
  isLoginPath(p: string): boolean {
    const m = /^auth\/(.+)\/login$/.exec(p);
    return !!m && this.#mounts.get(`auth/${m[1]}/`)?.type !== undefined;
  }

  async close(): Promise<void> {
    for (const m of this.#mounts.values()) await m.backend.close?.();
  }

  static info(m: Mount): Record<string, unknown> {
    return {
      accessor: m.accessor,
      config: { default_lease_ttl: 0, force_no_cache: false, max_lease_ttl: 0 },
      description: m.description,
      external_entropy_access: false,
      local: m.local,
      options: m.options,
      plugin_version: '',
      running_plugin_version: `v${VERSION}+builtin`,
      seal_wrap: false,
      type: m.type,
      uuid: randomUUID(),
    };
  }
}

export const normalizeMountPath = (p: string): string => {
  const s = p.replace(/^\/+|\/+$/g, '');
  if (!s) throw badRequest('missing mount path');
  return `${s}/`;
};
