/**
 * `countersign doctor`: checks each party a governed call goes through and says, in sentences, what
 * to fix. The identity provider's discovery (token exchange, RAR types, DPoP, PAR, registration,
 * device flow) and which delegation profile fits it; after a sign-in, a real exchange per configured
 * credential (the claims that came back, never the token), a real Vault login with that OBO, the
 * credential, and a `SELECT 1` with it, revoked at once; Vault's health, auth mount and roles; each
 * database and upstream. `ok` only when a governed call can work: every check passed and at least one
 * credential went the whole way.
 */
import { connect } from 'node:net';
import { readFile } from 'node:fs/promises';
import pg from 'pg';
import { decodeJwt } from 'jose';
import type { webcrypto } from 'node:crypto';
import { AppError } from '../../../common/errors.ts';
import type { AppConfig } from '../config/config.ts';
import type { AuthorizationDetail } from '../connectors/types.ts';
import { createPostgresConnector } from '../connectors/postgres/connector.ts';
import { postgresSsl } from '../connectors/postgres/tls.ts';
import {
  createTokenExchanger,
  GRANT_TOKEN_EXCHANGE,
  type ExchangeClient,
  type Obo,
} from '../idp/token-exchange.ts';
import { exchangeClientOptions, installExchangeKey } from '../idp/exchange-client.ts';
import { loadPolicyFile } from '../policy/policy.ts';
import type { SecretStore } from '../ports.ts';
import { createVaultClient, type VaultClient } from '../vault/client.ts';

export type FindingStatus = 'ok' | 'warn' | 'fail' | 'skip';
export type Party = 'idp' | 'delegation' | 'exchange' | 'vault' | 'database' | 'upstream';

export interface Finding {
  party: Party;
  check: string;
  status: FindingStatus;
  /** What was found, as a sentence. */
  says: string;
  /** What to do about it, when there is something to do. */
  fix?: string;
  /** The OBO's claims (never the token itself) for an exchange check. */
  claims?: Record<string, unknown>;
}

export interface DoctorReport {
  ok: boolean;
  delegation: { configured: 'rar' | 'scopes'; fits: 'rar' | 'scopes' | 'unknown' };
  findings: Finding[];
}

/** A signed-in session the doctor may exchange with (the sign-in module's, or a throwaway one). */
export interface DoctorSession {
  accessToken(signal?: AbortSignal): Promise<string>;
  sub?: string;
  client?: () => Promise<ExchangeClient>;
  dpopKeyPair?: () => webcrypto.CryptoKeyPair | undefined;
}

export interface DoctorOptions {
  config: AppConfig;
  /** Absent: the exchange checks are skipped and the report cannot be ok. */
  session?: DoctorSession;
  /** The keychain, for this install's exchange key when `idp.exchangeClientId` is set (read, or made once). */
  secrets?: SecretStore;
  timeoutMs?: number;
}

