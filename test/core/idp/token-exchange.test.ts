import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SignJWT, generateKeyPair } from 'jose';
import { startIdp, type LabIdp } from '../../../lab/idp/index.ts';
import { authorizationDetailsDigest, createTokenExchanger, isNarrowerOrEqual, type ExchangeRequest, type TokenExchanger } from '../../../main/core/idp/token-exchange.ts';
import { AppError } from '../../../common/errors.ts';
import { FaultProxy, labTokenSource } from '../broker/fixtures.ts';
import { decodeJwt } from '../../lab/idp-fixtures.ts';

const CLINIC = 'postgres://lab/clinic';
const read = (extra: Record<string, unknown> = {}) => [
  { type: 'postgres', locations: [CLINIC], actions: ['SELECT'], identifier: 'patients', tables: ['patients'], bounded: true, ...extra },
];

let idp: LabIdp;
let alice: string;
let aliceSub: string;
let bob: string;
let exchanger: TokenExchanger;
const idpLog: string[] = [];

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'resolved';
  } catch (error) {
    return AppError.is(error) ? error.code : `foreign:${String(error)}`;
  }
}

function req(extra: Partial<ExchangeRequest> = {}): ExchangeRequest {
  return { subjectToken: alice, authorizationDetails: read(), audience: 'countersign-vault', ...extra };
}

beforeAll(async () => {
  idp = await startIdp({ log: (l) => idpLog.push(l) });
  const a = await labTokenSource(idp, 'alice');
  alice = a.accessToken;
  aliceSub = a.user()!.sub;
  bob = (await labTokenSource(idp, 'bob')).accessToken;
  exchanger = createTokenExchanger({
    issuer: idp.issuer,
    clientId: 'countersign-desktop',
    allowInsecureHttpForLoopbackOnly: true,
    timeoutMs: 2_000,
    stepUp: { pollIntervalMs: 50, timeoutMs: 3_000 },
  });
});

afterAll(async () => {
  idp.setFault(null);
  await idp.stop();
});

