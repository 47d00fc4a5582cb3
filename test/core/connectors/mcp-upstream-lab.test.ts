/**
 * The remote-MCP connector against the real lab: the lab IdP signs the user in (over HTTP, as the sign-in
 * module would) and exchanges per call with the core's own token exchanger; the lab upstream checks
 * what it receives.
 */
import { webcrypto } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { calculateJwkThumbprint, exportJWK, SignJWT } from 'jose';
import { createHash, randomUUID } from 'node:crypto';
import { AppError } from '../../../common/errors.ts';
import { startIdp } from '../../../lab/idp/index.ts';
import type { LabIdp } from '../../../lab/idp/index.ts';
import { startUpstream } from '../../../lab/upstream/index.ts';
import type { Upstream } from '../../../lab/upstream/index.ts';
import { createTokenExchanger } from '../../../main/core/idp/token-exchange.ts';
import type { TokenExchanger } from '../../../main/core/idp/token-exchange.ts';
import { McpUpstreamConnector } from '../../../main/core/connectors/mcp-upstream/index.ts';
import type { CredentialBroker } from '../../../main/core/connectors/mcp-upstream/index.ts';
import type { ExecuteContext } from '../../../main/core/connectors/types.ts';
import { decodeJwt, signIn } from '../../lab/idp-fixtures.ts';
import type { DpopKey } from '../../lab/idp-fixtures.ts';

let idp: LabIdp;
let upstream: Upstream;
let exchanger: TokenExchanger;
const closers: Array<() => Promise<unknown>> = [];

interface User {
  accessToken: string;
  sub: string;
  key?: webcrypto.CryptoKeyPair;
}

async function login(username: string, password: string, o: { otp?: string; key?: webcrypto.CryptoKeyPair } = {}): Promise<User> {
  const dpop = o.key ? await asFixtureKey(o.key) : undefined;
  const tokens = await signIn(idp, {
    username,
    password,
    ...(o.otp ? { otp: o.otp, acrValues: 'urn:countersign:acr:mfa' } : {}),
    ...(dpop ? { dpop } : {}),
  });
  const accessToken = tokens.access_token as string;
  return { accessToken, sub: String(decodeJwt(accessToken).sub), ...(o.key ? { key: o.key } : {}) };
}

/** The sign-in fixture's DPoP interface over a WebCrypto key pair, so sign-in, exchange and upstream share one key. */
async function asFixtureKey(key: webcrypto.CryptoKeyPair): Promise<DpopKey> {
  const publicJwk = await exportJWK(key.publicKey);
  return {
    publicJwk,
    thumbprint: await calculateJwkThumbprint(publicJwk),
    proof: (htm, htu, accessToken) =>
      new SignJWT({ htm, htu, jti: randomUUID(), ...(accessToken ? { ath: createHash('sha256').update(accessToken).digest('base64url') } : {}) })
        .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: publicJwk })
        .setIssuedAt()
        .sign(key.privateKey),
  };
}

function brokerFor(user: User, used: string[] = []): CredentialBroker {
  return async (plan, use, signal) => {
    const obo = await exchanger.exchange({
      subjectToken: user.accessToken,
      authorizationDetails: plan.authorizationDetails,
      ...(plan.resource ? { resource: plan.resource } : {}),
      ...(plan.audience ? { audience: plan.audience } : {}),
      ...(user.key ? { dpopKeyPair: user.key } : {}),
      expectedSub: user.sub,
      signal,
    });
    used.push(obo.token);
    return use({ obo: obo.token, credential: { kind: 'obo' } });
  };
}

function connectorFor(user: User): McpUpstreamConnector {
  const c = new McpUpstreamConnector(
    { name: 'lab', url: upstream.url, issuer: idp.issuer, allowInsecureHttpForLoopbackOnly: true },
    { withCredential: brokerFor(user), dpopKeyPair: () => user.key },
  );
  closers.push(() => c.close());
  return c;
}

/** One call the way the broker runs it: plan, exchange for this call, execute with the OBO. */
async function call(c: McpUpstreamConnector, user: User, tool: string, args: Record<string, unknown>, used: string[] = []) {
  const plan = await c.plan(tool, args);
  return brokerFor(user, used)(
    plan,
    ({ obo, credential }) => {
      const ctx: ExecuteContext = {
        plan,
        args,
        obo,
        oboJti: String(decodeJwt(obo).jti),
        credential,
        signal: AbortSignal.timeout(20_000),
        progress: () => {},
        note: () => {},
      };
      return c.execute(ctx);
    },
    AbortSignal.timeout(20_000),
  );
}

