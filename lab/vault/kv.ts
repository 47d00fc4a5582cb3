/**
 * Vault's KV secrets engine, version 2 (`data/`, `metadata/`, `delete/`, `undelete/`, `destroy/`,
 * versions and check-and-set) and version 1 (plain paths). Source: api-docs/secret/kv/kv-v2.mdx, kv-v1.mdx.
 */
import { badRequest, notFound, VaultError } from './types.ts';
import type { Backend, BackendResponse, VaultRequest } from './types.ts';

interface Version {
  data: Record<string, unknown> | null;
  created_time: string;
  deletion_time: string;
  destroyed: boolean;
}

interface Secret {
  versions: Version[];
  custom_metadata: Record<string, string> | null;
  created_time: string;
  updated_time: string;
}

function versionMeta(v: Version, n: number): Record<string, unknown> {
  return { created_time: v.created_time, custom_metadata: null, deletion_time: v.deletion_time, destroyed: v.destroyed, version: n };
}

function listUnder(keys: Iterable<string>, prefix: string): string[] {
  const out = new Set<string>();
  for (const k of keys) {
    if (!k.startsWith(prefix)) continue;
    const rest = k.slice(prefix.length);
    const slash = rest.indexOf('/');
    out.add(slash < 0 ? rest : rest.slice(0, slash + 1));
  }
  return [...out].sort();
}

export class KvBackend implements Backend {
  readonly type = 'kv';
  readonly accessor: string;
  readonly version: 1 | 2;
  private readonly v1 = new Map<string, Record<string, unknown>>();
  private readonly v2 = new Map<string, Secret>();

  constructor(accessor: string, version: 1 | 2) {
    this.accessor = accessor;
    this.version = version;
  }

  exists(rel: string): boolean {
    if (this.version === 1) return this.v1.has(rel);
    const m = /^(data|metadata)\/(.+)$/.exec(rel);
    return m ? this.v2.has(m[2]!) : true;
  }

  async handle(req: VaultRequest, rel: string): Promise<BackendResponse | null> {
    return this.version === 1 ? this.handleV1(req, rel) : this.handleV2(req, rel);
  }

  private handleV1(req: VaultRequest, rel: string): BackendResponse | null {
    switch (req.operation) {
      case 'read': {
        const v = this.v1.get(rel);
        if (!v) throw notFound();
        return { data: { ...v } };
      }
      case 'list': {
        const keys = listUnder(this.v1.keys(), rel.endsWith('/') || rel === '' ? rel : `${rel}/`);
        if (!keys.length) throw notFound();
        return { data: { keys } };
      }
      case 'delete':
        this.v1.delete(rel);
        return null;
      default:
        this.v1.set(rel, { ...req.body });
        return null;
    }
  }

  private handleV2(req: VaultRequest, rel: string): BackendResponse | null {
    const m = /^(data|metadata|delete|undelete|destroy)\/(.*)$/.exec(rel);
    if (rel === 'config') return { data: { cas_required: false, delete_version_after: '0s', max_versions: 0 } };
    if (!m) throw new VaultError(404, [`no handler for route "${rel}". route entry not found.`]);
    const [, kind, path] = m as unknown as [string, string, string];
    const now = new Date().toISOString();
    const secret = this.v2.get(path);
    if (kind === 'data') {
      if (req.operation === 'read') {
        if (!secret) throw notFound();
        const q = req.query.get('version');
        const n = q && q !== '0' ? Number(q) : secret.versions.length;
        const v = secret.versions[n - 1];
        if (!v) throw notFound();
        if (v.deletion_time || v.destroyed) {
          return { status: 404, data: { data: null, metadata: versionMeta(v, n) } };
        }
        return { data: { data: v.data, metadata: versionMeta(v, n) } };
      }
      if (req.operation === 'delete') {
        const v = secret?.versions.at(-1);
        if (v && !v.deletion_time) v.deletion_time = now;
        return null;
      }
      if (req.operation === 'create' || req.operation === 'update') {
        const data = req.body['data'];
        if (!data || typeof data !== 'object' || Array.isArray(data)) throw badRequest('no data provided');
        const options = req.body['options'] as { cas?: unknown } | undefined;
        const current = secret?.versions.length ?? 0;
        if (options && options.cas !== undefined && Number(options.cas) !== current) {
          throw badRequest('check-and-set parameter did not match the current version');
        }
        const s: Secret = secret ?? { versions: [], custom_metadata: null, created_time: now, updated_time: now };
        s.versions.push({ data: { ...(data as Record<string, unknown>) }, created_time: now, deletion_time: '', destroyed: false });
        s.updated_time = now;
        this.v2.set(path, s);
        return { data: versionMeta(s.versions.at(-1)!, s.versions.length) };
      }
      throw new VaultError(405, 'unsupported operation');
    }
    if (kind === 'metadata') {
      if (req.operation === 'list') {
        const keys = listUnder(this.v2.keys(), path === '' || path.endsWith('/') ? path : `${path}/`);
        if (!keys.length) throw notFound();
        return { data: { keys } };
      }
      if (req.operation === 'read') {
        if (!secret) throw notFound();
        const versions: Record<string, unknown> = {};
        secret.versions.forEach((v, i) => {
          versions[String(i + 1)] = { created_time: v.created_time, deletion_time: v.deletion_time, destroyed: v.destroyed };
        });
        return {
          data: {
            cas_required: false,
            created_time: secret.created_time,
            current_version: secret.versions.length,
            custom_metadata: secret.custom_metadata,
            delete_version_after: '0s',
            max_versions: 0,
            oldest_version: 0,
            updated_time: secret.updated_time,
            versions,
          },
        };
      }
      if (req.operation === 'delete') {
        this.v2.delete(path);
        return null;
      }
      // Writing metadata creates the secret's metadata when it has none yet (kv-v2 "Create/Update Metadata").
      const meta = secret ?? { versions: [], custom_metadata: null, created_time: now, updated_time: now };
      this.v2.set(path, meta);
      const cm = req.body['custom_metadata'];
      if (cm && typeof cm === 'object') meta.custom_metadata = cm as Record<string, string>;
      return null;
    }
    if (req.operation !== 'update' && req.operation !== 'create') throw new VaultError(405, 'unsupported operation');
    const versions = Array.isArray(req.body['versions']) ? (req.body['versions'] as unknown[]).map(Number) : [];
    if (!secret) return null;
    for (const n of versions) {
      const v = secret.versions[n - 1];
      if (!v) continue;
      if (kind === 'delete') v.deletion_time ||= now;
      if (kind === 'undelete' && !v.destroyed) v.deletion_time = '';
      if (kind === 'destroy') {
        v.destroyed = true;
        v.data = null;
      }
    }
    return null;
  }
}
