import { createRemoteJWKSet, decodeProtectedHeader, generateKeyPair, jwtVerify, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authorizationDetailsDigest, startIdp } from '../../lab/idp/index.ts';
import type { LabIdp } from '../../lab/idp/index.ts';
import {
  CLINIC,
  clientKey,
  decodeJwt,
  dpopKey,
  exchange,
  postForm,
  readDetails,
  signIn,
  TE,
} from './idp-fixtures.ts';
import type { TokenResponse } from './idp-fixtures.ts';

// RFC 8693 token exchange at the lab IdP, over real sockets: the policy file's outcomes, the
// Verify-style push step-up, DPoP binding, a dynamically registered private_key_jwt client, and
// every rejection the contract lists.

const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const UPSTREAM = 'http://127.0.0.1:40123/mcp';
const digest = (c: string) => `sha256:${c.repeat(64).slice(0, 64)}`;

let idp: LabIdp;
const logs: string[] = [];
const secrets = new Set<string>();
let alice: TokenResponse;
let bob: TokenResponse;

function keep<T extends { access_token?: unknown; refresh_token?: unknown; id_token?: unknown }>(t: T): T {
  for (const v of [t.access_token, t.refresh_token, t.id_token]) if (typeof v === 'string') secrets.add(v);
  return t;
}

async function verifyObo(token: string) {
  const { payload, protectedHeader } = await jwtVerify(token, createRemoteJWKSet(new URL(idp.jwksUri)), {
    issuer: idp.issuer,
    typ: 'at+jwt',
  });
  return { payload, protectedHeader };
}

beforeAll(async () => {
  idp = await startIdp({ log: (l) => logs.push(l) });
  alice = keep(await signIn(idp, { username: 'alice', password: 'alice-lab-pw' }));
  bob = keep(await signIn(idp, { username: 'bob', password: 'bob-lab-pw' }));
});

afterAll(async () => {
  await idp?.stop();
});

describe('allowed exchanges', () => {
  it('turns a read of the clinic into a 60-second OBO for Vault naming clinic-read', async () => {
    const res = await exchange(idp, alice.access_token);
    expect(res.status).toBe(200);
    keep(res.json);
    expect(res.json).toMatchObject({
      issued_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      token_type: 'Bearer',
      expires_in: 60,
      authorization_details: readDetails(),
    });
    const { payload } = await verifyObo(String(res.json.access_token));
    const user = decodeJwt(alice.access_token);
    expect(payload).toMatchObject({
      iss: idp.issuer,
      sub: user.sub,
      aud: 'countersign-vault',
      act: { sub: 'countersign-desktop' },
      client_id: 'countersign-desktop',
      vault_role: 'clinic-read',
      authorization_details: readDetails(),
      acr: 'urn:countersign:acr:pwd',
      auth_time: user.auth_time,
    });
    expect(payload.exp! - payload.iat!).toBe(60);
    expect(payload.cnf).toBeUndefined();
  });

  it('gives every exchange a fresh jti', async () => {
    const a = await exchange(idp, alice.access_token);
    const b = await exchange(idp, alice.access_token);
    keep(a.json);
    keep(b.json);
    expect(decodeJwt(String(a.json.access_token)).jti).not.toBe(decodeJwt(String(b.json.access_token)).jti);
  });

  it('maps a bounded write to clinic-write', async () => {
    const res = await exchange(idp, alice.access_token, {
      details: [{ type: 'postgres', locations: [CLINIC], actions: ['UPDATE'], identifier: 'appointments', tables: ['appointments'], bounded: true }],
    });
    expect(res.status).toBe(200);
    expect(decodeJwt(String(keep(res.json).access_token)).vault_role).toBe('clinic-write');
  });

  it('issues an OBO for a remote MCP tool call whose audience is the upstream URL', async () => {
    const details = [{ type: 'mcp_tool_call', locations: [UPSTREAM], actions: ['call'], identifier: 'echo', argument_digest: digest('a') }];
    const res = await exchange(idp, alice.access_token, { details, resource: UPSTREAM });
    expect(res.status).toBe(200);
    const obo = decodeJwt(String(keep(res.json).access_token));
    expect(obo).toMatchObject({ aud: UPSTREAM, vault_role: 'upstream-call', authorization_details: details });
  });

  it('maps an API key read to upstream-apikey for Vault', async () => {
    const details = [{ type: 'api_key', locations: ['http://127.0.0.1:40124/mcp'], actions: ['read'], identifier: 'apikey-demo' }];
    const res = await exchange(idp, alice.access_token, { details });
    expect(res.status).toBe(200);
    expect(decodeJwt(String(keep(res.json).access_token))).toMatchObject({ aud: 'countersign-vault', vault_role: 'upstream-apikey' });
  });
});

