/**
 * The lab IdP speaking as Keycloak and as Okta (lab/idp/vendor-profiles.ts), over real sockets: what
 * their discovery publishes, which clients may exchange, the claims an OBO carries and lacks, the
 * errors refusals come back as, and how Countersign's exchanger (idp.delegation = scopes) reads each.
 */
import { randomUUID, type webcrypto } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startIdp, type LabIdp } from '../../lab/idp/index.ts';
import { AppError } from '../../common/errors.ts';
import { createTokenExchanger, type TokenExchanger } from '../../main/core/idp/token-exchange.ts';
import { decodeJwt, postForm, readDetails, signIn, TE, type TokenResponse } from './idp-fixtures.ts';

const AT = 'urn:ietf:params:oauth:token-type:access_token';

interface Registered {
  clientId: string;
  privateKey: webcrypto.CryptoKey;
  assertion(): Promise<string>;
}

async function register(idp: LabIdp): Promise<Registered> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const kid = randomUUID();
  const reg = await fetch(`${idp.issuer}/reg`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      // Okta's registration is an administrator's API: the lab plays it with a token only the administrator has.
      ...(idp.registrationAdminToken ? { authorization: `Bearer ${idp.registrationAdminToken}` } : {}),
    },
    body: JSON.stringify({
      application_type: 'native',
      redirect_uris: ['http://127.0.0.1/callback'],
      token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: 'ES256',
      jwks: { keys: [{ ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' }] },
      grant_types: ['authorization_code', 'refresh_token', TE],
      response_types: ['code'],
    }),
  });
  expect(reg.status).toBe(201);
  const { client_id: clientId } = (await reg.json()) as { client_id: string };
  return {
    clientId,
    privateKey: privateKey as webcrypto.CryptoKey,
    assertion: () =>
      new SignJWT({ jti: randomUUID() })
        .setProtectedHeader({ alg: 'ES256', kid })
        .setIssuer(clientId)
        .setSubject(clientId)
        .setAudience(idp.issuer)
        .setIssuedAt()
        .setExpirationTime('60s')
        .sign(privateKey),
  };
}

async function scopeExchange(
  idp: LabIdp,
  subject: string,
  client: Registered | undefined,
  o: { scope?: string; audience?: string } = {},
) {
  return postForm(idp.tokenEndpoint, {
    grant_type: TE,
    client_id: client?.clientId ?? idp.nativeClientId,
    subject_token: subject,
    subject_token_type: AT,
    scope: o.scope,
    audience: o.audience ?? idp.vaultAudience,
    ...(client
      ? {
          client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
          client_assertion: await client.assertion(),
        }
      : {}),
  });
}

async function exchangerFor(idp: LabIdp, client: Registered): Promise<TokenExchanger> {
  const config = await oidc.discovery(
    new URL(idp.issuer),
    client.clientId,
    undefined,
    oidc.PrivateKeyJwt(client.privateKey),
    { execute: [oidc.allowInsecureRequests] },
  );
  return createTokenExchanger({
    issuer: idp.issuer,
    clientId: client.clientId,
    client: async () => ({
      clientId: client.clientId,
      clientAuth: oidc.PrivateKeyJwt(client.privateKey),
      serverMetadata: config.serverMetadata(),
    }),
    allowInsecureHttpForLoopbackOnly: true,
    // Okta's OBO lives 5 minutes at least: the lab's okta configuration allows that much (idp.allowLongLivedOboUpToSeconds).
    ...((idp.profile.oboLifetimeS ?? 60) > 60 ? { maxOboLifetimeS: idp.profile.oboLifetimeS } : {}),
    delegation: 'scopes',
  });
}

const codeOf = (p: Promise<unknown>) =>
  p.then(
    () => 'ok',
    (e: unknown) => (e instanceof AppError ? `${e.code}: ${e.message}` : String(e)),
  );

