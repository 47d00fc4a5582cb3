/**
 * A stand-in for HashiCorp Vault that speaks Vault's documented HTTP API (api-docs/index.mdx) for what
 * Countersign uses: the response envelope and `{"errors":[…]}`, status codes, ACL policies enforced on
 * every request, the JWT auth method, tokens with TTLs, the PostgreSQL database secrets engine with
 * leases that drop real roles when revoked or expired, KV v1/v2, a file audit device in Vault's
 * format, a seal, and knobs for fault tests (latency, injected errors, failing revocations); and
 * Vault Enterprise's native agent mode (agent-auth.ts: OAuth JWTs as the token, identity aliases, the
 * Agent Registry, RAR). It passes ../shared/conformance/vault.mjs and vault-agent.mjs; see
 * docs/vault.md for configuring a real Vault the same way.
 *
 * Lab only: state lives in memory and there is one unseal key.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { capabilitiesFor, DEFAULT_POLICY, parsePolicy, PolicyParseError } from './acl.ts';
import type { PathRule } from './acl.ts';
import { AgentMode } from './agent-auth.ts';
import { FileAuditDevice } from './audit.ts';
import { DatabaseBackend } from './database.ts';
import { JwtAuthBackend } from './jwt-auth.ts';
import type { TokenIssuer } from './jwt-auth.ts';
import { KvBackend } from './kv.ts';
import { badRequest, notFound, permissionDenied, randomAlnum, toBool, toList, toSeconds, VaultError } from './types.ts';
import type { AuthBlock, Backend, BackendResponse, Lease, Operation, Token, VaultRequest } from './types.ts';

export type { Token, Lease } from './types.ts';

/** Injected faults, for tests of how the app fails closed. */
export type VaultFault =
  /** Answer `status` with `errors` on requests whose path matches (a trailing `*` matches any suffix). */
  | { kind: 'http'; path: string; method?: string; status: number; errors?: string[]; times?: number }
  /** Lease revocation fails (as when the database is unreachable): revoke-self and sys/leases/revoke
   * answer 500, the lease stays and is retried later. */
  | { kind: 'revoke'; times?: number };

export interface StartVaultOptions {
  /** Host port; 0 (default) picks a free one. */
  port?: number;
  log?: (line: string) => void;
  /** Enables a `file` audit device at `file/` writing here. */
  auditLogPath?: string;
}

export interface LabVault {
  addr: string;
  /** An administrator token with the `root` policy, as `vault server -dev` prints one. */
  rootToken: string;
  unsealKey: string;
  auditLogPath: string | undefined;
  seal(): void;
  unseal(): void;
  setLatency(ms: number): void;
  setFault(fault: VaultFault | null): void;
  /** Outstanding leases. */
  leases(): number;
  /** Lease ids, for tests. */
  leaseIds(): string[];
  /** HMAC of a string as the audit device writes it (sys/audit-hash). */
  auditHash(input: string): string | undefined;
  stop(): Promise<void>;
}

const VERSION = '1.21.0';
const SYSTEM_DEFAULT_TTL = 768 * 3600;

interface Mount {
  path: string; // e.g. "secret/" or "auth/jwt/"
  type: string;
  description: string;
  accessor: string;
  options: Record<string, string> | null;
  backend: Backend;
  local: boolean;
}

/** sys paths that need `sudo` besides the operation's capability (vault/logical_system.go PathsSpecial.Root). */
const SUDO_PATHS = [/^sys\/auth\/.+/, /^sys\/audit(\/.*)?$/, /^sys\/seal$/, /^sys\/leases\/revoke-prefix\/.*/, /^sys\/leases\/revoke-force\/.*/, /^sys\/leases\/lookup\/.*/, /^sys\/raw(\/.*)?$/, /^sys\/rotate$/];
const UNAUTHENTICATED = [/^sys\/seal-status$/, /^sys\/health$/, /^sys\/unseal$/, /^sys\/leader$/, /^sys\/init$/];

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const bytes = (n: number): Uint8Array => randomBytes(n);
const hex = (n: number): string => randomBytes(n).toString('hex');

function faultMatches(f: Extract<VaultFault, { kind: 'http' }>, path: string, method: string): boolean {
  if (f.method && f.method.toUpperCase() !== method) return false;
  const p = f.path.replace(/^\/?(v1\/)?/, '');
  return p.endsWith('*') ? path.startsWith(p.slice(0, -1)) : path === p;
}

