/**
 * Vault Enterprise's Agent Registry (api-docs/secret/agent-registry, docs/ai/agent-registry): one
 * registration per identity entity, naming the ceiling policies that cap what the agent may do on
 * someone's behalf. Vault adds `default` and `default-ceiling` unless `no_default_ceiling_policy`;
 * `optional_authorization_details` lets the agent's JWTs omit RAR. An entity without a registration
 * cannot act with an OAuth JWT, directly or as the actor of an on-behalf-of call.
 */
import { randomUUID } from 'node:crypto';
import type { IdentityStore } from './identity.ts';
import { badRequest, notFound, toBool, toList, VaultError } from './types.ts';
import type { BackendResponse, VaultRequest } from './types.ts';

export interface Registration {
  id: string;
  display_name: string;
  entity_id: string;
  description: string;
  owner: string;
  ceiling_policies: string[];
  no_default_ceiling_policy: boolean;
  optional_authorization_details: boolean;
  creation_time: string;
  last_update_time: string;
}

export class AgentRegistry {
  private readonly records = new Map<string, Registration>();
  private readonly identity: IdentityStore;

  constructor(identity: IdentityStore) {
    this.identity = identity;
    identity.onDelete = (entityId) => {
      for (const r of [...this.records.values()]) if (r.entity_id === entityId) this.records.delete(r.id);
    };
  }

  forEntity(entityId: string): Registration | undefined {
    return [...this.records.values()].find((r) => r.entity_id === entityId);
  }

  /** `agent-registry/…`; `rel` is the part after `agent-registry/`. */
  handle(req: VaultRequest, rel: string): BackendResponse | null {
    const op = req.operation;
    const write = op === 'create' || op === 'update';
    if (rel === 'register' && write) {
      const r = this.write(undefined, req.body);
      return { data: { id: r.id, display_name: r.display_name } };
    }
    if (rel === 'registration/id' && op === 'list') {
      const all = [...this.records.values()];
      if (!all.length) throw notFound();
      return { data: { keys: all.map((r) => r.id).sort(), key_info: Object.fromEntries(all.map((r) => [r.id, { display_name: r.display_name, entity_id: r.entity_id }])) } };
    }
    if (rel === 'registration/display-name' && op === 'list') {
      const keys = [...this.records.values()].map((r) => r.display_name).sort();
      if (!keys.length) throw notFound();
      return { data: { keys } };
    }
    const m = /^registration\/(id|display-name|entity-id)\/([^/]+)$/.exec(rel);
    if (m) {
      const [, by, key] = m as unknown as [string, string, string];
      const r = [...this.records.values()].find((x) => (by === 'id' ? x.id : by === 'display-name' ? x.display_name : x.entity_id) === key);
      if (op === 'read') return r ? { data: { ...r, ceiling_policies: [...r.ceiling_policies] } } : null;
      if (op === 'delete') {
        if (r) this.records.delete(r.id);
        return null;
      }
      if (write && by === 'id') {
        if (!r) throw notFound();
        this.write(r, req.body);
        return null;
      }
    }
    throw new VaultError(404, [`no handler for route "agent-registry/${rel}". route entry not found.`]);
  }

  private write(prev: Registration | undefined, body: Record<string, unknown>): Registration {
    const has = (k: string): boolean => k in body && body[k] !== undefined && body[k] !== null;
    const displayName = has('display_name') ? String(body['display_name']) : (prev?.display_name ?? '');
    if (!displayName) throw badRequest('display_name is required');
    const entityId = has('entity_id') ? String(body['entity_id']) : (prev?.entity_id ?? '');
    if (!this.identity.entities.has(entityId)) throw badRequest(`entity ${entityId || '(none)'} does not exist`);
    const others = [...this.records.values()].filter((r) => r.id !== prev?.id);
    if (others.some((r) => r.display_name === displayName)) throw badRequest(`display_name ${displayName} is already registered`);
    if (others.some((r) => r.entity_id === entityId)) throw badRequest(`entity ${entityId} already has a registration`);
    const noDefault = has('no_default_ceiling_policy') ? toBool(body['no_default_ceiling_policy'], false) : (prev?.no_default_ceiling_policy ?? false);
    const asked = has('ceiling_policies') ? toList(body['ceiling_policies']) : (prev?.ceiling_policies.filter((p) => p !== 'default' && p !== 'default-ceiling') ?? []);
    if (asked.includes('root')) throw badRequest('ceiling_policies cannot contain root');
    const ceiling = [...new Set([...asked, ...(noDefault ? [] : ['default', 'default-ceiling'])])];
    const now = new Date().toISOString();
    const r: Registration = {
      id: prev?.id ?? randomUUID(),
      display_name: displayName,
      entity_id: entityId,
      description: has('description') ? String(body['description']) : (prev?.description ?? ''),
      owner: has('owner') ? String(body['owner']) : (prev?.owner ?? ''),
      ceiling_policies: ceiling,
      no_default_ceiling_policy: noDefault,
      optional_authorization_details: has('optional_authorization_details')
        ? toBool(body['optional_authorization_details'], false)
        : (prev?.optional_authorization_details ?? false),
      creation_time: prev?.creation_time ?? now,
      last_update_time: now,
    };
    this.records.set(r.id, r);
    return r;
  }
}
