/**
 * Vault Enterprise's native agent mode (docs/ai, Vault 2.0.3+): an IdP-issued OAuth JWT presented
 * directly in `X-Vault-Token`, validated on every request and never stored. The JWT's `iss` picks a
 * resource server profile; its subject (and, on an on-behalf-of call, the actor in `act.sub`) resolves
 * to identity entities through aliases bound by issuer + external id; the acting entity must be in the
 * Agent Registry. Access is the subject's ACL, capped on a delegated call by the actor's ceiling
 * policies (the actor's own ACL plays no part), narrowed by the JWT's `vault:path_access` entries.
 * Also the unauthenticated discovery endpoints: RAR type catalogue and RFC 9728 protected resource
 * metadata.
 */
import { capabilitiesFor, DEFAULT_POLICY, parsePolicy } from './acl.ts';
import type { PathRule } from './acl.ts';
import { AgentRegistry } from './agent-registry.ts';
import type { Registration } from './agent-registry.ts';
import { IdentityStore } from './identity.ts';
import type { Entity } from './identity.ts';
import { dottedClaim, OAuthProfiles, refuseJwt } from './oauth-profiles.ts';
import { matchRar, PATH_ACCESS, pathAccessEntries, RAR_NO_MATCH } from './rar.ts';
import type { PathAccess } from './rar.ts';
import { permissionDenied, toList, VaultError } from './types.ts';
import type { BackendResponse, Token, VaultRequest } from './types.ts';

/** What one request's JWT resolved to; lives as long as that request. */
export interface OAuthCall {
  subject: Entity;
  actor: Entity | undefined;
  /** The acting entity's registration: the actor's on a delegated call, else the subject's. */
  registration: Registration;
  /** The `vault:path_access` entries, or null when RAR is optional and the JWT carries none. */
  entries: PathAccess[] | null;
  noDefaultPolicy: boolean;
}

const TYPES_PATH = '/v1/sys/oauth-resource-server/authorization-details-types';
const SCHEMA_PATH = `${TYPES_PATH}/${PATH_ACCESS}/schema`;
/** The default listener's cap on the token header (Vault's http/ token-header-size handling). */
const MAX_TOKEN_HEADER = 8192;

const PATH_ACCESS_SCHEMA = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  type: 'object',
  required: ['type', 'path', 'capabilities'],
  properties: {
    type: { const: PATH_ACCESS },
    path: { type: 'string' },
    capabilities: { type: 'array', items: { enum: ['create', 'read', 'update', 'patch', 'delete', 'list', 'sudo'] } },
    allowed_parameters: { type: 'object', additionalProperties: { type: 'array' } },
    denied_parameters: { type: 'object', additionalProperties: { type: 'array' } },
    required_parameters: { type: 'array', items: { type: 'string' } },
  },
};

export class AgentMode {
  readonly profiles = new OAuthProfiles();
  readonly identity = new IdentityStore(this.profiles);
  readonly registry = new AgentRegistry(this.identity);
  private readonly rulesOf: (policy: string) => PathRule[];
  private readonly address: () => string;

  constructor(rulesOf: (policy: string) => PathRule[], address: () => string) {
    this.rulesOf = (p) => (p === 'default' ? (rulesOf(p).length ? rulesOf(p) : parsePolicy(DEFAULT_POLICY)) : rulesOf(p));
    this.address = address;
  }

  static unauthenticated(path: string): boolean {
    return path.startsWith('sys/oauth-resource-server/');
  }

  /**
   * The entity behind a JWT in the token header, as a token for this one request; null when the
   * header does not hold a JWT (Vault's own tokens are not three base64url parts).
   */
  async authenticate(raw: string): Promise<Token | null> {
    if (raw.length > MAX_TOKEN_HEADER) throw new VaultError(400, 'authentication token exceeds the maximum header size of 8192 bytes');
    if (!/^[\w-]+\.[\w-]+\.[\w-]+$/.test(raw)) return null;
    const { profile, claims } = await this.profiles.verify(raw);
    const subjectId = dottedClaim(claims, profile.user_claim);
    if (typeof subjectId !== 'string' || !subjectId) throw refuseJwt(`no ${profile.user_claim} claim`);
    const subject = this.identity.resolve(profile.issuer_id, subjectId);
    if (!subject) throw refuseJwt('no entity alias found for the subject');
    const act = claims[profile.actor_claim.split('.')[0]!];
    let actor: Entity | undefined;
    if (act !== undefined) {
      const actorId = dottedClaim(claims, profile.actor_claim);
      if (typeof actorId !== 'string' || !actorId) throw refuseJwt(`no ${profile.actor_claim} claim`);
      actor = this.identity.resolve(profile.issuer_id, actorId);
      if (!actor) throw refuseJwt('no entity alias found for the actor');
    }
    const acting = actor ?? subject;
    const registration = this.registry.forEntity(acting.id);
    if (!registration) throw refuseJwt(`${actor ? 'the actor' : 'the subject'} has no Agent Registry record`);
    const details = claims['authorization_details'];
    const optional = profile.optional_authorization_details || registration.optional_authorization_details;
    if (details === undefined && !optional) throw refuseJwt('the authorization_details claim is required');
    const uid = claims[profile.unique_id_claim] ?? claims['uti'];
    const meta: Record<string, string> = {};
    if (actor) Object.assign(meta, { actor_entity_id: actor.id, actor_entity_name: actor.name });
    if (typeof uid === 'string') meta['jwt_unique_id'] = uid;
    meta['jwt_issuer'] = String(claims['iss']);
    if (typeof claims['txn'] === 'string') meta['jwt_transaction_claim'] = claims['txn'];
    meta['jwt_audience_claim'] = JSON.stringify(toList(claims['aud']));
    if (details !== undefined) meta['jwt_authorization_details'] = JSON.stringify(details);
    const exp = claims['exp'] as number;
    const iat = typeof claims['iat'] === 'number' ? claims['iat'] : Math.floor(Date.now() / 1000);
    const policies = [...new Set([...subject.policies, ...(profile.no_default_policy ? [] : ['default'])])].sort();
    return {
      id: raw,
      accessor: '',
      policies,
      meta,
      displayName: `JWT Token with Unique Identifier: ${typeof uid === 'string' ? uid : ''}`,
      path: 'auth/oauth-resource-server',
      entityId: subject.id,
      creationTime: iat,
      creationTtl: Math.max(0, exp - iat),
      expiresAt: exp * 1000,
      numUses: 0,
      orphan: true,
      leases: new Set(),
      oauth: { subject, actor, registration, entries: details === undefined ? null : pathAccessEntries(details), noDefaultPolicy: profile.no_default_policy },
    };
  }