export async function startVault(options: StartVaultOptions = {}): Promise<LabVault> {
  const log = options.log ?? (() => {});
  const rootToken = `hvs.${randomAlnum(24, bytes)}`;
  const unsealKey = randomBytes(32).toString('base64');
  let sealed = false;
  let latency = 0;
  let fault: VaultFault | null = null;
  let stopping = false;

  const tokens = new Map<string, Token>();
  const accessors = new Map<string, string>();
  const leases = new Map<string, Lease>();
  const policies = new Map<string, { text: string; rules: PathRule[] }>();
  policies.set('default', { text: DEFAULT_POLICY, rules: parsePolicy(DEFAULT_POLICY) });
  const mounts = new Map<string, Mount>();
  const audits = new Map<string, FileAuditDevice>();
  let addr = '';
  const agent = new AgentMode((name) => policies.get(name)?.rules ?? [], () => addr);

  const now = (): number => Math.floor(Date.now() / 1000);

  function addToken(t: Token): void {
    tokens.set(t.id, t);
    accessors.set(t.accessor, t.id);
    if (t.expiresAt !== null) {
      t.timer = setTimeout(() => void revokeToken(t).catch(() => {}), Math.max(0, t.expiresAt - Date.now()));
      t.timer.unref();
    }
  }

  addToken({
    id: rootToken,
    accessor: randomAlnum(24, bytes),
    policies: ['root'],
    meta: null,
    displayName: 'root',
    path: 'auth/token/root',
    entityId: '',
    creationTime: now(),
    creationTtl: 0,
    expiresAt: null,
    numUses: 0,
    orphan: true,
    leases: new Set(),
  });

  function issueToken(o: Parameters<TokenIssuer['issueToken']>[0]): AuthBlock {
    let ttl = o.ttl > 0 ? o.ttl : SYSTEM_DEFAULT_TTL;
    if (o.maxTtl > 0 && ttl > o.maxTtl) ttl = o.maxTtl;
    const set = new Set(o.policies.filter((p) => p && p !== 'root'));
    if (!o.noDefaultPolicy) set.add('default');
    const pols = [...set].sort();
    const t: Token = {
      id: `hvs.${randomAlnum(24, bytes)}`,
      accessor: randomAlnum(24, bytes),
      policies: pols,
      meta: o.meta,
      displayName: o.displayName,
      path: o.path,
      entityId: randomUUID(),
      creationTime: now(),
      creationTtl: ttl,
      expiresAt: Date.now() + ttl * 1000,
      numUses: o.numUses,
      orphan: true,
      leases: new Set(),
    };
    addToken(t);
    return {
      client_token: t.id,
      accessor: t.accessor,
      policies: pols,
      token_policies: pols,
      identity_policies: null,
      metadata: o.meta,
      lease_duration: ttl,
      renewable: true,
      entity_id: t.entityId,
      token_type: 'service',
      orphan: true,
      mfa_requirement: null,
      num_uses: o.numUses,
    };
  }

  function takeRevokeFault(): boolean {
    if (fault?.kind !== 'revoke') return false;
    if (fault.times !== undefined) {
      fault.times -= 1;
      if (fault.times <= 0) fault = null;
    }
    return true;
  }

  function scheduleLease(lease: Lease, ms: number): void {
    if (lease.timer) clearTimeout(lease.timer);
    lease.timer = setTimeout(() => {
      void revokeLease(lease.id).catch(() => {
        // Vault's expiration manager retries with back-off; so do we.
        lease.attempts += 1;
        if (!stopping) scheduleLease(lease, Math.min(30_000, 500 * 2 ** lease.attempts));
      });
    }, Math.max(0, ms));
    lease.timer.unref();
  }

  function addLease(o: { id: string; ttl: number; renewable: boolean; tokenId: string | null; revoke: () => Promise<void> }): Lease {
    const lease: Lease = {
      id: o.id,
      issueTime: Date.now(),
      expiresAt: Date.now() + o.ttl * 1000,
      ttl: o.ttl,
      renewable: o.renewable,
      // A lease minted under an OAuth JWT belongs to no stored token (the JWT is never kept).
      tokenId: o.tokenId && tokens.has(o.tokenId) ? o.tokenId : null,
      revoke: o.revoke,
      attempts: 0,
    };
    leases.set(lease.id, lease);
    if (lease.tokenId) tokens.get(lease.tokenId)?.leases.add(lease.id);
    scheduleLease(lease, o.ttl * 1000);
    return lease;
  }

  async function revokeLease(id: string): Promise<void> {
    const lease = leases.get(id);
    if (!lease) return;
    await lease.revoke();
    if (lease.timer) clearTimeout(lease.timer);
    leases.delete(id);
    if (lease.tokenId) tokens.get(lease.tokenId)?.leases.delete(id);
    log(`vault: lease revoked ${id}`);
  }

  /** Revokes the token and every lease it created (api-docs/auth/token "Revoke a Token (Self)"). */
  async function revokeToken(t: Token): Promise<void> {
    tokens.delete(t.id);
    accessors.delete(t.accessor);
    if (t.timer) clearTimeout(t.timer);
    const failed: string[] = [];
    for (const id of [...t.leases]) {
      try {
        await revokeLease(id);
      } catch {
        failed.push(id);
        const lease = leases.get(id);
        if (lease && !stopping) scheduleLease(lease, 500);
      }
    }
    if (failed.length) {
      throw new VaultError(500, [`1 error occurred:\n\t* failed to revoke token: failed to revoke ${failed.length} lease(s) of the token\n\n`]);
    }
  }

  const database = (path: string, accessor: string): DatabaseBackend => {
    const b = new DatabaseBackend(path, accessor, { addLease, defaultTtl: SYSTEM_DEFAULT_TTL, maxTtl: SYSTEM_DEFAULT_TTL });
    b.failRevocations = takeRevokeFault;
    return b;
  };

  function mountSecret(path: string, type: string, opts: Record<string, string> | null, description = ''): Mount {
    const accessor = `${type}_${hex(4)}`;
    let backend: Backend;
    let options = opts;
    if (type === 'kv' || type === 'kv-v2' || type === 'generic') {
      const version = type === 'kv-v2' || opts?.['version'] === '2' ? 2 : 1;
      options = { ...(opts ?? {}), version: String(version) };
      backend = new KvBackend(accessor, version);
      type = 'kv';
    } else if (type === 'database') {
      backend = database(path, accessor);
    } else {
      throw badRequest(`plugin not found in the catalog: ${type}`);
    }
    const m: Mount = { path, type, description, accessor, options, backend, local: false };
    mounts.set(path, m);
    return m;
  }

  function mountAuth(path: string, type: string, description = ''): Mount {
    if (type !== 'jwt' && type !== 'oidc') throw badRequest(`plugin not found in the catalog: ${type}`);
    const accessor = `auth_${type}_${hex(4)}`;
    const full = `auth/${path}`;
    const m: Mount = { path: full, type, description, accessor, options: null, backend: new JwtAuthBackend(path, accessor, { issueToken }), local: false };
    mounts.set(full, m);
    return m;
  }

  const normalizeMountPath = (p: string): string => {
    const s = p.replace(/^\/+|\/+$/g, '');
    if (!s) throw badRequest('missing mount path');
    return `${s}/`;
  };

  function pathInUse(path: string): boolean {
    for (const existing of [...mounts.keys(), 'sys/', 'auth/token/', 'cubbyhole/', 'identity/', 'agent-registry/']) {
      if (path.startsWith(existing) || existing.startsWith(path)) return true;
    }
    return false;
  }

  function mountInfo(m: Mount): Record<string, unknown> {
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

  function leaseView(l: Lease): Record<string, unknown> {
    return {
      id: l.id,
      issue_time: new Date(l.issueTime).toISOString(),
      expire_time: new Date(l.expiresAt).toISOString(),
      last_renewal: null,
      renewable: l.renewable,
      ttl: Math.max(0, Math.round((l.expiresAt - Date.now()) / 1000)),
    };
  }

  function tokenView(t: Token): Record<string, unknown> {
    const ttl = t.expiresAt === null ? 0 : Math.max(0, Math.round((t.expiresAt - Date.now()) / 1000));
    return {
      accessor: t.accessor,
      creation_time: t.creationTime,
      creation_ttl: t.creationTtl,
      display_name: t.displayName,
      entity_id: t.entityId,
      expire_time: t.expiresAt === null ? null : new Date(t.expiresAt).toISOString(),
      explicit_max_ttl: 0,
      id: t.id,
      issue_time: new Date(t.creationTime * 1000).toISOString(),
      meta: t.meta,
      num_uses: t.numUses,
      orphan: t.orphan,
      path: t.path,
      policies: t.policies,
      renewable: t.expiresAt !== null && !t.oauth,
      ttl,
      type: 'service',
    };
  }

  function sealStatus(): Record<string, unknown> {
    return {
      type: 'shamir',
      initialized: true,
      sealed,
      t: 1,
      n: 1,
      progress: 0,
      nonce: '',
      version: VERSION,
      build_date: '2026-01-01T00:00:00Z',
      migration: false,
      cluster_name: sealed ? undefined : 'countersign-lab',
      recovery_seal: false,
      storage_type: 'inmem',
    };
  }

  function policyRules(t: Token): PathRule[][] {
    return t.policies.map((p) => policies.get(p)?.rules ?? []);
  }

  // --- the system backend --------------------------------------------------------------------
  async function sys(req: VaultRequest, rel: string): Promise<BackendResponse | null> {
    const op = req.operation;
    const write = op === 'update' || op === 'create';
    const owned = agent.sys(req, rel);
    if (owned !== undefined) return owned;
    if (rel === 'seal-status') return { raw: sealStatus() };
    if (rel === 'health') {
      return {
        status: sealed ? 503 : 200,
        raw: {
          initialized: true,
          sealed,
          standby: false,
          performance_standby: false,
          replication_performance_mode: 'disabled',
          replication_dr_mode: 'disabled',
          server_time_utc: now(),
          version: VERSION,
          cluster_name: 'countersign-lab',
        },
      };
    }
    if (rel === 'seal' && write) {
      sealed = true;
      return null;
    }
    if (rel === 'unseal' && write) {
      if (req.body['key'] === unsealKey) sealed = false;
      else if (req.body['reset'] !== true) throw badRequest('invalid key');
      return { raw: sealStatus() };
    }
    if (rel === 'auth' && op === 'read') {
      const data: Record<string, unknown> = {
        'token/': { accessor: 'auth_token_lab', type: 'token', description: 'token based credentials', options: null, config: {}, local: false },
      };
      for (const m of mounts.values()) if (m.path.startsWith('auth/')) data[m.path.slice(5)] = mountInfo(m);
      return { data, raw: undefined };
    }
    let m = /^auth\/(.+)$/.exec(rel);
    if (m) {
      const path = normalizeMountPath(m[1]!);
      if (write) {
        if (pathInUse(`auth/${path}`)) throw badRequest(`path is already in use at auth/${path}`);
        mountAuth(path, String(req.body['type'] ?? ''), String(req.body['description'] ?? ''));
        return null;
      }
      if (op === 'delete') {
        const existing = mounts.get(`auth/${path}`);
        await existing?.backend.close?.();
        mounts.delete(`auth/${path}`);
        return null;
      }
      if (op === 'read') {
        const existing = mounts.get(`auth/${path}`);
        if (!existing) throw badRequest(`No auth engine at auth/${path}`);
        return { data: mountInfo(existing) };
      }
    }
    if (rel === 'mounts' && op === 'read') {
      const data: Record<string, unknown> = {
        'sys/': { type: 'system', description: 'system endpoints used for control, policy and debugging', options: null, config: {}, local: false },
        'cubbyhole/': { type: 'cubbyhole', description: 'per-token private secret storage', options: null, config: {}, local: true },
      };
      for (const mt of mounts.values()) if (!mt.path.startsWith('auth/')) data[mt.path] = mountInfo(mt);
      return { data };
    }
    m = /^mounts\/(.+)$/.exec(rel);
    if (m) {
      const path = normalizeMountPath(m[1]!);
      if (write) {
        if (pathInUse(path)) throw badRequest(`path is already in use at ${path}`);
        const rawOpts = req.body['options'];
        const opts: Record<string, string> | null =
          rawOpts && typeof rawOpts === 'object' ? Object.fromEntries(Object.entries(rawOpts).map(([k, v]) => [k, String(v)])) : null;
        mountSecret(path, String(req.body['type'] ?? ''), opts, String(req.body['description'] ?? ''));
        return null;
      }
      if (op === 'delete') {
        const existing = mounts.get(path);
        if (existing) {
          for (const id of [...leases.keys()]) if (id.startsWith(path)) await revokeLease(id).catch(() => {});
          await existing.backend.close?.();
        }
        mounts.delete(path);
        return null;
      }
      if (op === 'read') {
        const existing = mounts.get(path);
        if (!existing) throw badRequest(`No secret engine mount at ${path}`);
        return { data: mountInfo(existing) };
      }
    }
    if ((rel === 'policies/acl' || rel === 'policies/acl/' || rel === 'policy') && (op === 'list' || op === 'read')) {
      const keys = [...policies.keys(), 'root'].sort();
      return { data: rel === 'policy' ? { keys, policies: keys } : { keys } };
    }
    m = /^(?:policies\/acl|policy)\/([^/]+)$/.exec(rel);
    if (m) {
      const name = m[1]!.toLowerCase();
      if (op === 'read') {
        if (name === 'root') return { data: { name, policy: '', rules: '' } };
        const p = policies.get(name);
        if (!p) return null;
        return { data: { name, policy: p.text, rules: p.text } };
      }
      if (write) {
        if (name === 'root') throw badRequest('cannot update "root" policy');
        const text = typeof req.body['policy'] === 'string' ? req.body['policy'] : typeof req.body['rules'] === 'string' ? req.body['rules'] : '';
        if (!text) throw badRequest("'policy' parameter not supplied or empty");
        try {
          policies.set(name, { text, rules: parsePolicy(text) });
        } catch (e) {
          if (e instanceof PolicyParseError) throw badRequest(`failed to parse policy: ${e.message}`);
          throw e;
        }
        return null;
      }
      if (op === 'delete') {
        if (name === 'root' || name === 'default') throw badRequest(`cannot delete "${name}" policy`);
        policies.delete(name);
        return null;
      }
    }
    m = /^leases\/revoke(?:\/(.+))?$/.exec(rel);
    if (m && write) {
      const id = m[1] ?? (typeof req.body['lease_id'] === 'string' ? req.body['lease_id'] : '');
      if (!id) throw badRequest('a lease ID must be specified');
      const sync = toBool(req.body['sync'], true);
      if (!leases.has(id)) throw badRequest('invalid lease');
      if (!sync) {
        void revokeLease(id).catch(() => {
          const l = leases.get(id);
          if (l) scheduleLease(l, 500);
        });
        return { status: 202, raw: null };
      }
      try {
        await revokeLease(id);
      } catch {
        const l = leases.get(id);
        if (l && !stopping) scheduleLease(l, 500);
        throw new VaultError(500, [`1 error occurred:\n\t* failed to revoke lease: lease_id=${id}\n\n`]);
      }
      return null;
    }
    m = /^leases\/revoke-prefix\/(.+)$/.exec(rel);
    if (m && write) {
      for (const id of [...leases.keys()]) if (id.startsWith(m[1]!)) await revokeLease(id);
      return null;
    }
    if (rel === 'leases/lookup' && write) {
      const id = String(req.body['lease_id'] ?? '');
      const l = leases.get(id);
      if (!l) throw badRequest('invalid lease');
      return { data: leaseView(l) };
    }
    m = /^leases\/lookup\/(.*)$/.exec(rel);
    if (m && op === 'list') {
      const prefix = m[1]!;
      const keys = new Set<string>();
      for (const id of leases.keys()) {
        if (!id.startsWith(prefix)) continue;
        const rest = id.slice(prefix.length);
        const slash = rest.indexOf('/');
        keys.add(slash < 0 ? rest : rest.slice(0, slash + 1));
      }
      if (!keys.size) throw notFound();
      return { data: { keys: [...keys].sort() } };
    }
    if (rel === 'leases/renew' && write) {
      const id = String(req.body['lease_id'] ?? '');
      const l = leases.get(id);
      if (!l) throw badRequest('lease not found');
      if (req.token && req.token.policies[0] !== 'root' && l.tokenId !== req.token.id) throw badRequest('lease not found');
      const inc = toSeconds(req.body['increment'], 'increment') || l.ttl;
      l.expiresAt = Date.now() + inc * 1000;
      scheduleLease(l, inc * 1000);
      return { lease: { id: l.id, duration: inc, renewable: true }, data: {} };
    }
    if (rel === 'audit' && op === 'read') {
      const data: Record<string, unknown> = {};
      for (const d of audits.values()) data[d.path] = { type: 'file', path: d.path, description: '', options: { file_path: d.filePath }, local: false };
      return { data };
    }
    m = /^audit\/(.+)$/.exec(rel);
    if (m) {
      const path = normalizeMountPath(m[1]!);
      if (write) {
        if (req.body['type'] !== 'file') throw badRequest(`unknown backend type: "${String(req.body['type'])}"`);
        const o = (req.body['options'] ?? {}) as Record<string, unknown>;
        const fp = typeof o['file_path'] === 'string' ? o['file_path'] : typeof o['path'] === 'string' ? o['path'] : '';
        if (!fp) throw badRequest('file_path is required');
        if (audits.has(path)) throw badRequest(`path already in use`);
        audits.set(path, new FileAuditDevice(path, fp));
        return null;
      }
      if (op === 'delete') {
        await audits.get(path)?.flush();
        audits.delete(path);
        return null;
      }
    }
    m = /^audit-hash\/(.+)$/.exec(rel);
    if (m && write) {
      const d = audits.get(normalizeMountPath(m[1]!));
      if (!d) throw badRequest('unknown audit backend');
      const hash = d.hash(String(req.body['input'] ?? ''));
      return { data: { hash } };
    }
    if (rel === 'capabilities-self' && write) {
      const paths = toList(req.body['paths'] ?? req.body['path']);
      const data: Record<string, unknown> = {};
      const all: string[] = [];
      for (const p of paths) {
        const caps = req.token?.policies.includes('root') ? ['root'] : [...capabilitiesFor(policyRules(req.token!), p)].sort();
        data[p] = caps.length ? caps : ['deny'];
        all.push(...(caps.length ? caps : ['deny']));
      }
      data['capabilities'] = [...new Set(all)].sort();
      return { data };
    }
    throw new VaultError(404, [`no handler for route "sys/${rel}". route entry not found.`]);
  }

  // --- the token backend (auth/token/) ----------------------------------------------------------
  async function tokenBackend(req: VaultRequest, rel: string): Promise<BackendResponse | null> {
    const op = req.operation;
    const write = op === 'update' || op === 'create';
    const self = req.token!;
    const byBody = (): Token => {
      const t = tokens.get(String(req.body['token'] ?? ''));
      if (!t) throw badRequest('bad token');
      return t;
    };
    const byAccessor = (): Token => {
      const id = accessors.get(String(req.body['accessor'] ?? ''));
      const t = id ? tokens.get(id) : undefined;
      if (!t) throw badRequest('invalid accessor');
      return t;
    };
    switch (rel) {
      case 'lookup-self':
        if (op === 'read' || write) return { data: tokenView(self) };
        break;
      case 'revoke-self':
        if (write) {
          await revokeToken(self);
          return null;
        }
        break;
      case 'renew-self':
        if (write) {
          if (self.expiresAt === null || self.oauth) throw badRequest('token is not renewable');
          const inc = toSeconds(req.body['increment'], 'increment') || self.creationTtl;
          self.expiresAt = Date.now() + inc * 1000;
          if (self.timer) clearTimeout(self.timer);
          self.timer = setTimeout(() => void revokeToken(self).catch(() => {}), inc * 1000);
          self.timer.unref();
          return { auth: authOf(self, inc) };
        }
        break;
      case 'lookup':
        if (write) return { data: tokenView(byBody()) };
        break;
      case 'lookup-accessor':
        if (write) {
          const v = tokenView(byAccessor());
          v['id'] = '';
          return { data: v };
        }
        break;
      case 'revoke':
        if (write) {
          await revokeToken(byBody());
          return null;
        }
        break;
      case 'revoke-accessor':
        if (write) {
          await revokeToken(byAccessor());
          return null;
        }
        break;
      case 'create':
      case 'create-orphan':
        if (write) {
          const requested = toList(req.body['policies']);
          const isRoot = self.policies.includes('root');
          if (!isRoot && requested.some((p) => !self.policies.includes(p))) throw badRequest('child policies must be subset of parent');
          const metaRaw = req.body['meta'];
          const meta = metaRaw && typeof metaRaw === 'object' ? Object.fromEntries(Object.entries(metaRaw).map(([k, v]) => [k, String(v)])) : {};
          const auth = issueToken({
            policies: requested.length ? requested : self.policies,
            noDefaultPolicy: toBool(req.body['no_default_policy'], false),
            meta,
            displayName: `token${req.body['display_name'] ? `-${String(req.body['display_name'])}` : ''}`,
            path: 'auth/token/create',
            ttl: toSeconds(req.body['ttl'], 'ttl'),
            maxTtl: toSeconds(req.body['explicit_max_ttl'], 'explicit_max_ttl'),
            numUses: Number(req.body['num_uses'] ?? 0) || 0,
          });
          return { auth };
        }
        break;
      default:
        throw new VaultError(404, [`no handler for route "auth/token/${rel}". route entry not found.`]);
    }
    throw new VaultError(405, 'unsupported operation');
  }

  function authOf(t: Token, ttl: number): AuthBlock {
    return {
      client_token: t.id,
      accessor: t.accessor,
      policies: t.policies,
      token_policies: t.policies,
      identity_policies: null,
      metadata: t.meta ?? {},
      lease_duration: ttl,
      renewable: true,
      entity_id: t.entityId,
      token_type: 'service',
      orphan: t.orphan,
      mfa_requirement: null,
      num_uses: t.numUses,
    };
  }

  // --- HTTP ------------------------------------------------------------------------------------
  function findMount(path: string): Mount | undefined {
    let best: Mount | undefined;
    for (const m of mounts.values()) if ((path + '/').startsWith(m.path) && (!best || m.path.length > best.path.length)) best = m;
    return best;
  }

  function send(res: ServerResponse, status: number, body: unknown): void {
    if (status === 204 || body === undefined) {
      res.writeHead(status === 200 ? 204 : status, { 'cache-control': 'no-store' });
      res.end();
      return;
    }
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  async function readBody(req: IncomingMessage): Promise<Record<string, unknown>> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of req) {
      size += (c as Buffer).length;
      if (size > 32 * 1024 * 1024) throw new VaultError(413, 'request body too large');
      chunks.push(c as Buffer);
    }
    const text = Buffer.concat(chunks).toString('utf8').trim();
    if (!text) return {};
    try {
      const v = JSON.parse(text) as unknown;
      if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
      if (v === null) return {};
    } catch {
      /* fall through */
    }
    throw badRequest('failed to parse JSON input: invalid character in request body');
  }

  function auditAuth(d: FileAuditDevice, t: Token | null): Record<string, unknown> {
    if (!t) return { token_type: 'default' };
    return {
      client_token: d.hash(t.id),
      accessor: d.hash(t.accessor),
      display_name: t.displayName,
      policies: t.policies,
      token_policies: t.policies,
      metadata: t.meta,
      entity_id: t.entityId,
      token_type: 'service',
      token_ttl: t.creationTtl,
      token_issue_time: new Date(t.creationTime * 1000).toISOString(),
    };
  }

  function auditRequest(d: FileAuditDevice, r: VaultRequest, mount: Mount | undefined): Record<string, unknown> {
    return {
      id: r.id,
      operation: r.operation,
      mount_point: mount?.path ?? (r.path.startsWith('auth/token/') ? 'auth/token/' : r.path.startsWith('sys/') ? 'sys/' : ''),
      mount_type: mount?.type ?? (r.path.startsWith('auth/token/') ? 'token' : r.path.startsWith('sys/') ? 'system' : ''),
      mount_accessor: mount?.accessor ?? '',
      namespace: { id: 'root' },
      path: r.path,
      data: Object.keys(r.body).length ? d.hashStructure(r.body) : undefined,
      remote_address: r.remoteAddress,
      remote_port: r.remotePort,
      client_token: r.token ? d.hash(r.token.id) : undefined,
      client_token_accessor: r.token ? d.hash(r.token.accessor) : undefined,
    };
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://vault.invalid');
    if (latency > 0) await sleep(latency);
    if (url.pathname === '/.well-known/oauth-protected-resource' && (req.method === 'GET' || req.method === 'HEAD')) {
      send(res, 200, { request_id: randomUUID(), lease_id: '', renewable: false, lease_duration: 0, data: agent.resourceMetadata(), wrap_info: null, warnings: null, auth: null });
      return;
    }
    if (!url.pathname.startsWith('/v1/')) {
      send(res, 404, { errors: [] });
      return;
    }
    let path: string;
    try {
      path = decodeURIComponent(url.pathname.slice(4));
    } catch {
      send(res, 400, { errors: ['invalid request path'] });
      return;
    }
    const method = (req.method ?? 'GET').toUpperCase();
    const requestId = randomUUID();
    let operation: Operation;
    if (method === 'GET' || method === 'HEAD') operation = url.searchParams.get('list') === 'true' ? 'list' : 'read';
    else if (method === 'LIST') operation = 'list';
    else if (method === 'POST' || method === 'PUT' || method === 'PATCH') operation = 'update';
    else if (method === 'DELETE') operation = 'delete';
    else {
      send(res, 405, { errors: ['unsupported operation'] });
      return;
    }
    const cleanPath = path.replace(/\/$/, '');
    const listPath = operation === 'list' ? `${cleanPath}/` : cleanPath;
    const unauthenticated = UNAUTHENTICATED.some((r) => r.test(cleanPath)) || isLoginPath(cleanPath) || AgentMode.unauthenticated(cleanPath);

    let vreq: VaultRequest | undefined;
    let mount: Mount | undefined;
    try {
      if (sealed && !/^sys\/(seal-status|health|unseal)$/.test(cleanPath)) throw new VaultError(503, 'Vault is sealed');
      if (fault?.kind === 'http' && faultMatches(fault, cleanPath, method)) {
        const f = fault;
        if (f.times !== undefined && --f.times <= 0) fault = null;
        throw new VaultError(f.status, f.errors ?? [f.status === 403 ? 'permission denied' : f.status === 503 ? 'Vault is sealed' : 'internal error']);
      }
      const body = method === 'GET' || method === 'DELETE' || method === 'HEAD' ? {} : await readBody(req);
      const header = req.headers['x-vault-token'];
      const bearer = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '')?.[1];
      const raw = (typeof header === 'string' ? header : undefined) ?? bearer;
      const token = raw ? (tokens.get(raw) ?? (await agent.authenticate(raw))) : null;
      if (token && !token.oauth && token.expiresAt !== null && token.expiresAt <= Date.now()) {
        void revokeToken(token).catch(() => {});
        throw permissionDenied();
      }
      mount = findMount(cleanPath);
      if (operation === 'update' && mount?.backend.exists && !mount.backend.exists(cleanPath.slice(mount.path.length))) operation = 'create';
      if (cleanPath.startsWith('auth/token/') && operation === 'create') operation = 'update';
      vreq = {
        id: requestId,
        method,
        operation,
        path: listPath,
        body,
        query: url.searchParams,
        token,
        remoteAddress: req.socket.remoteAddress ?? '',
        remotePort: req.socket.remotePort ?? 0,
      };
      for (const d of audits.values()) void d.write({ type: 'request', auth: auditAuth(d, token), request: auditRequest(d, vreq, mount) });

      if (!unauthenticated) {
        if (!token) throw permissionDenied();
        if (token.oauth) {
          agent.authorize(token, listPath, operation, body, SUDO_PATHS.some((r) => r.test(cleanPath)));
        } else if (!token.policies.includes('root')) {
          const caps = capabilitiesFor(policyRules(token), listPath);
          if (caps.has('deny') || !caps.has(operation)) throw permissionDenied();
          if (SUDO_PATHS.some((r) => r.test(cleanPath)) && !caps.has('sudo')) throw permissionDenied();
        }
      }

      let out: BackendResponse | null;
      if (cleanPath.startsWith('sys/') || cleanPath === 'sys') out = await sys(vreq, cleanPath.slice(4));
      else if (cleanPath.startsWith('auth/token/')) out = await tokenBackend(vreq, cleanPath.slice('auth/token/'.length));
      else if (cleanPath.startsWith('identity/') || cleanPath.startsWith('agent-registry/')) out = agent.handle(vreq, cleanPath);
      else if (mount) out = await mount.backend.handle(vreq, operation === 'list' ? listPath.slice(mount.path.length) : cleanPath.slice(mount.path.length));
      else throw new VaultError(404, [`no handler for route "${cleanPath}". route entry not found.`]);

      // A read that finds nothing answers 404 with no errors (vault/http/logical.go).
      if (out === null && operation === 'read') throw notFound();

      let status = out?.status ?? 200;
      let body2: unknown;
      if (out && out.raw !== undefined) {
        body2 = out.raw === null ? undefined : out.raw;
      } else if (out && (out.data !== undefined || out.auth || out.lease)) {
        body2 = {
          request_id: requestId,
          lease_id: out.lease?.id ?? '',
          renewable: out.lease?.renewable ?? false,
          lease_duration: out.lease?.duration ?? 0,
          data: out.data ?? null,
          wrap_info: null,
          warnings: out.warnings ?? null,
          auth: out.auth ?? null,
          mount_type: mount?.type ?? (cleanPath.startsWith('auth/token/') ? 'token' : cleanPath.startsWith('sys/') ? 'system' : ''),
        };
      } else {
        status = out?.status ?? 204;
      }
      // Vault answers only once the response is in every audit device.
      const done = vreq;
      await Promise.all([...audits.values()].map((d) =>
        d.write({
          type: 'response',
          auth: auditAuth(d, out?.auth ? (tokens.get(out.auth.client_token) ?? token) : token),
          request: auditRequest(d, done, mount),
          response: {
            mount_point: mount?.path,
            mount_type: mount?.type,
            mount_accessor: mount?.accessor,
            auth: out?.auth
              ? { ...out.auth, client_token: d.hash(out.auth.client_token), accessor: d.hash(out.auth.accessor) }
              : undefined,
            secret: out?.lease ? { lease_id: out.lease.id } : undefined,
            data: out?.data ? d.hashStructure(out.data) : undefined,
          },
        }),
      ));
      send(res, status, body2);
    } catch (e) {
      const err = e instanceof VaultError ? e : new VaultError(500, 'internal error');
      if (!(e instanceof VaultError)) log(`vault: internal error on ${method} ${cleanPath}`);
      const failed = vreq;
      if (failed) {
        await Promise.all([...audits.values()].map((d) =>
          d.write({
            type: 'response',
            error: err.errors.join('; '),
            auth: auditAuth(d, failed.token),
            request: auditRequest(d, failed, mount),
            response: { mount_point: mount?.path, mount_type: mount?.type },
          }),
        ));
      }
      send(res, err.status, { errors: err.errors });
    }
  }

  function isLoginPath(p: string): boolean {
    const m = /^auth\/(.+)\/login$/.exec(p);
    return !!m && mounts.get(`auth/${m[1]}/`)?.type !== undefined;
  }

  if (options.auditLogPath) audits.set('file/', new FileAuditDevice('file/', options.auditLogPath));

  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) send(res, 500, { errors: ['internal error'] });
    });
  });
  server.keepAliveTimeout = 1_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  addr = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  log(`vault: listening on ${addr}`);

  let stopped: Promise<void> | undefined;
  return {
    addr,
    rootToken,
    unsealKey,
    auditLogPath: options.auditLogPath,
    seal: () => {
      sealed = true;
    },
    unseal: () => {
      sealed = false;
    },
    setLatency: (ms) => {
      latency = Math.max(0, ms);
    },
    setFault: (f) => {
      fault = f ? { ...f } : null;
    },
    leases: () => leases.size,
    leaseIds: () => [...leases.keys()],
    auditHash: (input) => audits.get('file/')?.hash(input),
    stop: () =>
      (stopped ??= (async () => {
        stopping = true;
        fault = null;
        server.closeAllConnections();
        await new Promise<void>((r) => server.close(() => r()));
        // Every lease goes, so no database role outlives the lab.
        for (let attempt = 0; attempt < 3 && leases.size; attempt++) {
          for (const id of [...leases.keys()]) await revokeLease(id).catch(() => {});
          if (leases.size) await sleep(200);
        }
        for (const l of leases.values()) if (l.timer) clearTimeout(l.timer);
        for (const t of tokens.values()) if (t.timer) clearTimeout(t.timer);
        for (const m of mounts.values()) await m.backend.close?.();
        for (const d of audits.values()) await d.flush();
        log('vault: stopped');
      })()),
  };
}
