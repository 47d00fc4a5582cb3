/**
 * Configures a Vault (the stand-in, or a real Vault/OpenBao) the way the lab needs it, through Vault's
 * own HTTP API as an administrator would: JWT auth at `jwt` trusting the IdP's JWKS, one role and one
 * policy per credential the IdP can name in the OBO's `vault_role` claim, the PostgreSQL database
 * engine at `database` with matching database roles, and KV v2 at `secret` holding the API-key
 * upstream's key. docs/vault.md lists the same steps as `vault` CLI commands.
 */

export const VAULT_AUDIENCE = 'countersign-vault';
export const JWT_MOUNT = 'jwt';
export const DATABASE_MOUNT = 'database';
export const DATABASE_CONNECTION = 'clinic';
export const KV_MOUNT = 'secret';
export const API_KEY_PATH = 'upstreams/apikey-demo';

/** Each jwt role, its policy and (for database roles) the group role its per-call roles join. */
export const LAB_VAULT_ROLES = {
  'clinic-read': { group: 'clinic_reader' },
  'clinic-write': { group: 'clinic_writer' },
  'clinic-sensitive': { group: 'clinic_sensitive' },
  'upstream-apikey': { group: null },
} as const;
export type LabVaultRole = keyof typeof LAB_VAULT_ROLES;

/** Per-call credentials live 60 s; the OBO that buys them lives 60 s too, with little clock leeway. */
export const PER_CALL_TTL = 60;
export const CLOCK_SKEW_LEEWAY = 5;

export const creationStatement = (group: string): string =>
  `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' IN ROLE ${group};`;

/**
 * Ends the role's sessions, drops what it owns, then the role. One dollar-quoted statement, so it is
 * idempotent (a role already gone is no failure) and runs whole. The management role makes itself a
 * member first, which PostgreSQL requires for DROP OWNED.
 */
export const REVOCATION_STATEMENT = `DO $$ BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{{name}}') THEN
    PERFORM pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{{name}}';
    EXECUTE format('GRANT %I TO CURRENT_USER', '{{name}}');
    EXECUTE format('DROP OWNED BY %I', '{{name}}');
    EXECUTE format('DROP ROLE %I', '{{name}}');
  END IF;
END $$;`;

export function policyFor(role: LabVaultRole): string {
  if (role === 'upstream-apikey') {
    return `path "${KV_MOUNT}/data/${API_KEY_PATH}" {\n  capabilities = ["read"]\n}\n`;
  }
  return `path "${DATABASE_MOUNT}/creds/${role}" {\n  capabilities = ["read"]\n}\n`;
}

export interface LabVaultConfig {
  addr: string;
  token: string;
  issuer: string;
  /** The IdP's JWKS (keys rotate: Vault re-fetches on an unknown `kid`). */
  jwksUrl: string;
  postgres: { host: string; port: number; database: string; username: string; password: string };
  /** Lifetime of per-call Vault tokens and database roles (default PER_CALL_TTL); fault labs use less so a leak shows sooner. */
  ttl?: number;
  /** The key the API-key upstream expects, stored at secret/data/upstreams/apikey-demo. */
  apiKey?: string;
  /** Also sets up Vault Enterprise's native agent mode for this client and these users. */
  agent?: LabAgentMode;
  /**
   * What each jwt role binds on and maps, for the OBOs the IdP issues (the IdP's vendor profile,
   * lab/idp/vendor-profiles.ts); by default the lab's own: `vault_role`, with `jti` and `client_id` mapped.
   */
  binding?: (vaultRole: string) => { bound_claims: Record<string, unknown>; claim_mappings: Record<string, string> };
}

export const AGENT_PROFILE = 'countersign-idp';
export const AGENT_CEILING_POLICY = 'countersign-agent-ceiling';
export const LEASE_REVOKE_POLICY = 'per-call-lease-revoke';
export const AGENT_DISPLAY_NAME = 'countersign';

export interface LabAgentMode {
  /** The OAuth client the IdP names in the OBO's `act.sub`: the agent's identity. */
  clientId: string;
  /** Each user's `sub`, a name for their entity, and the vault roles their rights name. */
  users: Array<{ sub: string; name: string; vaultRoles: string[] }>;
}

