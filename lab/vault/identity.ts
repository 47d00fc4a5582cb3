/**
 * Vault's identity store, as far as OAuth JWTs need it (api-docs/secret/identity/entity and
 * entity-alias): entities with policies, and aliases that bind an external subject to an entity by the
 * issuer of an OAuth resource server profile plus `external_id` (the subject's `user_claim` value, or
 * an actor's `act.sub`). An alias given `issuer` gets the profile's mount accessor; `issuer` +
 * `external_id` is unique.
 */
import { randomUUID } from 'node:crypto';
import { accessorOf, normalizeIssuer } from './oauth-profiles.ts';
import type { OAuthProfiles } from './oauth-profiles.ts';
import { badRequest, notFound, toList, VaultError } from './types.ts';
import type { BackendResponse, VaultRequest } from './types.ts';

export interface Entity {
  id: string;
  name: string;
  policies: string[];
  metadata: Record<string, string>;
  disabled: boolean;
  creation_time: string;
}

export interface Alias {
  id: string;
  name: string;
  canonical_id: string;
  mount_accessor: string;
  issuer: string;
  external_id: string;
  creation_time: string;
}

const stringMap = (v: unknown): Record<string, string> =>
  v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, String(x)])) : {};

export class IdentityStore {
  readonly entities = new Map<string, Entity>();
  private readonly aliases = new Map<string, Alias>();
  private readonly profiles: OAuthProfiles;
  /** Called before an entity goes, so what refers to it (a registration) goes too. */
  onDelete: (entityId: string) => void = () => {};

  constructor(profiles: OAuthProfiles) {
    this.profiles = profiles;
  }

  /** The entity an external subject of this issuer is bound to, if any. */
  resolve(issuer: string, externalId: string): Entity | undefined {
    const iss = normalizeIssuer(issuer);
    const a = [...this.aliases.values()].find((x) => x.issuer === iss && x.external_id === externalId);
    const e = a ? this.entities.get(a.canonical_id) : undefined;
    return e && !e.disabled ? e : undefined;
  }

  /** `identity/…`; `rel` is the part after `identity/`. */
  handle(req: VaultRequest, rel: string): BackendResponse | null {
    const op = req.operation;
    const write = op === 'create' || op === 'update';
    if (rel === 'entity' && write) return this.writeEntity(req.body);
    if (rel === 'entity/id' && op === 'list') return this.list([...this.entities.keys()]);
    if (rel === 'entity/name' && op === 'list') return this.list([...this.entities.values()].map((e) => e.name));
    let m = /^entity\/(id|name)\/([^/]+)$/.exec(rel);
    if (m) {
      const e = m[1] === 'id' ? this.entities.get(m[2]!) : [...this.entities.values()].find((x) => x.name === m![2]);
      if (op === 'read') return e ? { data: this.entityView(e) } : null;
      if (op === 'delete') {
        if (e) {
          this.onDelete(e.id);
          for (const a of [...this.aliases.values()]) if (a.canonical_id === e.id) this.aliases.delete(a.id);
          this.entities.delete(e.id);
        }
        return null;
      }
      if (write) return this.writeEntity({ ...req.body, ...(m[1] === 'id' ? { id: m[2] } : { name: m[2] }) });
    }
    if (rel === 'entity-alias' && write) return this.writeAlias(req.body);
    if (rel === 'entity-alias/id' && op === 'list') return this.list([...this.aliases.keys()]);
    m = /^entity-alias\/id\/([^/]+)$/.exec(rel);
    if (m) {
      const a = this.aliases.get(m[1]!);
      if (op === 'read') return a ? { data: { ...a, mount_type: 'oauth-resource-server', mount_path: '' } } : null;
      if (op === 'delete') {
        this.aliases.delete(m[1]!);
        return null;
      }
    }
    throw new VaultError(404, [`no handler for route "identity/${rel}". route entry not found.`]);
  }

  private list(keys: string[]): BackendResponse {
    if (!keys.length) throw notFound();
    return { data: { keys: keys.sort() } };
  }

  private entityView(e: Entity): Record<string, unknown> {
    const aliases = [...this.aliases.values()].filter((a) => a.canonical_id === e.id);
    return { ...e, aliases, direct_group_ids: [], group_ids: [], namespace_id: 'root' };
  }

  private writeEntity(body: Record<string, unknown>): BackendResponse {
    const id = typeof body['id'] === 'string' ? body['id'] : '';
    const name = typeof body['name'] === 'string' ? body['name'] : '';
    const existing = (id && this.entities.get(id)) || (name ? [...this.entities.values()].find((e) => e.name === name) : undefined);
    const e: Entity = existing ?? { id: randomUUID(), name: name || `entity_${randomUUID().slice(0, 8)}`, policies: [], metadata: {}, disabled: false, creation_time: new Date().toISOString() };
    if (name) e.name = name;
    if ('policies' in body) e.policies = toList(body['policies']);
    if ('metadata' in body) e.metadata = stringMap(body['metadata']);
    if ('disabled' in body) e.disabled = body['disabled'] === true || body['disabled'] === 'true';
    this.entities.set(e.id, e);
    return { data: { id: e.id, name: e.name, aliases: null } };
  }

  private writeAlias(body: Record<string, unknown>): BackendResponse {
    const canonical = String(body['canonical_id'] ?? '');
    if (!this.entities.has(canonical)) throw badRequest('entity not found from canonical_id');
    const name = String(body['name'] ?? '');
    if (!name) throw badRequest('missing alias name');
    let accessor = typeof body['mount_accessor'] === 'string' ? body['mount_accessor'] : '';
    const issuer = typeof body['issuer'] === 'string' ? normalizeIssuer(body['issuer']) : '';
    const externalId = typeof body['external_id'] === 'string' ? body['external_id'] : '';
    if (issuer) {
      const profile = this.profiles.byIssuer(issuer);
      if (!profile) throw badRequest(`no OAuth resource server profile has issuer_id ${issuer}`);
      if (!externalId) throw badRequest('external_id is required with issuer');
      accessor = accessorOf(profile);
      const taken = [...this.aliases.values()].find((a) => a.issuer === issuer && a.external_id === externalId);
      if (taken) throw badRequest(`an alias with issuer ${issuer} and external_id ${externalId} already exists`);
    }
    if (!accessor) throw badRequest('missing mount_accessor or issuer');
    if ([...this.aliases.values()].some((a) => a.canonical_id === canonical && a.mount_accessor === accessor)) {
      throw badRequest('alias already exists for requested entity and mount accessor');
    }
    const a: Alias = { id: randomUUID(), name, canonical_id: canonical, mount_accessor: accessor, issuer, external_id: externalId, creation_time: new Date().toISOString() };
    this.aliases.set(a.id, a);
    return { data: { id: a.id, canonical_id: canonical } };
  }
}