  /** ACL of the subject ∩ (on a delegated call) the actor's ceiling ∩ the RAR; throws when refused. */
  authorize(token: Token, path: string, operation: string, body: Record<string, unknown>, sudo: boolean): void {
    const call = token.oauth!;
    const allows = (policies: string[]): boolean => {
      const caps = capabilitiesFor(policies.map(this.rulesOf), path);
      return !caps.has('deny') && caps.has(operation) && (!sudo || caps.has('sudo'));
    };
    if (!allows(token.policies)) throw permissionDenied();
    if (call.actor && !allows(call.registration.ceiling_policies)) throw permissionDenied();
    if (call.entries === null) return;
    const rar = matchRar(call.entries, path.replace(/\/$/, ''), operation, body, call.subject);
    if (!rar.ok) throw new VaultError(403, [RAR_NO_MATCH, 'permission denied', rar.reason]);
  }

  /** Routes under `sys/` this mode owns; undefined for the others. */
  sys(req: VaultRequest, rel: string): BackendResponse | null | undefined {
    if (rel === 'config/oauth-resource-server' || rel.startsWith('config/oauth-resource-server/')) {
      return this.profiles.handle(req, rel.slice('config/oauth-resource-server'.length));
    }
    if (rel === 'activation-flags' && req.operation === 'read') return { data: { activated: ['oauth-resource-server'], unactivated: [] } };
    if (rel === 'oauth-resource-server/protected-resource-metadata' && req.operation === 'read') return { data: this.resourceMetadata() };
    const t = /^oauth-resource-server\/authorization-details-types(?:\/([^/]+)(\/schema)?)?$/.exec(rel);
    if (!t || (req.operation !== 'read' && req.operation !== 'list')) return undefined;
    const [, type, schema] = t;
    if (!type) {
      if (req.operation === 'list') return { data: { keys: [PATH_ACCESS] } };
      return {
        data: {
          api_version: 'v1',
          default_unknown_type_behavior: 'deny',
          types: [{ type: PATH_ACCESS, description: 'Access to Vault API paths with capabilities and parameter constraints', schema_path: SCHEMA_PATH }],
        },
      };
    }
    if (type !== PATH_ACCESS) throw new VaultError(404, 'type not found');
    if (schema) return { data: { type: PATH_ACCESS, json_schema_draft: '2020-12', schema: PATH_ACCESS_SCHEMA } };
    return {
      data: {
        type: PATH_ACCESS,
        description: 'Access to Vault API paths with capabilities and parameter constraints',
        required_fields: ['type', 'path', 'capabilities'],
        optional_fields: ['allowed_parameters', 'denied_parameters', 'required_parameters'],
        schema_path: SCHEMA_PATH,
      },
    };
  }

  /** RFC 9728 metadata: the same document at the sys path and at `/.well-known/oauth-protected-resource`. */
  resourceMetadata(): Record<string, unknown> {
    return {
      resource: this.address(),
      authorization_servers: this.profiles.all().filter((p) => p.enabled).map((p) => p.issuer_id),
      authorization_details_types_supported: [PATH_ACCESS],
      bearer_methods_supported: ['header'],
      rar_types_metadata_endpoint: TYPES_PATH,
    };
  }

  /** `identity/…` and `agent-registry/…`. */
  handle(req: VaultRequest, path: string): BackendResponse | null {
    if (path.startsWith('identity/')) return this.identity.handle(req, path.slice('identity/'.length));
    return this.registry.handle(req, path.slice('agent-registry/'.length));
  }
}