describe('policy denials', () => {
  it.each([
    ['DROP TABLE', [{ type: 'postgres', locations: [CLINIC], actions: ['DROP'], tables: ['patients'] }]],
    ['TRUNCATE', [{ type: 'postgres', locations: [CLINIC], actions: ['TRUNCATE'], tables: ['notes'] }]],
    ['GRANT', [{ type: 'postgres', locations: [CLINIC], actions: ['GRANT'], tables: ['patients'] }]],
    ['an unbounded DELETE', [{ type: 'postgres', locations: [CLINIC], actions: ['DELETE'], tables: ['notes'], bounded: false }]],
    ['an unknown action', [{ type: 'postgres', locations: [CLINIC], actions: ['SELECT', 'LISTEN'], tables: ['patients'] }]],
  ])('refuses %s with access_denied and a readable tier-4 reason', async (_name, details) => {
    const res = await exchange(idp, alice.access_token, { details });
    expect(res.status).toBe(400);
    expect(res.json.error).toBe('access_denied');
    expect(res.json.error_description).toMatch(/^policy tier 4: /);
    expect(res.json.access_token).toBeUndefined();
  });

  it('refuses a user without the right, saying who and what', async () => {
    const res = await exchange(idp, bob.access_token, {
      details: [{ type: 'postgres', locations: [CLINIC], actions: ['INSERT'], identifier: 'notes', tables: ['notes'], bounded: true }],
    });
    expect(res.status).toBe(400);
    expect(res.json).toMatchObject({ error: 'access_denied' });
    expect(res.json.error_description).toContain('bob is not allowed clinic-write');
  });

  it('refuses bob sensitive rows without starting a push', async () => {
    const before = idp.push.pending().length;
    const res = await exchange(idp, bob.access_token, { details: readDetails({ privileges: ['sensitive'] }) });
    expect(res.json.error).toBe('access_denied');
    expect(idp.push.pending().length).toBe(before);
  });

  it('lets bob read the clinic', async () => {
    const res = await exchange(idp, bob.access_token);
    expect(res.status).toBe(200);
    keep(res.json);
  });
});

describe('rejections', () => {
  it('rejects a subject token signed by a key it does not hold', async () => {
    const { privateKey } = await generateKeyPair('ES256');
    const forged = await new SignJWT(decodeJwt(alice.access_token))
      .setProtectedHeader({ ...decodeProtectedHeader(alice.access_token), alg: 'ES256' })
      .sign(privateKey);
    const res = await exchange(idp, forged);
    expect(res.json).toMatchObject({ error: 'invalid_request', error_description: 'the subject token was not issued by this identity provider' });
  });

  it('rejects a subject token that is not an access token for the app (an OBO)', async () => {
    const obo = String(keep((await exchange(idp, alice.access_token)).json).access_token);
    const res = await exchange(idp, obo);
    expect(res.json.error).toBe('invalid_request');
    expect(res.json.error_description).toMatch(/not an access token/);
  });

  it('rejects an expired subject token', async () => {
    idp.setAccessTokenTtl(1);
    let shortLived: TokenResponse;
    try {
      shortLived = keep(await signIn(idp, { username: 'alice', password: 'alice-lab-pw' }));
    } finally {
      idp.setAccessTokenTtl(null);
    }
    const { exp } = decodeJwt(shortLived.access_token) as { exp: number };
    await new Promise((r) => setTimeout(r, Math.max(0, exp * 1000 - Date.now()) + 1100));
    const res = await exchange(idp, shortLived.access_token);
    expect(res.json).toMatchObject({ error: 'invalid_request', error_description: 'the subject token has expired: sign in again' });
  });

  it('rejects an unknown authorization details type', async () => {
    const res = await exchange(idp, alice.access_token, { details: [{ type: 'payment_initiation', actions: ['pay'] }] });
    expect(res.status).toBe(400);
    expect(res.json.error).toBe('invalid_authorization_details');
  });

  it('maps a SELECT that touches no table (tables: []) to clinic-read', async () => {
    const res = await exchange(idp, alice.access_token, {
      details: [{ type: 'postgres', locations: [CLINIC], actions: ['SELECT'], tables: [], bounded: false, statement_digest: digest('c') }],
    });
    expect(res.status).toBe(200);
    expect(decodeJwt(String(keep(res.json).access_token)).vault_role).toBe('clinic-read');
  });

  it.each(['INSERT', 'UPDATE', 'DELETE'])('rejects a %s whose tables list is empty: a write always touches a table', async (action) => {
    const res = await exchange(idp, alice.access_token, {
      details: [{ type: 'postgres', locations: [CLINIC], actions: [action], tables: [], bounded: true }],
    });
    expect(res.status).toBe(400);
    expect(res.json.error).toBe('invalid_authorization_details');
  });

  it('rejects a postgres entry that does not name the tables it touches', async () => {
    const res = await exchange(idp, alice.access_token, {
      details: [{ type: 'postgres', locations: [CLINIC], actions: ['SELECT'] }],
    });
    expect(res.json.error).toBe('invalid_authorization_details');
  });

  it('rejects an audience not allowed for the client', async () => {
    const res = await exchange(idp, alice.access_token, { audience: 'https://evil.example' });
    expect(res.json).toMatchObject({ error: 'invalid_target', error_description: 'this audience is not allowed for this client' });
  });

  it('rejects a resource that is not the location the tool call names', async () => {
    const details = [{ type: 'mcp_tool_call', locations: [UPSTREAM], actions: ['call'], identifier: 'echo', argument_digest: digest('b') }];
    const res = await exchange(idp, alice.access_token, { details, resource: 'http://127.0.0.1:40999/mcp' });
    expect(res.json.error).toBe('invalid_target');
  });

  it('rejects a database call asked for an upstream audience', async () => {
    const res = await exchange(idp, alice.access_token, { resource: UPSTREAM });
    expect(res.json.error).toBe('invalid_target');
  });

  it('rejects actor tokens and other subject token types', async () => {
    const a = await exchange(idp, alice.access_token, { extra: { subject_token_type: 'urn:ietf:params:oauth:token-type:id_token' } });
    expect(a.json.error).toBe('invalid_request');
    const b = await exchange(idp, alice.access_token, {
      extra: { actor_token: alice.access_token, actor_token_type: 'urn:ietf:params:oauth:token-type:access_token' },
    });
    expect(b.json.error).toBe('invalid_request');
  });
});

