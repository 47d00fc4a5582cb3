/** The credentials a governed call may need under this configuration, each described as the doctor asks for it. */
import type { AppConfig } from '../config/config.ts';
import type { AuthorizationDetail } from '../connectors/types.ts';
import { createPostgresConnector } from '../connectors/postgres/connector.ts';
import { loadPolicyFile } from '../policy/policy.ts';

/** One credential a governed call may need, and how to ask the IdP for it. */
export interface DoctorCredential {
  name: string;
  vaultRole: string;
  audience?: string;
  resource?: string;
  authorizationDetails: AuthorizationDetail[];
  /** Under rar, no representative call can be described for it (a write names its rows). */
  rarUnavailable?: string;
  use:
    | { kind: 'database'; dbMount: string }
    | { kind: 'kv'; kvMount: string; path: string; field: string }
    | { kind: 'obo'; url: string };
  authMount: string;
}

/** The credentials a governed call may need, from the policy file and the upstreams. */
export async function credentialsOf(config: AppConfig): Promise<DoctorCredential[]> {
  const out: DoctorCredential[] = [];
  const policy = await loadPolicyFile(config.policyFile);
  const p = policy.postgres;
  if (p && config.postgres) {
    // A read with no table is a call Countersign can describe truthfully without knowing the schema.
    const plan = await createPostgresConnector({
      policy: p,
      connection: {
        host: config.postgres.host,
        port: config.postgres.port,
        database: config.postgres.database,
      },
    }).plan('query', { sql: 'SELECT 1' });
    const base = {
      audience: p.audience,
      authMount: p.vault.authMount,
      use: { kind: 'database' as const, dbMount: p.vault.dbMount },
    };
    out.push({
      ...base,
      name: `database reads (${p.roles.read})`,
      vaultRole: p.roles.read,
      authorizationDetails: plan.authorizationDetails,
    });
    for (const [kind, role] of [
      ['writes', p.roles.write],
      ['sensitive reads', p.roles.sensitive],
    ] as const) {
      out.push({
        ...base,
        name: `database ${kind} (${role})`,
        vaultRole: role,
        authorizationDetails: plan.authorizationDetails.map((d) => ({
          ...d,
          ...(kind === 'writes' ? { actions: ['UPDATE'], bounded: true } : { privileges: ['sensitive'] }),
        })),
        rarUnavailable: `Under the rar profile the doctor does not ask for ${role}: a ${kind === 'writes' ? 'write' : 'sensitive read'} is described by the rows it touches, so the first approved one shows whether the identity provider grants it.`,
      });
    }
  }
  for (const u of config.upstreams) {
    if (u.auth === 'api-key' && u.apiKey) {
      out.push({
        name: `the API key of ${u.name} (${u.apiKey.role})`,
        vaultRole: u.apiKey.role,
        audience: u.apiKey.audience,
        authMount: u.apiKey.authMount,
        authorizationDetails: [
          { type: 'api_key', locations: [u.url], actions: ['read'], identifier: u.name },
        ],
        use: { kind: 'kv', kvMount: u.apiKey.kvMount, path: u.apiKey.path, field: u.apiKey.field },
      });
    } else if (u.auth === 'obo') {
      out.push({
        name: `calls to ${u.name}`,
        vaultRole: '-',
        resource: u.url,
        authMount: config.vault.authMount,
        authorizationDetails: [
          {
            type: 'mcp_tool_call',
            locations: [u.url],
            actions: ['list'],
            identifier: 'tools/list',
            argument_digest: `sha256:${'0'.repeat(64)}`,
          },
        ],
        use: { kind: 'obo', url: u.url },
      });
    }
  }
  return out;
}