beforeAll(async () => {
  idp = await startIdp();
  upstream = await startUpstream({ issuer: idp.issuer, jwksUri: idp.jwksUri });
  exchanger = createTokenExchanger({ issuer: idp.issuer, clientId: idp.nativeClientId, allowInsecureHttpForLoopbackOnly: true });
});
afterAll(async () => {
  for (const close of closers.reverse()) await close();
  await upstream?.stop();
  await idp?.stop();
});

describe('with the lab IdP', () => {
  it('lists and calls a tool; the upstream saw its own audience, the user, Countersign as actor, and a fresh jti per call', async () => {
    const alice = await login('alice', 'alice-lab-pw');
    const c = connectorFor(alice);
    expect((await c.listTools()).map((t) => t.name)).toContain('lab__get_weather');
    const first = await call(c, alice, 'lab__get_weather', { city: 'Lyon' });
    await call(c, alice, 'lab__get_weather', { city: 'Lille' });
    expect(JSON.stringify(first.content)).toContain(`Weather in Lyon for ${alice.sub}`);
    const [a, b] = upstream.calls().slice(-2);
    expect(a?.jti).not.toBe(b?.jti);
    const seen = upstream.seen().find((s) => s.jti === b?.jti);
    expect(seen).toMatchObject({ aud: upstream.url, sub: alice.sub, act: { sub: 'countersign-desktop' } });
  });

  it("sees the upstream refuse the user's own access token", async () => {
    const alice = await login('alice', 'alice-lab-pw');
    const c = connectorFor(alice);
    const plan = await c.plan('lab__get_weather', { city: 'Lyon' });
    const error = await c
      .execute({
        plan,
        args: { city: 'Lyon' },
        obo: alice.accessToken,
        oboJti: 'none',
        credential: { kind: 'obo' },
        signal: AbortSignal.timeout(10_000),
        progress: () => {},
        note: () => {},
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).code).toBe('UPSTREAM_DENIED');
  });

  it('gets IDP_STEP_UP_REQUIRED for an MFA-guarded tool, succeeds after an MFA login, and the upstream refuses the replayed jti', async () => {
    const alice = await login('alice', 'alice-lab-pw');
    const c = connectorFor(alice);
    const args = { payment_id: 'P-9', amount: 99 };
    const error = (await call(c, alice, 'lab__approve_payment', args).catch((e: unknown) => e)) as AppError;
    expect(error.code).toBe('IDP_STEP_UP_REQUIRED');
    expect(error.stepUp?.acrValues).toBe('urn:countersign:acr:mfa');

    const stronger = await login('alice', 'alice-lab-pw', { otp: '246810' });
    expect(decodeJwt(stronger.accessToken).acr).toBe('urn:countersign:acr:mfa');
    const used: string[] = [];
    const result = await call(c, stronger, 'lab__approve_payment', args, used);
    expect(JSON.stringify(result.content)).toContain('Payment P-9 of 99 approved');

    const plan = await c.plan('lab__approve_payment', args);
    const replay = await c
      .execute({
        plan,
        args,
        obo: used[0] as string,
        oboJti: 'replay',
        credential: { kind: 'obo' },
        signal: AbortSignal.timeout(10_000),
        progress: () => {},
        note: () => {},
      })
      .catch((e: unknown) => e);
    expect((replay as AppError).code).toBe('UPSTREAM_DENIED');
  });

  it('calls with a DPoP-bound OBO and a proof by the same key', async () => {
    const key = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
    const alice = await login('alice', 'alice-lab-pw', { key });
    const c = connectorFor(alice);
    const result = await call(c, alice, 'lab__get_weather', { city: 'Tromsø' });
    expect(JSON.stringify(result.content)).toContain('Tromsø');
    expect(upstream.seen().at(-1)?.dpop).toBe(true);
  });

  it('leaves bob, who has no upstream right, without the tool list: the IdP denies the exchange', async () => {
    const bob = await login('bob', 'bob-lab-pw');
    const c = connectorFor(bob);
    const error = (await c.listTools().catch((e: unknown) => e)) as AppError;
    expect(error.code).toBe('IDP_DENIED');
  });
});
