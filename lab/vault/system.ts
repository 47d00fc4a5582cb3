/**
 * The system backend, as Vault's (vault/logical_system.go): seal and health, the mount table of
 * secrets engines and auth methods, ACL policies, leases (through the expiration manager), audit
 * devices and capabilities. Vault Enterprise's agent endpoints are answered by agent-auth.ts first.
 */
import { capabilitiesFor, DEFAULT_POLICY, parsePolicy, PolicyParseError, type PathRule } from './acl.ts';
import type { AgentMode } from './agent-auth.ts';
import { FileAuditDevice } from './audit.ts';
import { ExpirationManager } from './expiration.ts';
import { MountTable, normalizeMountPath, VERSION } from './mounts.ts';
import { badRequest, notFound, toBool, toList, toSeconds, VaultError } from './types.ts';
import type { BackendResponse, Token, VaultRequest } from './types.ts';

const now = (): number => Math.floor(Date.now() / 1000);

export class SystemBackend {
  sealed = false;
  readonly #unsealKey: string;
  readonly #mounts: MountTable;
  readonly #expiration: ExpirationManager;
  readonly #agent: AgentMode;
  readonly #policies = new Map<string, { text: string; rules: PathRule[] }>([
    ['default', { text: DEFAULT_POLICY, rules: parsePolicy(DEFAULT_POLICY) }],
  ]);
  readonly #audits = new Map<string, FileAuditDevice>();

  constructor(deps: {
    unsealKey: string;
    mounts: MountTable;
    expiration: ExpirationManager;
    agent: AgentMode;
  }) {
    this.#unsealKey = deps.unsealKey;
    this.#mounts = deps.mounts;
    this.#expiration = deps.expiration;
    this.#agent = deps.agent;
  }

  /** The audit devices enabled, by path: every request and response is written to each. */
  get audits(): ReadonlyMap<string, FileAuditDevice> {
    return this.#audits;
  }

  enableFileAudit(path: string, filePath: string): void {
    this.#audits.set(path, new FileAuditDevice(path, filePath));
  }

  rules(policy: string): PathRule[] {
    return this.#policies.get(policy)?.rules ?? [];
  }

  rulesOf(t: Token): PathRule[][] {
    return t.policies.map((p) => this.rules(p));
  }

  sealStatus(): Record<string, unknown> {
    return {
      type: 'shamir',
      initialized: true,
      sealed: this.sealed,
      t: 1,
      n: 1,
      progress: 0,
      nonce: '',
      version: VERSION,
      build_date: '2026-01-01T00:00:00Z',
      migration: false,
      cluster_name: this.sealed ? undefined : 'countersign-lab',
      recovery_seal: false,
      storage_type: 'inmem',
    };
  }

  async handle(req: VaultRequest, rel: string): Promise<BackendResponse | null> {
    const op = req.operation;
    const write = op === 'update' || op === 'create';
    const owned = this.#agent.sys(req, rel);
    if (owned !== undefined) return owned;
    if (rel === 'seal-status') return { raw: this.sealStatus() };
    if (rel === 'health') {
      return {
        status: this.sealed ? 503 : 200,
        raw: {
          initialized: true,
          sealed: this.sealed,
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
      this.sealed = true;
      return null;
    }
    if (rel === 'unseal' && write) {
      if (req.body['key'] === this.#unsealKey) this.sealed = false;
      else if (req.body['reset'] !== true) throw badRequest('invalid key');
      return { raw: this.sealStatus() };
    }
    if (rel === 'auth' && op === 'read') {
      const data: Record<string, unknown> = {
        'token/': {
          accessor: 'auth_token_lab',
          type: 'token',
          description: 'token based credentials',
          options: null,
          config: {},
          local: false,
        },
      };
      for (const m of this.#mounts.values())
        if (m.path.startsWith('auth/')) data[m.path.slice(5)] = MountTable.info(m);
      return { data, raw: undefined };
    }
    let m = /^auth\/(.+)$/.exec(rel);
    if (m) {
      const path = normalizeMountPath(m[1]!);
      if (write) {
        if (this.#mounts.inUse(`auth/${path}`)) throw badRequest(`path is already in use at auth/${path}`);
        this.#mounts.mountAuth(path, String(req.body['type'] ?? ''), String(req.body['description'] ?? ''));
        return null;
      }
      if (op === 'delete') {
        await this.#mounts.unmount(`auth/${path}`, false);
        return null;
      }
      if (op === 'read') {
        const existing = this.#mounts.get(`auth/${path}`);
        if (!existing) throw badRequest(`No auth engine at auth/${path}`);
        return { data: MountTable.info(existing) };
      }
    }
    if (rel === 'mounts' && op === 'read') {
      const data: Record<string, unknown> = {
        'sys/': {
          type: 'system',
          description: 'system endpoints used for control, policy and debugging',
          options: null,
          config: {},
          local: false,
        },
        'cubbyhole/': {
          type: 'cubbyhole',
          description: 'per-token private secret storage',
          options: null,
          config: {},
          local: true,
        },
      };
      for (const mt of this.#mounts.values())
        if (!mt.path.startsWith('auth/')) data[mt.path] = MountTable.info(mt);
      return { data };
    }
    m = /^mounts\/(.+)$/.exec(rel);
    if (m) {
      const path = normalizeMountPath(m[1]!);
      if (write) {
        if (this.#mounts.inUse(path)) throw badRequest(`path is already in use at ${path}`);
        const rawOpts = req.body['options'];
        const opts: Record<string, string> | null =
          rawOpts && typeof rawOpts === 'object'
            ? Object.fromEntries(Object.entries(rawOpts).map(([k, v]) => [k, String(v)]))
            : null;
        this.#mounts.mountSecret(
          path,
          String(req.body['type'] ?? ''),
          opts,
          String(req.body['description'] ?? ''),
        );
        return null;
      }
      if (op === 'delete') {
        await this.#mounts.unmount(path, true);
        return null;
      }
      if (op === 'read') {
        const existing = this.#mounts.get(path);
        if (!existing) throw badRequest(`No secret engine mount at ${path}`);
        return { data: MountTable.info(existing) };
      }
    }
    if (
      (rel === 'policies/acl' || rel === 'policies/acl/' || rel === 'policy') &&
      (op === 'list' || op === 'read')
    ) {
      const keys = [...this.#policies.keys(), 'root'].sort();
      return { data: rel === 'policy' ? { keys, policies: keys } : { keys } };
    }
    m = /^(?:policies\/acl|policy)\/([^/]+)$/.exec(rel);
    if (m) {
      const name = m[1]!.toLowerCase();
      if (op === 'read') {
        if (name === 'root') return { data: { name, policy: '', rules: '' } };
        const p = this.#policies.get(name);
        if (!p) return null;
        return { data: { name, policy: p.text, rules: p.text } };
      }
      if (write) {
        if (name === 'root') throw badRequest('cannot update "root" policy');
        const text =
          typeof req.body['policy'] === 'string'
            ? req.body['policy']
            : typeof req.body['rules'] === 'string'
              ? req.body['rules']
              : '';
        if (!text) throw badRequest("'policy' parameter not supplied or empty");
        try {
          this.#policies.set(name, { text, rules: parsePolicy(text) });
        } catch (e) {
          if (e instanceof PolicyParseError) throw badRequest(`failed to parse policy: ${e.message}`);
          throw e;
        }
        return null;
      }
      if (op === 'delete') {
        if (name === 'root' || name === 'default') throw badRequest(`cannot delete "${name}" policy`);
        this.#policies.delete(name);
        return null;
      }
    }
    m = /^leases\/revoke(?:\/(.+))?$/.exec(rel);
    if (m && write) {
      const id = m[1] ?? (typeof req.body['lease_id'] === 'string' ? req.body['lease_id'] : '');
      if (!id) throw badRequest('a lease ID must be specified');
      const sync = toBool(req.body['sync'], true);
      if (!this.#expiration.get(id)) throw badRequest('invalid lease');
      if (!sync) {
        void this.#expiration.revoke(id).catch(() => this.#expiration.retrySoon(id));
        return { status: 202, raw: null };
      }
      try {
        await this.#expiration.revoke(id);
      } catch {
        this.#expiration.retrySoon(id);
        throw new VaultError(500, [`1 error occurred:\n\t* failed to revoke lease: lease_id=${id}\n\n`]);
      }
      return null;
    }
    m = /^leases\/revoke-prefix\/(.+)$/.exec(rel);
    if (m && write) {
      await this.#expiration.revokePrefix(m[1]!);
      return null;
    }
    if (rel === 'leases/lookup' && write) {
      const id = String(req.body['lease_id'] ?? '');
      const l = this.#expiration.get(id);
      if (!l) throw badRequest('invalid lease');
      return { data: ExpirationManager.view(l) };
    }
    m = /^leases\/lookup\/(.*)$/.exec(rel);
    if (m && op === 'list') {
      const keys = this.#expiration.keysUnder(m[1]!);
      if (!keys.length) throw notFound();
      return { data: { keys } };
    }
    if (rel === 'leases/renew' && write) {
      const id = String(req.body['lease_id'] ?? '');
      const l = this.#expiration.get(id);
      if (!l) throw badRequest('lease not found');
      if (req.token && req.token.policies[0] !== 'root' && l.tokenId !== req.token.id)
        throw badRequest('lease not found');
      const inc = toSeconds(req.body['increment'], 'increment') || l.ttl;
      this.#expiration.renew(l, inc);
      return { lease: { id: l.id, duration: inc, renewable: true }, data: {} };
    }
    if (rel === 'audit' && op === 'read') {
      const data: Record<string, unknown> = {};
      for (const d of this.#audits.values())
        data[d.path] = {
          type: 'file',
          path: d.path,
          description: '',
          options: { file_path: d.filePath },
          local: false,
        };
      return { data };
    }
    m = /^audit\/(.+)$/.exec(rel);
    if (m) {
      const path = normalizeMountPath(m[1]!);
      if (write) {
        if (req.body['type'] !== 'file')
          throw badRequest(`unknown backend type: "${String(req.body['type'])}"`);
        const o = (req.body['options'] ?? {}) as Record<string, unknown>;
        const fp =
          typeof o['file_path'] === 'string'
            ? o['file_path']
            : typeof o['path'] === 'string'
              ? o['path']
              : '';
        if (!fp) throw badRequest('file_path is required');
        if (this.#audits.has(path)) throw badRequest(`path already in use`);
        this.#audits.set(path, new FileAuditDevice(path, fp));
        return null;
      }
      if (op === 'delete') {
        await this.#audits.get(path)?.flush();
        this.#audits.delete(path);
        return null;
      }
    }
    m = /^audit-hash\/(.+)$/.exec(rel);
    if (m && write) {
      const d = this.#audits.get(normalizeMountPath(m[1]!));
      if (!d) throw badRequest('unknown audit backend');
      const hash = d.hash(String(req.body['input'] ?? ''));
      return { data: { hash } };
    }
    if (rel === 'capabilities-self' && write) {
      const paths = toList(req.body['paths'] ?? req.body['path']);
      const data: Record<string, unknown> = {};
      const all: string[] = [];
      for (const p of paths) {
        const caps = req.token?.policies.includes('root')
          ? ['root']
          : [...capabilitiesFor(this.rulesOf(req.token!), p)].sort();
        data[p] = caps.length ? caps : ['deny'];
        all.push(...(caps.length ? caps : ['deny']));
      }
      data['capabilities'] = [...new Set(all)].sort();
      return { data };
    }
    throw new VaultError(404, [`no handler for route "sys/${rel}". route entry not found.`]);
  }
}
