import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import Provider from 'oidc-provider';
import type { JWTPayload } from 'jose';
import { memoryAdapter, type AdapterDump } from './adapter.ts';
import { NATIVE_CLIENT_ID, providerConfiguration } from './configuration.ts';
import { interaction } from './interaction.ts';
import { LabKeys } from './keys.ts';
import { html, messagePage } from './pages.ts';
import { phone } from './phone.ts';
import { DEFAULT_POLICY_FILE, loadPolicy, PolicySchema } from './policy.ts';
import type { Policy } from './policy.ts';
import { scopeExchangeHandler } from './scope-exchange.ts';
import { handleVerifyApi, PushStore } from './step-up.ts';
import { assertionSigner, JWT_BEARER, jwtBearerHandler, TOKEN_EXCHANGE, tokenExchangeHandler } from './token-exchange.ts';
import { LAB_USERS } from './users.ts';
import type { LabUser } from './users.ts';
import { LAB_SCOPE_PREFIX, vendorProfile, type LabIdpProfile, type VendorProfile } from './vendor-profiles.ts';

export type { LabUser } from './users.ts';
export { authorizationDetailsDigest } from './policy.ts';
export { ACR_MFA, ACR_PASSWORD, LAB_ONE_TIME_CODE } from './users.ts';
export { LAB_IDP_PROFILES, LAB_SCOPE_PREFIX, type LabIdpProfile } from './vendor-profiles.ts';
export { NATIVE_CLIENT_ID } from './configuration.ts';

export const VAULT_AUDIENCE = 'countersign-vault';

export interface PendingPush {
  id: string;
  transactionData: unknown;
  user: string;
}

export interface IdpFault {
  status?: number;
  delayMs?: number;
  garbage?: boolean;
}

export interface LabIdp {
  issuer: string;
  jwksUri: string;
  tokenEndpoint: string;
  users: LabUser[];
  nativeClientId: 'countersign-desktop';
  vaultAudience: 'countersign-vault';
  /** Which vendor's token exchange the lab speaks (lab/idp/vendor-profiles.ts). */
  profile: VendorProfile;
  /**
   * Test-only: the next OBO the lab issues has its claims rewritten by `change` before it is signed
   * with the lab's real key, to play an IdP that issues what Countersign must refuse (an extra scope,
   * another client, a long life…). `previous` is the last OBO issued, for a repeated jti.
   */
  forgeNextOboForTests(change: (claims: JWTPayload, previous: JWTPayload | undefined) => JWTPayload): void;
  push: { pending(): PendingPush[]; approve(id: string): void; deny(id: string): void };
  /** JWKS rotation for fault tests: what the lab signs from now on uses a new key; old keys stay published. */
  rotateKeys(): Promise<void>;
  /** Token endpoint faults: an error status, a delay, or a 200 whose body is not JSON. */
  setFault(f: IdpFault | null): void;
  /** Lifetime of access tokens issued from now on (default 3600 s), so a test can hold an expired one. */
  setAccessTokenTtl(seconds: number | null): void;
  /** Durations of successful token exchanges (ms), for measurements. */
  exchangeTimings(): number[];
  /** What an administrator does when they edit the IdP's policy: exchanges from now on use the new one. */
  updatePolicy(change: (current: Policy) => Policy): void;
  /**
   * What an administrator does when they delete a registered client (or an IdP that expires unused
   * registrations): the client is gone, and every request it authenticates is refused `invalid_client`.
   * False when no such dynamically registered client exists.
   */
  forgetClient(clientId: string): Promise<boolean>;
  /**
   * What an Okta administrator does in the admin console: creates an API service app with the
   * token-exchange grant and "Public key / Private key" client authentication, holding the public
   * keys given (an install's exchange key, which `countersign doctor` shows). Calling it again for
   * the same app replaces its keys.
   */
  registerServiceApp(app: { clientId: string; jwks: { keys: object[] } }): Promise<void>;
  /** The service app that makes exchanges, where the vendor wants one (Okta); registerServiceApp sets it up. */
  exchangeClientId: string | undefined;
  /** The token registration wants when the vendor's registration is an administrator's API (Okta); undefined when open. */
  registrationAdminToken: string | undefined;
  stop(): Promise<void>;
}

