/**
 * The IdP's JWKS as the core verifies OBOs with it, against the lab IdP over real sockets: a key
 * rotation is followed on the first call after it, and unknown kids (forged tokens) cannot make the
 * core hammer the IdP.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKeyPair, jwtVerify, SignJWT } from 'jose';
import { AppError } from '../../../common/errors.ts';
import { startIdp, type LabIdp } from '../../../lab/idp/index.ts';
import { createIdpJwks } from '../../../main/core/idp/jwks.ts';
import { createTokenExchanger } from '../../../main/core/idp/token-exchange.ts';
import { labTokenSource } from '../broker/fixtures.ts';

const read = [{ type: 'postgres', locations: ['postgres://lab/clinic'], actions: ['SELECT'], identifier: 'patients', tables: ['patients'], bounded: true }];

let idp: LabIdp;
let alice: string;

beforeAll(async () => {
  idp = await startIdp();
  alice = (await labTokenSource(idp, 'alice')).accessToken;
});

afterAll(async () => {
  await idp?.stop();
});

/** A token signed by a key the IdP never published, under a made-up kid. */
async function forged(): Promise<string> {
  const { privateKey } = await generateKeyPair('ES256');
  return new SignJWT({ sub: 'mallory' })
    .setProtectedHeader({ alg: 'ES256', kid: randomUUID() })
    .setIssuer(idp.issuer)
    .setIssuedAt()
    .setExpirationTime('60s')
    .sign(privateKey);
}

function countingFetch(): { fetch: (url: string, init: RequestInit) => Promise<Response>; count: () => number } {
  let n = 0;
  return {
    fetch: (url, init) => {
      n += 1;
      return fetch(url, init);
    },
    count: () => n,
  };
}

describe('following a key rotation', () => {
  it('verifies the first OBO signed with the new key right after the IdP rotates, with one refetch', async () => {
    const exchanger = createTokenExchanger({ issuer: idp.issuer, clientId: 'countersign-desktop', allowInsecureHttpForLoopbackOnly: true, jwksCooldownMs: 1_000 });
    await exchanger.exchange({ subjectToken: alice, authorizationDetails: read, audience: 'countersign-vault' }); // keys fetched and cached
    await idp.rotateKeys();
    const t0 = performance.now();
    const obo = await exchanger.exchange({ subjectToken: alice, authorizationDetails: read, audience: 'countersign-vault' });
    const ms = performance.now() - t0;
    expect(obo.vaultRole).toBe('clinic-read');
    expect(ms).toBeLessThan(2_500); // at most one cooldown of waiting, never jose's 30 s
  });
});

describe('unknown kids', () => {
  it('costs the IdP at most one JWKS fetch per cooldown however many forged kids arrive, and none of them verifies', async () => {
    const counter = countingFetch();
    const jwks = createIdpJwks(idp.jwksUri, { cooldownMs: 400, fetch: counter.fetch });
    const exchanger = createTokenExchanger({ issuer: idp.issuer, clientId: 'countersign-desktop', allowInsecureHttpForLoopbackOnly: true });
    const real = await exchanger.exchange({ subjectToken: alice, authorizationDetails: read, audience: 'countersign-vault' });
    await jwtVerify(real.token, jwks, { issuer: idp.issuer });
    expect(counter.count()).toBe(1);

    const t0 = performance.now();
    const tokens = await Promise.all(Array.from({ length: 200 }, forged));
    const outcomes = await Promise.all(tokens.map((t) => jwtVerify(t, jwks, { issuer: idp.issuer }).then(() => 'verified', (e: { code?: string }) => e.code)));
    const elapsed = performance.now() - t0;
    expect(new Set(outcomes)).toEqual(new Set(['ERR_JWKS_NO_MATCHING_KEY']));
    expect(counter.count() - 1).toBeLessThanOrEqual(1 + Math.ceil(elapsed / 400));
    expect(counter.count() - 1).toBeLessThanOrEqual(3);
    expect(jwks.fetches).toBe(counter.count());

    // The real key still verifies without another fetch.
    const before = counter.count();
    await jwtVerify(real.token, jwks, { issuer: idp.issuer });
    expect(counter.count()).toBe(before);
  });

  it('stops waiting for the next refetch when the call is cancelled', async () => {
    const controller = new AbortController();
    const jwks = createIdpJwks(idp.jwksUri, { cooldownMs: 10_000, fetch: (u, i) => fetch(u, i), signal: () => controller.signal });
    const exchanger = createTokenExchanger({ issuer: idp.issuer, clientId: 'countersign-desktop', allowInsecureHttpForLoopbackOnly: true });
    const real = await exchanger.exchange({ subjectToken: alice, authorizationDetails: read, audience: 'countersign-vault' });
    await jwtVerify(real.token, jwks); // the first fetch: the forged kid below misses inside the cooldown
    const t0 = performance.now();
    const pending = jwtVerify(await forged(), jwks).catch((e: unknown) => e);
    setTimeout(() => controller.abort(), 50);
    const error = await pending;
    expect(AppError.is(error, 'CANCELLED')).toBe(true);
    expect(performance.now() - t0).toBeLessThan(2_000);
  });

  it('reports an IdP whose JWKS cannot be fetched as IDP_UNAVAILABLE, not as a bad token', async () => {
    const jwks = createIdpJwks('http://127.0.0.1:9/jwks', { fetch: (u, i) => fetch(u, i) });
    const error = await jwtVerify(await forged(), jwks).catch((e: unknown) => e);
    expect(AppError.is(error, 'IDP_UNAVAILABLE')).toBe(true);
  });
});
