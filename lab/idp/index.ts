import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import Provider, { errors, interactionPolicy } from 'oidc-provider';
import type { Configuration, KoaContextWithOIDC } from 'oidc-provider';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { memoryAdapter, type AdapterDump } from './adapter.ts';
import { LabKeys } from './keys.ts';
import { loginPage, messagePage, PAGE_CSP, phonePage } from './pages.ts';
import { DEFAULT_POLICY_FILE, loadPolicy, PolicySchema, RAR_TYPES } from './policy.ts';
import type { Policy } from './policy.ts';
import { handleVerifyApi, PushStore } from './step-up.ts';
import {
  APP_RESOURCE,
  assertionSigner,
  JWT_BEARER,
  jwtBearerHandler,
  STEP_UP_RESOURCE,
  TOKEN_EXCHANGE,
  tokenExchangeHandler,
} from './token-exchange.ts';
import { ACR_MFA, ACR_PASSWORD, LAB_ONE_TIME_CODE, LAB_USERS, userBySub } from './users.ts';
import type { LabUser } from './users.ts';
import { scopeExchangeHandler } from './scope-exchange.ts';
import { LAB_SCOPE_PREFIX, vendorProfile, type LabIdpProfile, type VendorProfile } from './vendor-profiles.ts';
import type { JWTPayload } from 'jose';

export type { LabUser } from './users.ts';
export { authorizationDetailsDigest } from './policy.ts';
export { ACR_MFA, ACR_PASSWORD, LAB_ONE_TIME_CODE } from './users.ts';
export { LAB_IDP_PROFILES, LAB_SCOPE_PREFIX, type LabIdpProfile } from './vendor-profiles.ts';

export const NATIVE_CLIENT_ID = 'countersign-desktop';
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

function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > 16 * 1024) req.destroy();
      else chunks.push(c);
    });
    req.on('end', () => resolve(new URLSearchParams(Buffer.concat(chunks).toString('utf8'))));
    req.on('error', reject);
  });
}