export interface StartIdpOptions {
  port?: number;
  /**
   * Where the IdP keeps its signing keys, grants and sessions across restarts (a JSON file, lab only).
   * Without it everything lives in memory and a restart signs every user out.
   */
  stateFile?: string;
  /** The issuer URL clients use when they reach the IdP through something in between (a fault proxy); default its own address. */
  issuer?: string;
  policyFile?: string;
  log?: (line: string) => void;
  /** Answer token exchanges as this vendor does (default `lab`). */
  profile?: LabIdpProfile;
  /** False plays an IdP whose token exchange is not turned on: no such grant, in discovery or at the token endpoint. */
  tokenExchange?: boolean;
}

const DEFAULT_AT_TTL_S = 3600;
/** Okta's client ids look like this; the lab's service app (okta profile) is always this one. */
const SERVICE_APP_ID = '0oacountersignexchange';

interface IdpState {
  keys: Awaited<ReturnType<LabKeys['privateJwks']>>;
  cookieKey: string;
  grants: Array<[string, { grantId: string; exp: number }]>;
  adapter: AdapterDump;
}

/**
 * Starts the lab's identity provider: oidc-provider 9.13 with the native client, JWT access tokens,
 * DPoP, dynamic registration, device flow, refresh rotation, RFC 8693 token exchange with RAR decided
 * by a policy file, and Verify-style push step-up. Listens on 127.0.0.1 only.
 */