async function call(cfg: LabVaultConfig, method: string, path: string, body?: unknown): Promise<unknown> {
  const res = await fetch(`${cfg.addr}/v1/${path}`, {
    method,
    headers: { 'x-vault-token': cfg.token, 'content-type': 'application/json', 'x-vault-request': 'true' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (res.status !== 200 && res.status !== 204) {
    let errors = '';
    try {
      errors = ((JSON.parse(text) as { errors?: string[] }).errors ?? []).join('; ');
    } catch {
      /* not JSON */
    }
    throw new Error(`Vault ${method} ${path} answered ${res.status}${errors ? `: ${errors}` : ''}`);
  }
  return text ? JSON.parse(text) : null;
}

/**
 * Native agent mode (Vault Enterprise 2.0.3+): a resource server profile trusting the IdP's JWKS for
 * OBOs with Vault's audience; per user an entity whose policies are their roles' (plus revoking a
 * lease), bound to their `sub`; the client as an entity bound to its id (the OBO's `act.sub`),
 * registered with a ceiling of what any per-call credential needs. docs/vault.md has the CLI form.
 */
async function configureAgentMode(cfg: LabVaultConfig, agent: LabAgentMode): Promise<void> {
  await call(cfg, 'POST', `sys/config/oauth-resource-server/${AGENT_PROFILE}`, {
    issuer_id: cfg.issuer,
    use_jwks: true,
    jwks_uri: cfg.jwksUrl,
    audiences: [VAULT_AUDIENCE],
    user_claim: 'sub',
    actor_claim: 'act.sub',
    unique_id_claim: 'jti',
    supported_algorithms: ['ES256'],
    jwt_type: 'access_token',
    clock_skew_leeway: CLOCK_SKEW_LEEWAY,
  });
  await call(cfg, 'PUT', `sys/policies/acl/${LEASE_REVOKE_POLICY}`, { policy: LEASE_REVOKE_HCL });
  const roles = Object.keys(LAB_VAULT_ROLES) as LabVaultRole[];
  await call(cfg, 'PUT', `sys/policies/acl/${AGENT_CEILING_POLICY}`, { policy: [...roles.map(policyFor), LEASE_REVOKE_HCL].join('') });
  const alias = async (name: string, externalId: string, policies: string[]): Promise<string> => {
    const e = (await call(cfg, 'POST', 'identity/entity', { name, policies })) as { data: { id: string } };
    await call(cfg, 'POST', 'identity/entity-alias', { name: externalId, canonical_id: e.data.id, issuer: cfg.issuer, external_id: externalId });
    return e.data.id;
  };
  for (const u of agent.users) {
    const own = u.vaultRoles.filter((r): r is LabVaultRole => r in LAB_VAULT_ROLES);
    await alias(u.name, u.sub, [...own, LEASE_REVOKE_POLICY]);
  }
  const agentEntity = await alias(`agent-${agent.clientId}`, agent.clientId, []);
  await call(cfg, 'POST', 'agent-registry/register', {
    display_name: AGENT_DISPLAY_NAME,
    entity_id: agentEntity,
    description: 'Countersign: per-call credentials on behalf of the signed-in user',
    owner: 'lab',
    ceiling_policies: [AGENT_CEILING_POLICY],
  });
}

/** Revoking a lease by id; the OBO's RAR narrows it to the leases of the call's own role. */
export const LEASE_REVOKE_HCL = `path "sys/leases/revoke" {\n  capabilities = ["update"]\n}\n`;

export async function configureLabVault(cfg: LabVaultConfig): Promise<void> {
  await call(cfg, 'POST', `sys/auth/${JWT_MOUNT}`, { type: 'jwt', description: 'OBO tokens from the IdP' });
  await call(cfg, 'POST', `auth/${JWT_MOUNT}/config`, { jwks_url: cfg.jwksUrl, bound_issuer: cfg.issuer });
  await call(cfg, 'POST', `sys/mounts/${DATABASE_MOUNT}`, { type: 'database' });
  const pg = cfg.postgres;
  await call(cfg, 'POST', `${DATABASE_MOUNT}/config/${DATABASE_CONNECTION}`, {
    plugin_name: 'postgresql-database-plugin',
    connection_url: `postgresql://{{username}}:{{password}}@${pg.host}:${pg.port}/${pg.database}?sslmode=disable`,
    username: pg.username,
    password: pg.password,
    allowed_roles: Object.entries(LAB_VAULT_ROLES)
      .filter(([, r]) => r.group)
      .map(([name]) => name),
  });
  await call(cfg, 'POST', `sys/mounts/${KV_MOUNT}`, { type: 'kv', options: { version: '2' } });
  if (cfg.apiKey) await call(cfg, 'POST', `${KV_MOUNT}/data/${API_KEY_PATH}`, { data: { api_key: cfg.apiKey } });

  for (const [name, { group }] of Object.entries(LAB_VAULT_ROLES) as Array<[LabVaultRole, { group: string | null }]>) {
    await call(cfg, 'PUT', `sys/policies/acl/${name}`, { policy: policyFor(name) });
    await call(cfg, 'POST', `auth/${JWT_MOUNT}/role/${name}`, {
      role_type: 'jwt',
      bound_audiences: [VAULT_AUDIENCE],
      ...(cfg.binding?.(name) ?? { bound_claims: { vault_role: name }, claim_mappings: { jti: 'obo_jti', client_id: 'client_id' } }),
      user_claim: 'sub',
      clock_skew_leeway: CLOCK_SKEW_LEEWAY,
      expiration_leeway: CLOCK_SKEW_LEEWAY,
      not_before_leeway: CLOCK_SKEW_LEEWAY,
      token_ttl: cfg.ttl ?? PER_CALL_TTL,
      token_max_ttl: cfg.ttl ?? PER_CALL_TTL,
      token_policies: [name],
      token_type: 'service',
    });
    if (group) {
      await call(cfg, 'POST', `${DATABASE_MOUNT}/roles/${name}`, {
        db_name: DATABASE_CONNECTION,
        creation_statements: [creationStatement(group)],
        revocation_statements: [REVOCATION_STATEMENT],
        default_ttl: cfg.ttl ?? PER_CALL_TTL,
        max_ttl: cfg.ttl ?? PER_CALL_TTL,
      });
    }
  }
  if (cfg.agent) await configureAgentMode(cfg, cfg.agent);
}