describe('DPoP', () => {
  let key: Awaited<ReturnType<typeof dpopKey>>;
  let bound: TokenResponse;

  beforeAll(async () => {
    key = await dpopKey();
    bound = keep(await signIn(idp, { username: 'alice', password: 'alice-lab-pw', dpop: key }));
  });

  it('binds the sign-in to the proof key', () => {
    expect(bound.token_type).toBe('DPoP');
    expect(decodeJwt(bound.access_token).cnf).toEqual({ jkt: key.thumbprint });
  });

  it('issues a DPoP-bound OBO when the exchange carries a proof made with the same key', async () => {
    const res = await exchange(idp, bound.access_token, { dpop: key });
    expect(res.status).toBe(200);
    expect(res.json.token_type).toBe('DPoP');
    const { payload } = await verifyObo(String(keep(res.json).access_token));
    expect(payload.cnf).toEqual({ jkt: key.thumbprint });
  });

  it('rejects a DPoP-bound subject token without a proof', async () => {
    const res = await exchange(idp, bound.access_token);
    expect(res.json.error).toBe('invalid_dpop_proof');
  });

  it('rejects a DPoP-bound subject token with a proof made by another key', async () => {
    const res = await exchange(idp, bound.access_token, { dpop: await dpopKey() });
    expect(res.json.error).toBe('invalid_dpop_proof');
  });

  it('rejects a proof made for another endpoint', async () => {
    const proof = await key.proof('POST', `${idp.issuer}/elsewhere`);
    const res = await postForm(
      idp.tokenEndpoint,
      {
        grant_type: TE,
        client_id: idp.nativeClientId,
        subject_token: bound.access_token,
        subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
        authorization_details: JSON.stringify(readDetails()),
        audience: idp.vaultAudience,
      },
      { dpop: proof },
    );
    expect(res.json.error).toBe('invalid_dpop_proof');
  });

  it('rejects a replayed proof', async () => {
    const proof = await key.proof('POST', idp.tokenEndpoint);
    const form = {
      grant_type: TE,
      client_id: idp.nativeClientId,
      subject_token: bound.access_token,
      subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      authorization_details: JSON.stringify(readDetails()),
      audience: idp.vaultAudience,
    };
    const first = await postForm(idp.tokenEndpoint, form, { dpop: proof });
    expect(first.status).toBe(200);
    keep(first.json);
    const again = await postForm(idp.tokenEndpoint, form, { dpop: proof });
    expect(again.status).toBe(400);
    expect(again.json.error).toBe('invalid_dpop_proof');
    expect(again.json.access_token).toBeUndefined();
  });

  it('binds the OBO of an unbound user token when the client sends a proof', async () => {
    const res = await exchange(idp, alice.access_token, { dpop: key });
    expect(res.json.token_type).toBe('DPoP');
    expect(decodeJwt(String(keep(res.json).access_token)).cnf).toEqual({ jkt: key.thumbprint });
  });
});