describe.each(['keycloak', 'okta'] as const)('the lab IdP as %s (scopes)', (profile) => {
  let idp: LabIdp;
  let client: Registered;
  let alice: TokenResponse;
  let bob: TokenResponse;

  beforeAll(async () => {
    idp = await startIdp({ profile });
    client = await register(idp);
    const as = (username: string, password: string) =>
      signIn(idp, { username, password, clientId: client.clientId, clientAssertion: client.assertion });
    [alice, bob] = await Promise.all([as('alice', 'alice-lab-pw'), as('bob', 'bob-lab-pw')]);
  });
  afterAll(async () => {
    await idp?.stop();
  });

  it('publishes one scope per Vault role and no RAR types in its discovery', async () => {
    const meta = (await (await fetch(`${idp.issuer}/.well-known/openid-configuration`)).json()) as Record<
      string,
      unknown
    >;
    expect(meta.grant_types_supported).toContain(TE);
    expect(meta.scopes_supported).toEqual(
      expect.arrayContaining([
        'vault:clinic-read',
        'vault:clinic-write',
        'vault:clinic-sensitive',
        'vault:upstream-apikey',
      ]),
    );
    expect(meta.authorization_details_types_supported).toBeUndefined();
  });

  it('refuses an exchange by a public client, as the vendor does', async () => {
    const publicTokens = await signIn(idp, { username: 'alice', password: 'alice-lab-pw' });
    const res = await scopeExchange(idp, publicTokens.access_token, undefined, {
      scope: 'vault:clinic-read',
    });
    expect(res.status).toBe(400);
    expect(res.json).toEqual(
      profile === 'keycloak'
        ? { error: 'invalid_client', error_description: 'Public client is not allowed to exchange token' }
        : {
            error: 'unauthorized_client',
            error_description: 'The client is not authorized to use the provided grant type.',
          },
    );
  });

  it('issues an OBO of the vendor’s shortest lifetime with its claims, exactly the scope asked, and vault_role mapped from it', async () => {
    const res = await scopeExchange(idp, alice.access_token, client, { scope: 'vault:clinic-read' });
    expect(res.status).toBe(200);
    // Keycloak: a client's Access Token Lifespan of 1 minute; Okta: 5 minutes, its least.
    const lifetime = profile === 'keycloak' ? 60 : 300;
    expect(res.json).toMatchObject({
      issued_token_type: AT,
      token_type: 'Bearer',
      expires_in: lifetime,
      scope: 'vault:clinic-read',
    });
    const claims = decodeJwt(String(res.json.access_token));
    expect((claims.exp as number) - (claims.iat as number)).toBe(lifetime);
    expect(claims).toMatchObject({ aud: idp.vaultAudience, vault_role: 'clinic-read' });
    for (const absent of ['act', 'authorization_details', 'client_id'])
      expect(claims, absent).not.toHaveProperty(absent);
    const aliceUser = idp.users.find((u) => u.username === 'alice')!;
    if (profile === 'keycloak') {
      expect(claims).toMatchObject({
        azp: client.clientId,
        scope: 'vault:clinic-read',
        typ: 'Bearer',
        sub: aliceUser.sub,
      });
    } else {
      expect(claims).toMatchObject({
        cid: client.clientId,
        scp: ['vault:clinic-read'],
        uid: aliceUser.sub,
        sub: aliceUser.email,
        ver: 1,
      });
      expect(claims).not.toHaveProperty('azp');
    }
  });

  it('registers a client openly (Keycloak with its policies) or only with the administrator’s token (Okta)', async () => {
    const res = await fetch(`${idp.issuer}/reg`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ redirect_uris: ['http://127.0.0.1/callback'], token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [] } }),
    });
    if (profile === 'okta') expect(res.status).toBe(401);
    else expect(res.status).not.toBe(401);
  });

  it('lets a service app exchange the sign-in app’s token only where the vendor does (Okta’s on-behalf-of)', async () => {
    const publicTokens = await signIn(idp, { username: 'alice', password: 'alice-lab-pw' });
    const res = await scopeExchange(idp, publicTokens.access_token, client, { scope: 'vault:clinic-read' });
    if (profile === 'okta') {
      expect(res.status).toBe(200);
      expect(decodeJwt(String(res.json.access_token))).toMatchObject({ cid: client.clientId, uid: idp.users.find((u) => u.username === 'alice')!.sub });
    } else {
      expect(res.status).toBe(400);
      expect(res.json).toMatchObject({ error: 'invalid_request', error_description: 'the subject token was issued to another client' });
    }
  });

  it('refuses a scope it does not know with invalid_scope', async () => {
    const res = await scopeExchange(idp, alice.access_token, client, { scope: 'vault:root' });
    expect(res.status).toBe(400);
    expect(res.json.error).toBe('invalid_scope');
  });

  it('refuses an audience no scope gives', async () => {
    const res = await scopeExchange(idp, alice.access_token, client, {
      scope: 'vault:clinic-read',
      audience: 'somewhere-else',
    });
    expect(res.status).toBe(400);
    expect(res.json.error).toBe(profile === 'keycloak' ? 'invalid_request' : 'invalid_target');
  });

  it('decides a scope by the user’s rights: bob may not have vault:clinic-write', async () => {
    const res = await scopeExchange(idp, bob.access_token, client, { scope: 'vault:clinic-write' });
    if (profile === 'keycloak') {
      expect(res.status).toBe(200);
      expect(res.json.scope).toBe('');
      expect(decodeJwt(String(res.json.access_token))).not.toHaveProperty('vault_role');
    } else {
      expect(res.status).toBe(400);
      expect(res.json).toEqual({
        error: 'access_denied',
        error_description:
          'Policy evaluation failed for this request, please check the policy configurations.',
      });
    }
  });

  it('Countersign’s exchanger (scopes) gets the credential’s scope for alice, and reads bob’s refusal as the IdP’s denial', async () => {
    const exchanger = await exchangerFor(idp, client);
    expect(exchanger.delegation).toBe('scopes');
    const obo = await exchanger.exchange({
      subjectToken: alice.access_token,
      authorizationDetails: readDetails(),
      audience: idp.vaultAudience,
      credential: 'clinic-read',
      expectedSub: idp.users.find((u) => u.username === 'alice')!.sub,
    });
    expect(obo).toMatchObject({
      delegation: 'scopes',
      scope: 'vault:clinic-read',
      vaultRole: 'clinic-read',
      authorizationDetails: [],
    });
    expect(
      await codeOf(
        exchanger.exchange({
          subjectToken: bob.access_token,
          authorizationDetails: readDetails({ actions: ['UPDATE'] }),
          audience: idp.vaultAudience,
          credential: 'clinic-write',
        }),
      ),
    ).toMatch(
      profile === 'keycloak'
        ? /^IDP_DENIED: Your identity provider did not grant vault:clinic-write/
        : /^IDP_DENIED: Your identity provider denied this call \(access_denied\): Policy evaluation failed/,
    );
  });

  it('refuses, before asking the IdP, a call whose credential is the OBO itself (a remote MCP server): only rar can describe it', async () => {
    const exchanger = await exchangerFor(idp, client);
    const timings = idp.exchangeTimings().length;
    expect(
      await codeOf(
        exchanger.exchange({
          subjectToken: alice.access_token,
          authorizationDetails: readDetails(),
          resource: 'http://127.0.0.1:1/mcp',
        }),
      ),
    ).toMatch(/^CONFIG_INVALID: .*rar delegation profile/);
    expect(idp.exchangeTimings().length).toBe(timings);
  });
});

describe('the lab IdP in its own profile', () => {
  it('still publishes its RAR types, and refuses an exchange that asks by scope without the RAR', async () => {
    const idp = await startIdp();
    try {
      const meta = (await (await fetch(`${idp.issuer}/.well-known/openid-configuration`)).json()) as Record<
        string,
        unknown
      >;
      expect(meta.authorization_details_types_supported).toEqual(expect.arrayContaining(['postgres']));
      const client = await register(idp);
      const alice = await signIn(idp, {
        username: 'alice',
        password: 'alice-lab-pw',
        clientId: client.clientId,
        clientAssertion: client.assertion,
      });
      // A mismatched profile fails closed, never falls back: a profile is configured, not guessed.
      const exchanger = await exchangerFor(idp, client);
      expect(
        await codeOf(
          exchanger.exchange({
            subjectToken: alice.access_token,
            authorizationDetails: readDetails(),
            audience: idp.vaultAudience,
            credential: 'clinic-read',
          }),
        ),
      ).toMatch(/^IDP_DENIED: .*authorization_details is required/);
    } finally {
      await idp.stop();
    }
  });
});