describe('token exchange against the lab IdP', () => {
  it('returns a verified single-call OBO naming the read credential, the user and Countersign as actor', async () => {
    const obo = await exchanger.exchange(req({ expectedSub: aliceSub }));
    expect(obo.vaultRole).toBe('clinic-read');
    expect(obo.sub).toBe(aliceSub);
    expect(obo.exp - obo.iat).toBeLessThanOrEqual(60);
    expect(obo.authorizationDetails).toEqual(read());
    const claims = decodeJwt(obo.token);
    expect(claims.aud).toBe('countersign-vault');
    expect(claims.act).toEqual({ sub: 'countersign-desktop' });
  });

  it('gives every exchange a fresh jti', async () => {
    const a = await exchanger.exchange(req());
    const b = await exchanger.exchange(req());
    expect(a.jti).not.toBe(b.jti);
    expect(a.token).not.toBe(b.token);
  });

  it("turns a tier-4 RAR's denial into IDP_DENIED carrying the IdP's description", async () => {
    const err = await exchanger
      .exchange(req({ authorizationDetails: [{ type: 'postgres', locations: [CLINIC], actions: ['DROP'], identifier: 'notes', tables: ['notes'] }] }))
      .catch((e: unknown) => e);
    expect(AppError.is(err, 'IDP_DENIED')).toBe(true);
    expect((err as AppError).message).toContain('policy tier 4');
  });

  it('denies a user the IdP gives no write right (bob)', async () => {
    const write = [{ type: 'postgres', locations: [CLINIC], actions: ['UPDATE'], identifier: 'notes', tables: ['notes'], bounded: true }];
    expect(await codeOf(exchanger.exchange(req({ subjectToken: bob, authorizationDetails: write })))).toBe('IDP_DENIED');
  });

  it('rejects an OBO for a user other than the one signed in', async () => {
    expect(await codeOf(exchanger.exchange(req({ expectedSub: 'someone-else' })))).toBe('OBO_INVALID');
  });

  it('runs the push step-up for sensitive rows: the push carries the call digest, progress is reported, the OBO records the approval', async () => {
    const progress: string[] = [];
    const approving = (async () => {
      for (let i = 0; i < 100; i += 1) {
        const pending = idp.push.pending();
        if (pending.length > 0) {
          idp.push.approve(pending[0]!.id);
          return pending[0]!;
        }
        await new Promise((r) => setTimeout(r, 20));
      }
      throw new Error('no push arrived');
    })();
    const obo = await exchanger.exchange(req({ authorizationDetails: read({ privileges: ['sensitive'] }), onProgress: (m) => progress.push(m) }));
    const push = await approving;
    expect(JSON.stringify(push.transactionData)).toContain(authorizationDetailsDigest(read({ privileges: ['sensitive'] })));
    expect(obo.vaultRole).toBe('clinic-sensitive');
    expect(obo.steppedUp).toBe(true);
    expect(obo.amr).toContain('push');
    expect(progress.length).toBeGreaterThan(0);
  });

  it('reports a denied push as IDP_STEP_UP_DENIED', async () => {
    const denying = (async () => {
      for (let i = 0; i < 100; i += 1) {
        const p = idp.push.pending()[0];
        if (p) return idp.push.deny(p.id);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const code = await codeOf(exchanger.exchange(req({ authorizationDetails: read({ privileges: ['sensitive'] }) })));
    await denying;
    expect(code).toBe('IDP_STEP_UP_DENIED');
  });

  it('reports an unanswered push as IDP_STEP_UP_TIMEOUT', async () => {
    const quick = createTokenExchanger({ issuer: idp.issuer, clientId: 'countersign-desktop', allowInsecureHttpForLoopbackOnly: true, stepUp: { pollIntervalMs: 50, timeoutMs: 300 } });
    expect(await codeOf(quick.exchange(req({ authorizationDetails: read({ privileges: ['sensitive'] }) })))).toBe('IDP_STEP_UP_TIMEOUT');
    for (const p of idp.push.pending()) idp.push.deny(p.id);
  });

  it('stops waiting for a push when the call is cancelled', async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 200);
    const started = Date.now();
    expect(await codeOf(exchanger.exchange(req({ authorizationDetails: read({ privileges: ['sensitive'] }), signal: controller.signal })))).toBe('CANCELLED');
    expect(Date.now() - started).toBeLessThan(1_000);
    for (const p of idp.push.pending()) idp.push.deny(p.id);
  });

  it('maps an IdP 500 to IDP_UNAVAILABLE, a non-JSON 200 to IDP_BAD_RESPONSE and slowness past the time-out to IDP_UNAVAILABLE', async () => {
    idp.setFault({ status: 500 });
    expect(await codeOf(exchanger.exchange(req()))).toBe('IDP_UNAVAILABLE');
    idp.setFault({ garbage: true });
    expect(await codeOf(exchanger.exchange(req()))).toBe('IDP_BAD_RESPONSE');
    idp.setFault({ delayMs: 3_000 });
    const started = Date.now();
    expect(await codeOf(exchanger.exchange(req()))).toBe('IDP_UNAVAILABLE');
    expect(Date.now() - started).toBeLessThan(2_900);
    idp.setFault(null);
  });

  it('cancels a slow exchange at once when the call is cancelled', async () => {
    idp.setFault({ delayMs: 1_500 });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    const started = Date.now();
    expect(await codeOf(exchanger.exchange(req({ signal: controller.signal })))).toBe('CANCELLED');
    expect(Date.now() - started).toBeLessThan(1_000);
    idp.setFault(null);
  });

  it('maps an IdP that is down to IDP_UNAVAILABLE', async () => {
    const down = createTokenExchanger({ issuer: 'http://127.0.0.1:9', clientId: 'countersign-desktop', allowInsecureHttpForLoopbackOnly: true, timeoutMs: 1_000 });
    expect(await codeOf(down.exchange(req()))).toBe('IDP_UNAVAILABLE');
  });

  it('refuses plain http to a non-loopback IdP even with the loopback switch', () => {
    expect(() => createTokenExchanger({ issuer: 'http://idp.example.com', clientId: 'x', allowInsecureHttpForLoopbackOnly: true })).toThrow(AppError);
  });
});

describe('what the exchanger refuses from the wire', () => {
  let proxy: FaultProxy;
  let viaProxy: TokenExchanger;
  beforeAll(async () => {
    proxy = await FaultProxy.start(idp.issuer);
    // Discovery goes to the real IdP; only the token endpoint's answer is tampered with in flight.
    const { Configuration, discovery, None, allowInsecureRequests } = await import('openid-client');
    const real = await discovery(new URL(idp.issuer), 'countersign-desktop', undefined, None(), { execute: [allowInsecureRequests] });
    const meta = real.serverMetadata();
    const config = new Configuration({ ...(meta as Record<string, unknown>), issuer: meta.issuer, token_endpoint: `${proxy.url}${new URL(meta.token_endpoint!).pathname}` }, 'countersign-desktop', undefined, None());
    viaProxy = createTokenExchanger({ issuer: idp.issuer, clientId: 'countersign-desktop', configuration: config, allowInsecureHttpForLoopbackOnly: true });
  });
  afterAll(async () => {
    await proxy.stop();
  });

  it('refuses an OBO it has already seen (a replayed token-endpoint answer)', async () => {
    let first: string | undefined;
    proxy.set(/token/, {
      kind: 'rewrite',
      body: (text) => {
        first ??= text;
        return first;
      },
    });
    await viaProxy.exchange(req());
    expect(await codeOf(viaProxy.exchange(req()))).toBe('OBO_INVALID');
    proxy.clear();
  });

  it('refuses an OBO signed by a key the IdP does not publish', async () => {
    const { privateKey } = await generateKeyPair('RS256');
    proxy.set(/token/, {
      kind: 'rewrite',
      body: (text) => {
        const json = JSON.parse(text) as Record<string, unknown>;
        return JSON.stringify({ ...json, access_token: forged });
      },
    });
    const real = decodeJwt((await exchanger.exchange(req())).token);
    const forged = await new SignJWT({ ...real, jti: `forged-${Date.now()}` }).setProtectedHeader({ alg: 'RS256', kid: 'forged' }).sign(privateKey);
    expect(await codeOf(viaProxy.exchange(req()))).toBe('OBO_INVALID');
    proxy.clear();
  });

  it('refuses an answer that does not say it issued an access token', async () => {
    proxy.set(/token/, { kind: 'rewrite', body: (text) => JSON.stringify({ ...(JSON.parse(text) as object), issued_token_type: 'urn:ietf:params:oauth:token-type:id_token' }) });
    expect(await codeOf(viaProxy.exchange(req()))).toBe('OBO_INVALID');
    proxy.clear();
  });
});

describe('authorization details comparison (RFC 9396 §7)', () => {
  const asked = read();
  it('accepts equal details', () => expect(isNarrowerOrEqual(read(), asked)).toBe(true));
  it('accepts a narrower grant (fewer tables)', () =>
    expect(isNarrowerOrEqual(read({ tables: [] }), [{ ...asked[0]!, tables: ['patients', 'notes'] }])).toBe(true));
  it('refuses a wider grant (an action not asked for)', () => expect(isNarrowerOrEqual(read({ actions: ['SELECT', 'DELETE'] }), asked)).toBe(false));
  it('refuses a grant that drops a restricting field', () => {
    const { tables: _t, ...withoutTables } = asked[0]!;
    expect(isNarrowerOrEqual([withoutTables], asked)).toBe(false);
  });
  it('refuses a different type or location', () => {
    expect(isNarrowerOrEqual(read({ type: 'api_key' }), asked)).toBe(false);
    expect(isNarrowerOrEqual(read({ locations: ['postgres://other/db'] }), asked)).toBe(false);
  });
  it('refuses an empty grant', () => expect(isNarrowerOrEqual([], asked)).toBe(false));
  it('refuses a grant that adds a field the call did not ask for (a privilege, a function)', () => {
    expect(isNarrowerOrEqual(read({ privileges: ['sensitive'] }), asked)).toBe(false);
    expect(isNarrowerOrEqual(read({ functions: ['pg_read_file'] }), asked)).toBe(false);
  });
});