describe('Verify-style push step-up', () => {
  const sensitive = readDetails({ privileges: ['sensitive'], statement_digest: digest('c') });

  async function challenge(details: unknown = sensitive) {
    const res = await exchange(idp, alice.access_token, { details });
    expect(res.status).toBe(200);
    expect(res.json.scope).toBe('mfa_challenge');
    const token = String(res.json.access_token);
    secrets.add(token);
    const auth = { authorization: `Bearer ${token}` };
    const factors = (await (await fetch(`${idp.issuer}/v2.0/factors`, { headers: auth })).json()) as {
      factors: { id: string; type: string; subType: string; references: { authenticatorId: string } }[];
    };
    const factor = factors.factors.find((f) => f.type === 'signature' && f.subType === 'userPresence')!;
    return { token, auth, factor };
  }

  async function startPush(c: Awaited<ReturnType<typeof challenge>>, transactionData: unknown) {
    return fetch(`${idp.issuer}/v1.0/authenticators/${c.factor.references.authenticatorId}/verifications`, {
      method: 'POST',
      headers: { ...c.auth, 'content-type': 'application/json' },
      body: JSON.stringify({
        transactionData,
        pushNotification: { send: true, title: 'Countersign', message: 'Approve' },
        authenticationMethods: [{ id: c.factor.id, methodType: 'signature' }],
        logic: 'OR',
        expiresIn: 120,
      }),
    });
  }

  async function poll(c: Awaited<ReturnType<typeof challenge>>, transactionUri: string) {
    return (await (await fetch(`${transactionUri}?returnJwt=true`, { headers: c.auth })).json()) as { state: string; assertion?: string };
  }

  function secondLeg(assertion: string, details: unknown = sensitive) {
    return postForm(idp.tokenEndpoint, {
      grant_type: JWT_BEARER,
      client_id: idp.nativeClientId,
      assertion,
      scope: 'openid',
      authorization_details: JSON.stringify(details),
    });
  }

  it('answers a sensitive read with a challenge, and an approved push yields an OBO that records it', async () => {
    const c = await challenge();
    const started = await startPush(c, { message: 'Read VIP patients', additionalData: [{ name: 'digest', value: digest('c') }] });
    expect(started.status).toBe(202);
    const { transactionUri, id } = (await started.json()) as { transactionUri: string; id: string };
    expect((await poll(c, transactionUri)).state).toBe('PENDING');

    const pending = idp.push.pending().find((p) => p.id === id);
    expect(pending).toMatchObject({ user: 'alice' });
    expect(JSON.stringify(pending!.transactionData)).toContain(digest('c'));
    idp.push.approve(id);

    const done = await poll(c, transactionUri);
    expect(done.state).toBe('VERIFY_SUCCESS');
    secrets.add(done.assertion!);
    const res = await secondLeg(done.assertion!);
    expect(res.status).toBe(200);
    const { payload } = await verifyObo(String(keep(res.json).access_token));
    expect(payload).toMatchObject({
      aud: 'countersign-vault',
      vault_role: 'clinic-sensitive',
      amr: ['mfa', 'push'],
      txn: id,
      authorization_details: sensitive,
      act: { sub: 'countersign-desktop' },
    });

    const replay = await secondLeg(done.assertion!);
    expect(replay.json.error).toBe('invalid_grant');
  });

  it('gives nothing for a denied push', async () => {
    const c = await challenge();
    const { transactionUri, id } = (await (await startPush(c, { message: 'x', digest: digest('c') })).json()) as { transactionUri: string; id: string };
    idp.push.deny(id);
    const done = await poll(c, transactionUri);
    expect(done).toMatchObject({ state: 'USER_DENIED' });
    expect(done.assertion).toBeUndefined();
  });

  it('refuses a push whose transaction data does not carry the call digest', async () => {
    const c = await challenge();
    const res = await startPush(c, { message: 'Approve something' });
    expect(res.status).toBe(400);
  });

  it('accepts the digest of the whole authorization details when the call names none of its own', async () => {
    const details = readDetails({ privileges: ['sensitive'] });
    const c = await challenge(details);
    expect((await startPush(c, { message: 'x', digest: digest('c') })).status).toBe(400);
    expect((await startPush(c, { message: 'x', digest: authorizationDetailsDigest(details) })).status).toBe(202);
  });

  it('refuses the second leg when the authorization details differ from what was approved', async () => {
    const c = await challenge();
    const { transactionUri, id } = (await (await startPush(c, { digest: digest('c') })).json()) as { transactionUri: string; id: string };
    idp.push.approve(id);
    const { assertion } = await poll(c, transactionUri);
    secrets.add(assertion!);
    const res = await secondLeg(assertion!, readDetails({ privileges: ['sensitive'], statement_digest: digest('d') }));
    expect(res.json.error).toBe('invalid_grant');
  });

  it('refuses the factor endpoints without a challenge token', async () => {
    const res = await fetch(`${idp.issuer}/v2.0/factors`, { headers: { authorization: 'Bearer not-a-challenge' } });
    expect(res.status).toBe(401);
  });

  it('refuses an assertion this IdP did not sign', async () => {
    const { privateKey } = await generateKeyPair('ES256');
    const forged = await new SignJWT({ txn: 'x', sub: 's', jti: 'j' })
      .setProtectedHeader({ alg: 'ES256', typ: 'JWT' })
      .setIssuer(idp.issuer)
      .setAudience(idp.tokenEndpoint)
      .setExpirationTime('1m')
      .sign(privateKey);
    const res = await secondLeg(forged);
    expect(res.json.error).toBe('invalid_grant');
  });
});