export async function startIdp(opts: StartIdpOptions = {}): Promise<LabIdp> {
  const log = opts.log ?? (() => {});
  const policyFile = opts.policyFile ?? DEFAULT_POLICY_FILE;
  let policy: Policy = loadPolicy(policyFile);
  const vendor = vendorProfile(opts.profile);
  const byScope = vendor.delegation === 'scopes';
  const registrationAdminToken = vendor.openRegistration === false ? randomBytes(16).toString('hex') : undefined;
  const exchanges = opts.tokenExchange !== false;
  // The vault scopes a scope-deciding vendor publishes (one per Vault role the policy grants).
  const vaultScopes = byScope ? [...new Set(policy.rules.flatMap((r) => ('vault_role' in r && r.target === 'vault' ? [`${LAB_SCOPE_PREFIX}${r.vault_role}`] : [])))] : [];
  const forgeries: Array<(claims: JWTPayload, previous: JWTPayload | undefined) => JWTPayload> = [];
  let lastObo: JWTPayload | undefined;
  const saved = opts.stateFile && existsSync(opts.stateFile) ? (JSON.parse(readFileSync(opts.stateFile, 'utf8')) as IdpState) : undefined;
  const keys = saved ? await LabKeys.restore(saved.keys) : await LabKeys.create();
  const push = new PushStore();
  const save = (): void => {
    if (!opts.stateFile) return;
    const state: IdpState = { keys: keys.privateJwks(), cookieKey, grants: [...accessTokenGrants], adapter: storage.dump() };
    writeFileSync(`${opts.stateFile}.tmp`, JSON.stringify(state), { mode: 0o600 });
    renameSync(`${opts.stateFile}.tmp`, opts.stateFile);
  };
  const storage = memoryAdapter(save);
  /** JWT access tokens are not stored: remember each one's grant so an exchange can tell the sign-in still stands. */
  const accessTokenGrants = new Map<string, { grantId: string; exp: number }>(saved?.grants ?? []);
  const cookieKey = saved?.cookieKey ?? randomBytes(32).toString('base64url');
  if (saved) storage.load(saved.adapter);
  const timings: number[] = [];
  let fault: IdpFault | null = null;
  let accessTokenTtl = DEFAULT_AT_TTL_S;

  const server: Server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const issuer = opts.issuer ?? `http://127.0.0.1:${port}`;
  const tokenEndpoint = `${issuer}/token`;

  const configuration = providerConfiguration({
    adapter: storage.Adapter,
    keys,
    cookieKey,
    byScope,
    exchanges,
    vaultScopes,
    registrationAdminToken,
    accessTokenTtl: () => accessTokenTtl,
  });

  const provider = new Provider(issuer, configuration);
  provider.on('access_token.issued', (token: { jti: string; grantId?: string; exp?: number }) => {
    if (!token.grantId) return;
    const now = Math.floor(Date.now() / 1000);
    for (const [jti, e] of accessTokenGrants) if (e.exp < now) accessTokenGrants.delete(jti);
    accessTokenGrants.set(token.jti, { grantId: token.grantId, exp: token.exp ?? now + accessTokenTtl });
    save();
  });
  const deps = {
    provider,
    async signInStands(jti: string): Promise<boolean> {
      const entry = accessTokenGrants.get(jti);
      return entry !== undefined && (await provider.Grant.find(entry.grantId)) !== undefined;
    },
    issuer,
    keys,
    policy: () => policy,
    push,
    log,
    onExchange: (ms: number) => timings.push(ms),
    forgeForTests: (claims: JWTPayload) => {
      const change = forgeries.shift();
      const out = change ? change(structuredClone(claims), lastObo) : claims;
      lastObo = out;
      return out;
    },
  };
  const exchangeParams = [
    'subject_token',
    'subject_token_type',
    'actor_token',
    'actor_token_type',
    'requested_token_type',
    'audience',
    'resource',
    'scope',
    'authorization_details',
  ];
  if (exchanges) provider.registerGrantType(
    TOKEN_EXCHANGE,
    byScope ? scopeExchangeHandler(deps, vendor, LAB_SCOPE_PREFIX) : tokenExchangeHandler(deps),
    byScope ? exchangeParams.filter((p) => p !== 'authorization_details') : exchangeParams,
    ['audience', 'resource'],
  );
  if (exchanges) provider.registerGrantType(JWT_BEARER, jwtBearerHandler(deps, tokenEndpoint), ['assertion', 'scope', 'authorization_details', 'resource', 'audience']);

  provider.on('server_error', (_ctx, err) => log(`idp: server error ${(err as Error).name}`));
  provider.on('grant.error', (_ctx, err) => log(`idp: grant error ${(err as { error?: string }).error ?? 'unknown'}`));
  provider.on('grant.revoked', (_ctx, grantId) => log(`idp: grant revoked ${grantId}`));

  const providerCallback = provider.callback();
  const signAssertion = assertionSigner({ keys, issuer }, tokenEndpoint);

  async function tokenFault(res: ServerResponse): Promise<boolean> {
    const f = fault;
    if (!f) return false;
    if (f.delayMs) await new Promise((r) => setTimeout(r, f.delayMs));
    if (f.garbage) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('<html>not json');
      return true;
    }
    if (f.status) {
      res.writeHead(f.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: f.status >= 500 ? 'temporarily_unavailable' : 'invalid_request', error_description: 'lab fault' }));
      return true;
    }
    return false;
  }

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    void (async () => {
      const url = new URL(req.url ?? '/', issuer);
      if (url.pathname === '/jwks' && req.method === 'GET') {
        res.writeHead(200, { 'content-type': 'application/jwk-set+json', 'cache-control': 'no-store' });
        res.end(JSON.stringify(keys.publicJwks()));
        return;
      }
      if (url.pathname === '/token' && req.method === 'POST' && (await tokenFault(res))) return;
      const im = /^\/interaction\/([^/]+)(?:\/(login|abort))?$/.exec(url.pathname);
      if (im) return interaction({ provider, log }, req, res, im[1]!, im[2]);
      if (url.pathname.startsWith('/lab/phone') && (await phone(req, res, url, { push, issuer, log }))) return;
      if (await handleVerifyApi(req, res, url, { store: push, issuer, signAssertion, log })) return;
      providerCallback(req, res);
    })().catch((err: unknown) => {
      log(`idp: request failed ${(err as Error)?.name ?? 'error'}`);
      if (!res.headersSent) html(res, 500, messagePage('Error', 'The lab identity provider failed to answer this request.'));
      else res.end();
    });
  });

  log(`idp: listening at ${issuer} (policy ${policyFile}, token exchange as ${vendor.title})`);

  return {
    issuer,
    jwksUri: `${issuer}/jwks`,
    tokenEndpoint,
    users: LAB_USERS.map((u) => ({ ...u })),
    nativeClientId: NATIVE_CLIENT_ID,
    vaultAudience: VAULT_AUDIENCE,
    profile: vendor,
    forgeNextOboForTests(change) {
      forgeries.push(change);
    },
    push: {
      pending: () => push.pending().map(({ id, transactionData, user }) => ({ id, transactionData, user })),
      approve: (id) => push.decide(id, 'VERIFY_SUCCESS'),
      deny: (id) => push.decide(id, 'USER_DENIED'),
    },
    rotateKeys: async () => {
      await keys.rotate();
      save();
    },
    setFault(f) {
      fault = f;
    },
    setAccessTokenTtl(seconds) {
      accessTokenTtl = seconds ?? DEFAULT_AT_TTL_S;
    },
    exchangeTimings: () => [...timings],
    updatePolicy(change) {
      policy = PolicySchema.parse(change(structuredClone(policy)));
    },
    registrationAdminToken,
    exchangeClientId: vendor.exchanger === 'service-app' ? SERVICE_APP_ID : undefined,
    async registerServiceApp({ clientId, jwks }) {
      const adapter = (provider.Client as unknown as { adapter: unknown }).adapter as { upsert(id: string, value: object): Promise<void> };
      await adapter.upsert(clientId, {
        client_id: clientId,
        client_name: 'Countersign token exchange (service app)',
        application_type: 'web',
        token_endpoint_auth_method: 'private_key_jwt',
        token_endpoint_auth_signing_alg: 'ES256',
        grant_types: [TOKEN_EXCHANGE],
        response_types: [],
        redirect_uris: [],
        jwks,
      });
      log(`idp: service app ${clientId} set up by the administrator with ${jwks.keys.length} key(s)`);
    },
    async forgetClient(clientId) {
      // oidc-provider keeps dynamically registered clients in its adapter (not in its types)
      const adapter = (provider.Client as unknown as { adapter: unknown }).adapter as { find(id: string): Promise<unknown>; destroy(id: string): Promise<void> };
      if (clientId === NATIVE_CLIENT_ID || !(await adapter.find(clientId))) return false;
      await adapter.destroy(clientId);
      log(`idp: client ${clientId} deleted by the administrator`);
      return true;
    },
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      storage.clear();
      accessTokenGrants.clear();
    },
  };
}

// `node lab/idp/index.ts [--json]`: the IdP alone, until interrupted (the full lab composes it with the rest).
if (import.meta.main) {
  const idp = await startIdp({
    port: Number(process.env.LAB_IDP_PORT ?? 0),
    ...(process.env.LAB_IDP_STATE ? { stateFile: process.env.LAB_IDP_STATE } : {}),
    log: (l) => process.stderr.write(`${l}\n`),
  });
  const summary = {
    issuer: idp.issuer,
    jwks_uri: idp.jwksUri,
    token_endpoint: idp.tokenEndpoint,
    client_id: idp.nativeClientId,
    phone: `${idp.issuer}/lab/phone`,
    users: idp.users.map(({ username, password, role }) => ({ username, password, role })),
  };
  if (process.argv.includes('--json')) process.stdout.write(`${JSON.stringify(summary)}\n`);
  else process.stdout.write(`Countersign lab IdP at ${idp.issuer}\n${JSON.stringify(summary, null, 2)}\n`);
  const stop = () => void idp.stop().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
