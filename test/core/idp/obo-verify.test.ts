/**
 * The OBO check's replay memory: a jti it accepted is refused again for as long as that OBO lives,
 * whatever the order its neighbours expire in, and let go once it has expired. The tokens are
 * signed for real (jose, ES256) and checked by the verifier the exchanger uses; the clock is faked
 * (Date only), for the verifier and jose's `exp` check alike.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { SignJWT, generateKeyPair, type JWTPayload } from 'jose';
import type { webcrypto } from 'node:crypto';
import { AppError } from '../../../common/errors.ts';
import { OboVerifier } from '../../../main/core/idp/obo-verify.ts';
import type { ExchangeRequest } from '../../../main/core/idp/exchange-types.ts';
import type { IdpJwks } from '../../../main/core/idp/jwks.ts';

const ISSUER = 'https://idp.example';
const CLIENT = 'countersign-desktop';
const DETAILS = [{ type: 'postgres', locations: ['postgres://lab/clinic'], actions: ['SELECT'], identifier: 'patients', tables: ['patients'], bounded: true }];
const T0 = Date.parse('2026-12-07T09:00:00Z');

let keys: IdpJwks;
let sign: (claims: JWTPayload) => Promise<string>;

beforeAll(async () => {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  keys = Object.assign(async () => publicKey as webcrypto.CryptoKey, { fetches: 0 });
  sign = (claims) => new SignJWT(claims).setProtectedHeader({ alg: 'ES256' }).sign(privateKey);
  vi.useFakeTimers({ toFake: ['Date'] });
});

afterAll(() => {
  vi.useRealTimers();
});

/** An OBO as the IdP issues it, at the faked now, living `lifeS` seconds. */
async function obo(jti: string, lifeS = 60): Promise<string> {
  const iat = Math.floor(Date.now() / 1000);
  return sign({ iss: ISSUER, aud: 'countersign-vault', sub: 'alice', jti, iat, exp: iat + lifeS, act: { sub: CLIENT }, vault_role: 'clinic-read', authorization_details: DETAILS });
}

const request: ExchangeRequest = { subjectToken: 'unused', authorizationDetails: DETAILS, audience: 'countersign-vault', expectedSub: 'alice' };

function check(verifier: OboVerifier, token: string): Promise<string> {
  return verifier
    .verify({ token, tokenType: 'Bearer', issuer: ISSUER, clientId: CLIENT, keys: () => keys, steppedUp: false }, request, (fn) => fn())
    .then(
      (o) => `accepted ${o.jti}`,
      (e: unknown) => (AppError.is(e) ? `${e.code}: ${e.message}` : `foreign: ${String(e)}`),
    );
}

const verifierFor = (maxLifetimeS = 60) => new OboVerifier({ delegation: 'rar', scopeFor: (c) => `vault:${c}`, clockSkewS: 5, maxLifetimeS });

describe('the OBO check remembers the jtis it accepted', () => {
  it('refuses a jti again, in a token signed anew, for as long as the first OBO lives, and lets it go only after', async () => {
    vi.setSystemTime(T0);
    const v = verifierFor();
    expect(await check(v, await obo('jti-a'))).toBe('accepted jti-a');
    vi.setSystemTime(T0 + 30_000);
    expect(await check(v, await obo('jti-a'))).toMatch(/^OBO_INVALID: .*repeated jti/);
    // Past the first OBO's exp and the clock skew: it can no longer be used anywhere, so neither can a replay of it.
    vi.setSystemTime(T0 + 59_000);
    expect(await check(v, await obo('jti-a'))).toMatch(/^OBO_INVALID: .*repeated jti/);
    vi.setSystemTime(T0 + 66_000);
    expect(await check(v, await obo('jti-a'))).toBe('accepted jti-a');
  });

  it('never lets go of a live jti, whatever the order its neighbours expire in', async () => {
    vi.setSystemTime(T0);
    const v = verifierFor(300);
    expect(await check(v, await obo('short-1', 60))).toBe('accepted short-1');
    expect(await check(v, await obo('long', 300))).toBe('accepted long');
    expect(await check(v, await obo('short-2', 60))).toBe('accepted short-2');
    for (const at of [100_000, 200_000, 290_000]) {
      vi.setSystemTime(T0 + at);
      expect(await check(v, await obo('long', 60))).toMatch(/^OBO_INVALID: .*repeated jti/);
    }
  });

  it('lets expired jtis go while it keeps refusing a live one among many', async () => {
    vi.setSystemTime(T0);
    const v = verifierFor();
    for (let i = 0; i < 50; i++) expect(await check(v, await obo(`old-${i}`))).toBe(`accepted old-${i}`);
    vi.setSystemTime(T0 + 40_000);
    expect(await check(v, await obo('live'))).toBe('accepted live');
    vi.setSystemTime(T0 + 70_000);
    expect(await check(v, await obo('old-7'))).toBe('accepted old-7');
    expect(await check(v, await obo('live'))).toMatch(/^OBO_INVALID: .*repeated jti/);
  });
});