function html(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'content-security-policy': PAGE_CSP,
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  });
  res.end(body);
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

  const { Check, base } = interactionPolicy;
  const prompts = base();
  prompts.get('login')!.checks.add(
    new Check('acr_mfa_requested', 'the request asks for a one-time code and the session has none', (ctx) => {
      const asked = String(ctx.oidc.params?.acr_values ?? '').split(' ');
      return asked.includes(ACR_MFA) && ctx.oidc.session?.acr !== ACR_MFA;
    }),
  );

  const grantSourceOf = (ctx: KoaContextWithOIDC) => {
    const e = ctx.oidc.entities as Record<string, { acr?: string; amr?: string[]; authTime?: number } | undefined>;
    return e.AuthorizationCode ?? e.RefreshToken ?? e.DeviceCode;
  };

  const configuration: Configuration = {
    adapter: storage.Adapter,
    clients: [
      {
        client_id: NATIVE_CLIENT_ID,
        client_name: 'Countersign',
        application_type: 'native',
        token_endpoint_auth_method: 'none',
        ...(byScope ? {} : { authorization_details_types: Object.keys(RAR_TYPES) }),
        require_auth_time: true,
        redirect_uris: ['http://127.0.0.1/callback'],
        response_types: ['code'],
        grant_types: [
          'authorization_code',
          'refresh_token',
          ...(exchanges ? [TOKEN_EXCHANGE] : []),
          'urn:ietf:params:oauth:grant-type:device_code',
          ...(exchanges ? [JWT_BEARER] : []),
        ],
      },
    ],
    jwks: { keys: [keys.providerJwk] },
    cookies: { keys: [cookieKey] },
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username'],
      email: ['email', 'email_verified'],
    },
    scopes: ['openid', 'profile', 'email', 'offline_access', ...vaultScopes],
    responseTypes: ['code'],
    clientDefaults: {
      grant_types: ['authorization_code'],
      response_types: ['code'],
      id_token_signed_response_alg: 'ES256',
      token_endpoint_auth_method: 'private_key_jwt',
      ...(byScope ? {} : { authorization_details_types: Object.keys(RAR_TYPES) }),
    },
    acrValues: [ACR_PASSWORD, ACR_MFA],
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    clientAuthMethods: ['none', 'private_key_jwt'],
    enabledJWA: { clientAuthSigningAlgValues: ['ES256', 'EdDSA', 'PS256', 'RS256'] },
    async findAccount(_ctx, sub) {
      const user = userBySub(sub);
      if (!user) return undefined;
      return {
        accountId: user.sub,
        async claims() {
          return {
            sub: user.sub,
            name: user.name,
            preferred_username: user.username,
            email: user.email,
            email_verified: true,
          };
        },
      };
    },
    interactions: {
      policy: prompts,
      url: (_ctx, interaction) => `/interaction/${interaction.uid}`,
    },
    // First-party lab clients: consent is implied (a lab, not a consent UI).
    async loadExistingGrant(ctx) {
      const { client, session } = ctx.oidc;
      if (!client || !session?.accountId) return undefined;
      const grantId = session.grantIdFor(client.clientId);
      const grant = (grantId && (await ctx.oidc.provider.Grant.find(grantId))) || new ctx.oidc.provider.Grant({ clientId: client.clientId, accountId: session.accountId });
      grant.addOIDCScope('openid profile email offline_access');
      grant.addOIDCClaims(['sub', 'name', 'preferred_username', 'email', 'email_verified']);
      grant.addResourceScope(APP_RESOURCE, 'countersign');
      await grant.save();
      return grant;
    },
    // Refresh tokens for every client allowed the grant: the sign-in asks offline_access, but the
    // provider drops that scope unless prompt=consent, and this lab never shows a consent screen.
    async issueRefreshToken(_ctx, client) {
      return client.grantTypeAllowed('refresh_token');
    },
    rotateRefreshToken: true,
    async extraTokenClaims(ctx, token) {
      if (token.kind !== 'AccessToken') return undefined;
      const src = grantSourceOf(ctx);
      if (!src) return undefined;
      return { acr: src.acr, amr: src.amr, auth_time: src.authTime };
    },
    ttl: {
      AccessToken: () => accessTokenTtl,
      AuthorizationCode: 60,
      DeviceCode: 600,
      IdToken: 3600,
      RefreshToken: 24 * 3600,
      Interaction: 600,
      Session: 24 * 3600,
      Grant: 24 * 3600,
    },
    features: {
      devInteractions: { enabled: false },
      revocation: { enabled: true },
      introspection: { enabled: true },
      dPoP: { enabled: true },
      deviceFlow: { enabled: true },
      registration: {
        enabled: true,
        idFactory: () => `lab-client-${randomBytes(8).toString('hex')}`,
        // Okta's registration API wants an administrator's token: a fixed one plays it.
        ...(registrationAdminToken ? { initialAccessToken: registrationAdminToken } : {}),
      },
      resourceIndicators: {
        enabled: true,
        async defaultResource(ctx, _client, oneOf) {
          const grantType = ctx.oidc.params?.grant_type;
          if (grantType === TOKEN_EXCHANGE) return (ctx.oidc.params?.audience as string | undefined) ?? undefined!;
          if (grantType === JWT_BEARER) return STEP_UP_RESOURCE;
          return oneOf ?? APP_RESOURCE;
        },
        useGrantedResource: () => true,
        async getResourceServerInfo(_ctx, resourceIndicator) {
          if (resourceIndicator !== APP_RESOURCE) throw new errors.InvalidTarget();
          return {
            scope: 'countersign',
            audience: APP_RESOURCE,
            accessTokenTTL: accessTokenTtl,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'ES256' } },
          };
        },
      },
      // Neither Keycloak nor Okta offers RFC 9396: the scope-deciding profiles publish no RAR types.
      richAuthorizationRequests: {
        enabled: !byScope,
        types: Object.fromEntries(
          Object.entries(RAR_TYPES).map(([type, schema]) => [
            type,
            {
              validate(_ctx: unknown, detail: unknown) {
                const r = schema.safeParse(detail);
                if (!r.success) {
                  const issue = r.error.issues[0];
                  throw new errors.InvalidAuthorizationDetails(
                    `authorization details of type ${type}: ${issue?.path.join('.') || 'entry'} ${issue?.message ?? 'is invalid'}`,
                  );
                }
              },
            },
          ]),
        ),
        // Authorization requests carry no RAR here: exchanges carry it, decided by the policy file.
        async authorizationDetailsForGrantSource() {
          return undefined;
        },
        async authorizationDetailsForAccessToken() {
          return undefined;
        },
        async authorizationDetailsForIntrospection() {
          return undefined;
        },
      },
    },
    extraClientMetadata: {
      properties: ['token_endpoint_auth_method'],
      // Open dynamic registration (RFC 7591), but only for clients that prove a key (private_key_jwt):
      // each install becomes its own confidential client.
      validator(ctx, key, value) {
        if (ctx && ctx.oidc?.route === 'registration' && key === 'token_endpoint_auth_method' && value !== 'private_key_jwt') {
          throw new errors.InvalidClientMetadata('dynamically registered clients must use token_endpoint_auth_method private_key_jwt');
        }
      },
    },
    async renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = messagePage('Sign-in error', `${out.error}: ${out.error_description ?? ''}`);
    },
  } as Configuration;

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

  async function interaction(req: IncomingMessage, res: ServerResponse, uid: string, action: string | undefined): Promise<void> {
    const details = await provider.interactionDetails(req, res);
    if (details.uid !== uid) return html(res, 400, messagePage('Sign-in error', 'This sign-in page has expired.'));
    const client = await provider.Client.find(String(details.params.client_id));
    const clientName = client?.clientName ?? String(details.params.client_id);
    const wantsMfa = String(details.params.acr_values ?? '').split(' ').includes(ACR_MFA);

    if (details.prompt.name !== 'login') {
      // consent: implied for the lab's clients (see loadExistingGrant)
      const grant = details.grantId ? await provider.Grant.find(details.grantId) : new provider.Grant({ clientId: String(details.params.client_id), accountId: details.session!.accountId });
      grant!.addOIDCScope('openid profile email offline_access');
      grant!.addResourceScope(APP_RESOURCE, 'countersign');
      const grantId = await grant!.save();
      return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    }
    if (req.method === 'GET' && action === undefined) return html(res, 200, loginPage({ uid, clientName, wantsMfa }));
    if (req.method === 'POST' && action === 'abort') {
      return provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'The user cancelled the sign-in.' }, { mergeWithLastSubmission: false });
    }
    if (req.method === 'POST' && action === 'login') {
      const form = await readForm(req);
      const username = form.get('username') ?? '';
      const user = LAB_USERS.find((u) => u.username === username);
      if (!user || form.get('password') !== user.password) {
        log(`idp: login failed user=${username.slice(0, 40)}`);
        return html(res, 200, loginPage({ uid, clientName, wantsMfa, username, error: 'Wrong username or password.' }));
      }
      const otp = form.get('otp') ?? '';
      if (wantsMfa && otp !== LAB_ONE_TIME_CODE) {
        return html(res, 200, loginPage({ uid, clientName, wantsMfa, username, error: 'Wrong one-time code.' }));
      }
      const mfa = otp === LAB_ONE_TIME_CODE;
      log(`idp: login ok user=${user.username} acr=${mfa ? ACR_MFA : ACR_PASSWORD}`);
      return provider.interactionFinished(
        req,
        res,
        { login: { accountId: user.sub, acr: mfa ? ACR_MFA : ACR_PASSWORD, amr: mfa ? ['pwd', 'otp'] : ['pwd'] } },
        { mergeWithLastSubmission: false },
      );
    }
    html(res, 405, messagePage('Sign-in error', 'Method not allowed.'));
  }

  async function phone(req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> {
    if (url.pathname === '/lab/phone' && req.method === 'GET') {
      html(res, 200, phonePage(push.pending()));
      return true;
    }
    const m = /^\/lab\/phone\/([^/]+)\/(approve|deny)$/.exec(url.pathname);
    if (!m || req.method !== 'POST') return false;
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== issuer) {
      html(res, 403, messagePage('Phone', 'Cross-origin requests are refused.'));
      return true;
    }
    try {
      push.decide(decodeURIComponent(m[1]!), m[2] === 'approve' ? 'VERIFY_SUCCESS' : 'USER_DENIED');
      log(`idp: push ${m[2] === 'approve' ? 'approved' : 'denied'} id=${m[1]} (lab phone)`);
    } catch {
      /* already decided or expired: the list below shows what is left */
    }
    res.writeHead(303, { location: '/lab/phone' });
    res.end();
    return true;
  }

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
      if (im) return interaction(req, res, im[1]!, im[2]);
      if (url.pathname.startsWith('/lab/phone') && (await phone(req, res, url))) return;
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