describe('a dynamically registered private_key_jwt client', () => {
  it('registers, signs in with its key, and exchanges as its own actor', async () => {
    const key = await clientKey();
    const reg = await fetch(`${idp.issuer}/reg`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        application_type: 'native',
        client_name: 'Countersign on this machine',
        redirect_uris: ['http://127.0.0.1/callback'],
        token_endpoint_auth_method: 'private_key_jwt',
        token_endpoint_auth_signing_alg: 'ES256',
        jwks: key.jwks,
        grant_types: ['authorization_code', 'refresh_token', TE],
        response_types: ['code'],
      }),
    });
    expect(reg.status).toBe(201);
    const client = (await reg.json()) as { client_id: string; registration_access_token: string };
    secrets.add(client.registration_access_token);
    const assertion = () => key.assertion(client.client_id, idp.issuer);

    const tokens = keep(await signIn(idp, { username: 'alice', password: 'alice-lab-pw', clientId: client.client_id, clientAssertion: assertion }));
    const res = await exchange(idp, tokens.access_token, { clientId: client.client_id, clientAssertion: assertion });
    expect(res.status).toBe(200);
    expect(decodeJwt(String(keep(res.json).access_token))).toMatchObject({ act: { sub: client.client_id }, client_id: client.client_id });

    const unauthenticated = await exchange(idp, tokens.access_token, { clientId: client.client_id });
    expect(unauthenticated.json.error).toBe('invalid_client');
    const otherClient = await exchange(idp, tokens.access_token);
    expect(otherClient.json).toMatchObject({ error: 'invalid_request', error_description: 'the subject token was issued to another client' });
  });

  it('refuses to register a client without a key (token_endpoint_auth_method none)', async () => {
    const reg = await fetch(`${idp.issuer}/reg`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ application_type: 'native', redirect_uris: ['http://127.0.0.1/callback'], token_endpoint_auth_method: 'none' }),
    });
    expect(reg.status).toBe(400);
    expect(((await reg.json()) as { error: string }).error).toBe('invalid_client_metadata');
  });
});

describe('measurements and hygiene', () => {
  it('measures the exchange latency', async () => {
    const wall: number[] = [];
    for (let i = 0; i < 30; i++) {
      const t0 = performance.now();
      const res = await exchange(idp, alice.access_token);
      wall.push(performance.now() - t0);
      keep(res.json);
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    console.log(
      `idp token exchange: median ${median(wall).toFixed(1)} ms round trip, ${median(idp.exchangeTimings()).toFixed(1)} ms in the handler (n=${wall.length})`,
    );
    expect(wall.length).toBe(30);
  });

  it('never writes a token, assertion or challenge into its log', () => {
    expect(secrets.size).toBeGreaterThan(20);
    const all = logs.join('\n');
    expect(all).toContain('obo issued');
    for (const s of secrets) expect(all.includes(s)).toBe(false);
    for (const user of idp.users) expect(all.includes(user.password)).toBe(false);
  });
});