/** One credential a governed call may need, and how to ask the IdP for it. */
interface Credential {
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

/** Without the keychain, the exchange key cannot be read: the exchange checks say so instead of using another client. */
const noKeychain: SecretStore = {
  kind: 'memory',
  get: async () => {
    throw new AppError('KEYCHAIN_UNAVAILABLE', "The doctor was not given the keychain, so this install's exchange key cannot be read.");
  },
  set: async () => {
    throw new AppError('KEYCHAIN_UNAVAILABLE', "The doctor was not given the keychain, so this install's exchange key cannot be kept.");
  },
  delete: async () => {},
};

const TYPES_NEEDED = { database: 'postgres', kv: 'api_key', obo: 'mcp_tool_call' } as const;

export async function runDoctor(options: DoctorOptions): Promise<DoctorReport> {
  const { config } = options;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const findings: Finding[] = [];
  const add = (f: Finding): void => void findings.push(f);
  const insecure = config.idp.allowInsecureHttpForLoopbackOnly;

  const credentials = await credentialsOf(config);
  const idp = await checkIdentityProvider(config.idp, credentials, timeoutMs);
  findings.push(...idp.findings);
  const { meta, fits } = idp;

  // --- Vault
  const vault = createVaultClient({
    address: config.vault.address,
    namespace: config.vault.namespace,
    caCert: config.vault.caCertFile ? await readFile(config.vault.caCertFile, 'utf8') : undefined,
    timeoutMs,
  });
  let vaultUsable = false;
  try {
    const health = await vaultHealth(config.vault.address, timeoutMs);
    if (health === 'unreachable') {
      add({
        party: 'vault',
        check: 'health',
        status: 'fail',
        says: `Vault at ${config.vault.address} did not answer sys/health.`,
        fix: 'Check vault.address and that Vault is running and reachable from this machine.',
      });
    } else if (health.sealed) {
      add({
        party: 'vault',
        check: 'health',
        status: 'fail',
        says: `Vault at ${config.vault.address} is sealed: it cannot log anyone in or mint credentials.`,
        fix: 'Ask its operator to unseal it (vault operator unseal).',
      });
    } else if (!health.initialized) {
      add({
        party: 'vault',
        check: 'health',
        status: 'fail',
        says: `Vault at ${config.vault.address} is not initialized.`,
        fix: 'Initialize and configure it (docs/vault.md).',
      });
    } else {
      vaultUsable = true;
      add({
        party: 'vault',
        check: 'health',
        status: 'ok',
        says: `Vault at ${config.vault.address} is initialized and unsealed${health.version ? ` (${health.version})` : ''}.`,
      });
    }
    if (vaultUsable) {
      // An OBO upstream takes the OBO itself: no Vault role stands behind it.
      const roles = [
        ...new Map(
          credentials.filter((c) => c.use.kind !== 'obo').map((c) => [`${c.authMount}/${c.vaultRole}`, c]),
        ).values(),
      ];
      const mounts = new Set<string>();
      for (const c of roles) {
        const state = await roleState(vault, c.authMount, c.vaultRole);
        if (state === 'no-mount') {
          if (!mounts.has(c.authMount)) {
            mounts.add(c.authMount);
            add({
              party: 'vault',
              check: `auth/${c.authMount}`,
              status: 'fail',
              says: `Vault has no JWT auth method at auth/${c.authMount}.`,
              fix: `Enable it (vault auth enable -path=${c.authMount} jwt) and point it at your identity provider's JWKS (docs/vault.md §2), or fix vault.authMount.`,
            });
          }
        } else if (state === 'unknown-role') {
          add({
            party: 'vault',
            check: `role ${c.vaultRole}`,
            status: 'fail',
            says: `Vault has no role ${c.vaultRole} at auth/${c.authMount}, which ${c.name} needs.`,
            fix: `Create it (vault write auth/${c.authMount}/role/${c.vaultRole}, docs/vault.md §4), or name the role Vault has in the policy file.`,
          });
        } else
          add({
            party: 'vault',
            check: `role ${c.vaultRole}`,
            status: 'ok',
            says: `Vault has the role ${c.vaultRole} at auth/${c.authMount}.`,
          });
      }
    }

    // --- each database and upstream, reachable at all
    if (config.postgres) {
      const reachable = await tcpReachable(config.postgres.host, config.postgres.port, timeoutMs);
      add(
        reachable
          ? {
              party: 'database',
              check: 'reachable',
              status: 'ok',
              says: `PostgreSQL at ${config.postgres.host}:${config.postgres.port} accepts connections.`,
            }
          : {
              party: 'database',
              check: 'reachable',
              status: 'fail',
              says: `PostgreSQL at ${config.postgres.host}:${config.postgres.port} does not accept connections.`,
              fix: 'Check postgres.host and postgres.port, and that the database is running.',
            },
      );
    }
    for (const u of config.upstreams)
      add(await upstreamCheck(u.name, u.url, u.auth, config.idp.issuer, timeoutMs));

    // --- a real exchange per credential, then Vault and the target with what it bought
    let wholeWay = 0;
    if (!options.session) {
      add({
        party: 'exchange',
        check: 'sign-in',
        status: 'skip',
        says: 'No one is signed in, so no exchange was tried and a governed call is not shown to work.',
        fix: 'Run the doctor with a sign-in (countersign doctor asks for one in your browser).',
      });
    } else if (meta) {
      const signInClient = options.session.client;
      const exchanger = createTokenExchanger({
        issuer: config.idp.issuer,
        clientId: config.idp.clientId,
        ...(config.idp.exchangeClientId
          ? exchangeClientOptions(config.idp, signInClient && { client: signInClient, clientRejected: () => {} }, options.secrets ?? noKeychain)
          : signInClient
            ? { client: signInClient }
            : {}),
        allowInsecureHttpForLoopbackOnly: insecure,
        delegation: config.idp.delegation,
        scopePrefix: config.idp.delegationScopePrefix,
        ...(config.idp.allowLongLivedOboUpToSeconds ? { maxOboLifetimeS: config.idp.allowLongLivedOboUpToSeconds } : {}),
        timeoutMs,
      });
      if (config.idp.exchangeClientId) {
        const id = config.idp.exchangeClientId;
        try {
          const key = await installExchangeKey(options.secrets ?? noKeychain, config.idp.issuer);
          add({
            party: 'exchange',
            check: 'exchange client',
            status: 'ok',
            says: `Token exchanges authenticate as ${id} with this install's exchange key (kid ${key.publicJwk.kid}, private_key_jwt).`,
            fix: `If the identity provider refuses that client (invalid_client), add this public key to it (Okta: the service app's Client Credentials, Public key / Private key): ${JSON.stringify(key.publicJwk)}`,
          });
        } catch (error) {
          const e = AppError.from(error);
          add({ party: 'exchange', check: 'exchange client', status: 'fail', says: `This install's exchange key for ${id} is not usable: ${e.message} [${e.code}]`, fix: 'Unlock the keychain, or remove the damaged entry and add the new key to the client.' });
        }
      }
      const pgSsl = config.postgres ? await postgresSsl(config.postgres) : undefined;
      for (const c of credentials) {
        if (config.idp.delegation === 'rar' && c.rarUnavailable) {
          add({ party: 'exchange', check: c.name, status: 'skip', says: c.rarUnavailable });
          continue;
        }
        if (config.idp.delegation === 'scopes' && c.use.kind === 'obo') {
          add({
            party: 'exchange',
            check: c.name,
            status: 'fail',
            says: `${c.name} takes the OBO itself as its credential, which only the rar profile can describe: its calls will be refused.`,
            fix: 'Use an identity provider that takes the RAR (idp.delegation rar), or reach this upstream with an API key from Vault.',
          });
          continue;
        }
        let obo: Obo;
        try {
          obo = await exchanger.exchange({
            subjectToken: await options.session.accessToken(),
            authorizationDetails: c.authorizationDetails,
            ...(c.audience ? { audience: c.audience } : {}),
            ...(c.resource ? { resource: c.resource } : {}),
            ...(c.use.kind !== 'obo' ? { credential: c.vaultRole } : {}),
            ...(options.session.dpopKeyPair?.() ? { dpopKeyPair: options.session.dpopKeyPair()! } : {}),
            ...(options.session.sub ? { expectedSub: options.session.sub } : {}),
          });
        } catch (error) {
          const e = AppError.from(error);
          add({
            party: 'exchange',
            check: c.name,
            status: e.code === 'IDP_DENIED' ? 'warn' : 'fail',
            says: `The exchange for ${c.name} failed: ${e.message} [${e.code}]`,
            fix: exchangeFix(e.code, config.idp.delegation),
          });
          continue;
        }
        add({
          party: 'exchange',
          check: c.name,
          status: 'ok',
          says: `The identity provider issued an OBO for ${c.name} (vault_role ${obo.vaultRole}, ${obo.exp - obo.iat} s) that fits the ${obo.delegation} profile.`,
          claims: decodeJwt(obo.token) as Record<string, unknown>,
        });
        if (c.use.kind === 'obo' || !vaultUsable) continue;
        if (await throughVault(vault, c, obo, pgSsl, config, timeoutMs, add)) wholeWay += 1;
      }
    }
    const ok = !findings.some((f) => f.status === 'fail') && wholeWay > 0;
    return { ok, delegation: { configured: config.idp.delegation, fits }, findings };
  } finally {
    await vault.close();
  }
}

/**
 * The identity provider's discovery and, when the calls' credentials are known, which delegation
 * profile fits: the doctor's first checks, also run alone by the setup screen on an issuer.
 */
export async function checkIdentityProvider(
  idp: Pick<AppConfig['idp'], 'issuer' | 'delegation' | 'delegationScopePrefix' | 'dynamicRegistration'>,
  credentials: readonly Pick<Credential, 'vaultRole' | 'use'>[],
  timeoutMs: number,
): Promise<{ findings: Finding[]; fits: DoctorReport['delegation']['fits']; meta?: Record<string, unknown> }> {
  const findings: Finding[] = [];
  const add = (f: Finding): void => void findings.push(f);
  // --- the identity provider's discovery
  const meta = await discovery(idp.issuer, timeoutMs).catch((error: unknown) => {
    add({
      party: 'idp',
      check: 'discovery',
      status: 'fail',
      says: `Countersign could not read ${idp.issuer}/.well-known/openid-configuration (${AppError.from(error).message}).`,
      fix: 'Check idp.issuer: it must be the issuer exactly as your identity provider publishes it, reachable from this machine.',
    });
    return undefined;
  });
  let fits: DoctorReport['delegation']['fits'] = 'unknown';
  if (meta) {
    if (meta.issuer !== idp.issuer) {
      add({
        party: 'idp',
        check: 'issuer',
        status: 'fail',
        says: `The discovery document names the issuer ${String(meta.issuer)}, not ${idp.issuer}.`,
        fix: 'Set idp.issuer to the issuer the document names.',
      });
    } else
      add({
        party: 'idp',
        check: 'discovery',
        status: 'ok',
        says: `${idp.issuer} publishes its OpenID configuration.`,
      });
    const grants = Array.isArray(meta.grant_types_supported)
      ? (meta.grant_types_supported as string[])
      : undefined;
    if (grants === undefined) {
      add({
        party: 'idp',
        check: 'token exchange',
        status: 'warn',
        says: 'The discovery document does not list its grants, so token exchange cannot be seen there; the exchanges below decide.',
      });
    } else if (!grants.includes(GRANT_TOKEN_EXCHANGE)) {
      add({
        party: 'idp',
        check: 'token exchange',
        status: 'fail',
        says: 'Your identity provider does not offer token exchange (RFC 8693): its grants do not include urn:ietf:params:oauth:grant-type:token-exchange, so no call can get an on-behalf-of token.',
        fix: "Turn token exchange on: Keycloak 26.2+, the client's Standard Token Exchange switch; Okta, the Token Exchange grant in the authorization server's access policy; IBM Verify, the Token exchange grant on the application (docs/identity-providers.md).",
      });
    } else
      add({
        party: 'idp',
        check: 'token exchange',
        status: 'ok',
        says: 'Token exchange (RFC 8693) is offered.',
      });
    const rarTypes = Array.isArray(meta.authorization_details_types_supported)
      ? (meta.authorization_details_types_supported as string[])
      : [];
    add({
      party: 'idp',
      check: 'RAR types',
      status: 'ok',
      says:
        rarTypes.length > 0
          ? `Authorization details types offered (RFC 9396): ${rarTypes.join(', ')}.`
          : 'No authorization details types (RFC 9396) are published.',
    });
    const feature = (check: string, present: boolean, yes: string, no: string, wanted?: string): void =>
      add({
        party: 'idp',
        check,
        status: !present && wanted ? 'warn' : 'ok',
        says: present ? yes : no,
        ...(!present && wanted ? { fix: wanted } : {}),
      });
    feature(
      'DPoP',
      Array.isArray(meta.dpop_signing_alg_values_supported),
      'DPoP (RFC 9449) is offered: tokens will be bound to this install’s key.',
      'DPoP is not offered: tokens are bearer tokens.',
    );
    feature(
      'PAR',
      typeof meta.pushed_authorization_request_endpoint === 'string',
      'Pushed authorization requests (RFC 9126) are offered.',
      'Pushed authorization requests are not offered.',
    );
    feature(
      'registration',
      typeof meta.registration_endpoint === 'string',
      'Dynamic client registration (RFC 7591) is offered.',
      'Dynamic client registration is not offered.',
      idp.dynamicRegistration === 'when-offered'
        ? 'idp.dynamicRegistration is when-offered but there is no registration endpoint: the configured client is used.'
        : undefined,
    );
    feature(
      'device flow',
      typeof meta.device_authorization_endpoint === 'string',
      'The device flow (RFC 8628) is offered, for sign-in without a browser here.',
      'The device flow is not offered.',
    );

    // --- which delegation profile fits
    const needed = [...new Set(credentials.map((c) => TYPES_NEEDED[c.use.kind]))];
    const scopes = Array.isArray(meta.scopes_supported) ? (meta.scopes_supported as string[]) : undefined;
    const vaultScopes = credentials
      .filter((c) => c.use.kind !== 'obo')
      .map((c) => `${idp.delegationScopePrefix}${c.vaultRole}`);
    if (needed.length > 0 && needed.every((t) => rarTypes.includes(t))) fits = 'rar';
    else if (scopes && vaultScopes.length > 0 && vaultScopes.every((s) => scopes.includes(s)))
      fits = 'scopes';
    const configured = idp.delegation;
    if (fits === configured) {
      add({
        party: 'delegation',
        check: 'profile',
        status: 'ok',
        says: `The ${configured} delegation profile fits: ${configured === 'rar' ? `the identity provider takes the RAR types these calls use (${needed.join(', ')})` : `it publishes the scopes ${vaultScopes.join(', ')}`}.`,
      });
    } else if (fits === 'unknown') {
      add({
        party: 'delegation',
        check: 'profile',
        status: 'warn',
        says: `Discovery shows neither the RAR types these calls use (${needed.join(', ') || 'none'}) nor the scopes ${vaultScopes.join(', ') || '(none)'}; the exchanges below show whether ${configured} works.`,
      });
    } else if (configured === 'rar') {
      add({
        party: 'delegation',
        check: 'profile',
        status: 'fail',
        says: `Your identity provider publishes no RAR types for these calls but the scopes ${vaultScopes.join(', ')}: under the rar profile every call would be refused.`,
        fix: 'Set idp.delegation to "scopes" (docs/identity-providers.md says what that gives up).',
      });
    } else {
      add({
        party: 'delegation',
        check: 'profile',
        status: 'warn',
        says: `Your identity provider takes the RAR types these calls use (${needed.join(', ')}): with the rar profile it would decide each call from its full description, not only the credential.`,
        fix: 'Set idp.delegation to "rar" to let it.',
      });
    }
  }

  return { findings, fits, ...(meta ? { meta } : {}) };
}

/** Vault login with the OBO, the credential, the target with it, then revoke-self: the call's legs, once. */
async function throughVault(
  vault: VaultClient,
  c: Credential,
  obo: Obo,
  ssl: pg.ClientConfig['ssl'] | undefined,
  config: AppConfig,
  timeoutMs: number,
  add: (f: Finding) => void,
): Promise<boolean> {
  let token: string | undefined;
  try {
    const login = await vault.loginJwt(c.authMount, obo.vaultRole, obo.token);
    token = login.token;
    add({
      party: 'vault',
      check: `login ${obo.vaultRole}`,
      status: 'ok',
      says: `Vault logged the OBO in at role ${obo.vaultRole} (policies ${login.policies.join(', ') || 'none'}).`,
    });
    if (c.use.kind === 'database') {
      const creds = await vault.databaseCreds(login.token, c.use.dbMount, obo.vaultRole);
      if (!config.postgres) return false;
      const client = new pg.Client({
        ...config.postgres,
        user: creds.username,
        password: creds.password,
        ssl,
        connectionTimeoutMillis: timeoutMs,
      });
      client.on('error', () => {});
      try {
        await client.connect();
        await client.query('SELECT 1');
      } catch (error) {
        add({
          party: 'database',
          check: `connect as ${obo.vaultRole}`,
          status: 'fail',
          says: `Vault minted a ${obo.vaultRole} credential but PostgreSQL refused it (${(error as { code?: string }).code ?? 'no code'}).`,
          fix: "Check the Vault database connection's host and the role's creation statements (docs/vault.md §3).",
        });
        return false;
      } finally {
        await client.end().catch(() => {});
      }
      add({
        party: 'database',
        check: `connect as ${obo.vaultRole}`,
        status: 'ok',
        says: `A per-call ${obo.vaultRole} credential from Vault ran SELECT 1 on ${config.postgres.database}.`,
      });
      return true;
    }
    if (c.use.kind === 'kv') {
      const secret = await vault.kvRead(login.token, c.use.kvMount, c.use.path);
      const present = typeof secret.data[c.use.field] === 'string';
      add(
        present
          ? {
              party: 'vault',
              check: `secret ${c.use.path}`,
              status: 'ok',
              says: `The ${obo.vaultRole} token reads ${c.use.kvMount}/${c.use.path} (field ${c.use.field} present, value not shown).`,
            }
          : {
              party: 'vault',
              check: `secret ${c.use.path}`,
              status: 'fail',
              says: `${c.use.kvMount}/${c.use.path} has no ${c.use.field} field.`,
              fix: `Write it: vault kv put ${c.use.kvMount}/${c.use.path} ${c.use.field}=…`,
            },
      );
      return present;
    }
    return false;
  } catch (error) {
    const e = AppError.from(error);
    add({
      party: 'vault',
      check: `${c.name} credential`,
      status: 'fail',
      says: `Vault refused ${c.name}: ${e.message} [${e.code}]`,
      fix:
        e.code === 'VAULT_LOGIN_FAILED'
          ? `Bind the role ${obo.vaultRole} on the claims this OBO carries (the claims above; docs/vault.md §4).`
          : undefined,
    });
    return false;
  } finally {
    if (token) await vault.revokeSelf(token).catch(() => {});
  }
}

function exchangeFix(code: string, delegation: 'rar' | 'scopes'): string {
  if (code === 'OBO_INVALID') {
    return delegation === 'rar'
      ? 'The OBO does not fit the rar profile (the reason above). If your identity provider decides by scope, set idp.delegation to "scopes" and map each vault:<role> scope to vault_role.'
      : 'The OBO does not fit the scopes profile (the reason above): grant exactly the one scope asked, map it to vault_role, keep the token to 60 s (or allow longer with idp.allowLongLivedOboUpToSeconds where the identity provider cannot go lower), and make the client the azp (docs/identity-providers.md).';
  }
  if (code === 'IDP_DENIED')
    return 'Your identity provider refused it: check its policy for this user and this client (its reason above).';
  if (code === 'IDP_UNAVAILABLE') return 'Check that the identity provider is reachable from this machine.';
  return 'See docs/identity-providers.md for the settings your identity provider needs.';
}

/** The credentials a governed call may need, from the policy file and the upstreams. */
async function credentialsOf(config: AppConfig): Promise<Credential[]> {
  const out: Credential[] = [];
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

async function discovery(issuer: string, timeoutMs: number): Promise<Record<string, unknown>> {
  const url = `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
  let res: Response;
  try {
    res = await fetch(url, {
      signal: AbortSignal.timeout(timeoutMs),
      redirect: 'error',
      headers: { accept: 'application/json' },
    });
  } catch (error) {
    throw new AppError('IDP_UNAVAILABLE', 'it did not answer', { cause: error });
  }
  if (res.status !== 200) throw new AppError('IDP_BAD_RESPONSE', `HTTP ${res.status}`);
  const json: unknown = await res.json().catch(() => undefined);
  if (!json || typeof json !== 'object')
    throw new AppError('IDP_BAD_RESPONSE', 'the answer is not a JSON object');
  return json as Record<string, unknown>;
}

/** `sys/health` answers 503 when sealed, with the same body: read the body whatever the status. */
async function vaultHealth(
  address: string,
  timeoutMs: number,
): Promise<'unreachable' | { initialized: boolean; sealed: boolean; version?: string }> {
  try {
    const res = await fetch(`${address.replace(/\/+$/, '')}/v1/sys/health`, {
      signal: AbortSignal.timeout(timeoutMs),
      redirect: 'error',
    });
    const body = (await res.json().catch(() => ({}))) as {
      initialized?: unknown;
      sealed?: unknown;
      version?: unknown;
    };
    return {
      initialized: body.initialized !== false,
      sealed: body.sealed === true || res.status === 503,
      ...(typeof body.version === 'string' ? { version: body.version } : {}),
    };
  } catch {
    return 'unreachable';
  }
}

/**
 * Whether a jwt role exists, without a token: a login with a JWT that is not one is refused for the
 * role first (`role "x" could not be found`), else for the token; no mount answers otherwise.
 */
async function roleState(
  vault: VaultClient,
  mount: string,
  role: string,
): Promise<'exists' | 'unknown-role' | 'no-mount'> {
  try {
    await vault.loginJwt(mount, role, 'not-a-jwt');
    return 'exists';
  } catch (error) {
    const e = AppError.from(error);
    if (e.code === 'VAULT_LOGIN_FAILED')
      return /role ".*" could not be found/.test(e.message) ? 'unknown-role' : 'exists';
    return 'no-mount';
  }
}

function tcpReachable(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** An OBO upstream publishes RFC 9728 metadata naming this IdP; an API-key upstream answers at all. */
async function upstreamCheck(
  name: string,
  url: string,
  auth: 'obo' | 'api-key',
  issuer: string,
  timeoutMs: number,
): Promise<Finding> {
  const u = new URL(url);
  try {
    if (auth === 'obo') {
      const res = await fetch(
        `${u.origin}/.well-known/oauth-protected-resource${u.pathname === '/' ? '' : u.pathname}`,
        { signal: AbortSignal.timeout(timeoutMs), redirect: 'error' },
      );
      const meta = (await res.json().catch(() => ({}))) as { authorization_servers?: unknown };
      const servers = Array.isArray(meta.authorization_servers) ? meta.authorization_servers.map(String) : [];
      if (res.status === 200 && servers.includes(issuer))
        return {
          party: 'upstream',
          check: name,
          status: 'ok',
          says: `${name} (${url}) names your identity provider in its protected-resource metadata.`,
        };
      return {
        party: 'upstream',
        check: name,
        status: 'fail',
        says: `${name} (${url}) does not name ${issuer} among its authorization servers (RFC 9728 metadata, HTTP ${res.status}).`,
        fix: 'Check the upstream URL, or configure the upstream to trust your identity provider.',
      };
    }
    const res = await fetch(url, {
      method: 'GET',
      signal: AbortSignal.timeout(timeoutMs),
      redirect: 'error',
    });
    await res.body?.cancel();
    return {
      party: 'upstream',
      check: name,
      status: 'ok',
      says: `${name} (${url}) answers (HTTP ${res.status}); its key comes from Vault per call.`,
    };
  } catch {
    return {
      party: 'upstream',
      check: name,
      status: 'fail',
      says: `${name} (${url}) did not answer.`,
      fix: 'Check the upstream URL and that the server is running.',
    };
  }
}

/** The report as sentences, one party after another, for a terminal. */
export function formatReport(report: DoctorReport): string {
  const mark: Record<FindingStatus, string> = { ok: 'ok  ', warn: 'warn', fail: 'FAIL', skip: 'skip' };
  const lines: string[] = [];
  let party: Party | undefined;
  for (const f of report.findings) {
    if (f.party !== party) {
      party = f.party;
      lines.push('', PARTY_TITLE[party]);
    }
    lines.push(`  [${mark[f.status]}] ${f.says}`);
    if (f.fix) lines.push(`         Fix: ${f.fix}`);
    if (f.claims) lines.push(`         Claims (the token itself is not shown): ${JSON.stringify(f.claims)}`);
  }
  lines.push(
    '',
    report.ok
      ? 'A governed call can work: every check passed and a credential went the whole way (exchange, Vault, target, revoke).'
      : 'A governed call cannot be shown to work yet: fix what is marked FAIL above (and sign in, if it was skipped).',
  );
  return lines.join('\n').trimStart() + '\n';
}

const PARTY_TITLE: Record<Party, string> = {
  idp: 'Identity provider',
  delegation: 'Delegation profile',
  exchange: 'Token exchange (one per credential)',
  vault: 'Vault',
  database: 'Database',
  upstream: 'Upstream MCP servers',
};
