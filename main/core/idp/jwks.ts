/**
 * The IdP's signing keys (RFC 7517 JWK Set at `jwks_uri`), for verifying OBO tokens. jose's
 * `createRemoteJWKSet` refetches on an unknown `kid` only after a 30 s cooldown and otherwise fails at
 * once, so right after the IdP rotates its key every call fails for up to 30 s. Here an unknown `kid`
 * waits for the next permitted refetch instead: at most one fetch per `cooldownMs` (single-flight),
 * so a flood of tokens naming made-up kids costs the IdP one request per cooldown, and a genuine
 * rotation costs one call at most `cooldownMs` of waiting. Key selection itself is jose's
 * `createLocalJWKSet`.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { createLocalJWKSet, errors, type JSONWebKeySet, type JWSHeaderParameters, type FlattenedJWSInput } from 'jose';
import type { webcrypto } from 'node:crypto';
import { AppError } from '../../../common/errors.ts';

type KeyLike = webcrypto.CryptoKey;

export interface IdpJwksOptions {
  /** Minimum time between two fetches triggered by unknown kids. Default 1 s. */
  cooldownMs?: number;
  /** A fetched set is used this long before it is fetched again regardless. Default 10 min. */
  maxAgeMs?: number;
  /** The fetch to use (carries the call's signal and time-out). */
  fetch: (url: string, init: RequestInit) => Promise<Response>;
  /** The current call's signal, so a wait for the next fetch ends when the call is cancelled. */
  signal?: () => AbortSignal | undefined;
  now?: () => number;
}

export type IdpJwks = ((header: JWSHeaderParameters, token: FlattenedJWSInput) => Promise<KeyLike>) & {
  /** Fetches made so far (for tests and the status view). */
  readonly fetches: number;
};

const MAX_JWKS_BYTES = 256 * 1024;

export function createIdpJwks(url: string, options: IdpJwksOptions): IdpJwks {
  const cooldownMs = options.cooldownMs ?? 1_000;
  const maxAgeMs = options.maxAgeMs ?? 600_000;
  const now = options.now ?? Date.now;
  let local: ReturnType<typeof createLocalJWKSet> | undefined;
  let fetchedAt = Number.NEGATIVE_INFINITY;
  /** When the last fetch started: a fetch that started after a miss sees every key published before it. */
  let startedAt = Number.NEGATIVE_INFINITY;
  let pending: Promise<void> | undefined;
  let fetches = 0;

  const load = (): Promise<void> => {
    pending ??= (async () => {
      startedAt = now();
      fetches += 1;
      let response: Response;
      try {
        response = await options.fetch(url, { method: 'GET', headers: { accept: 'application/jwk-set+json, application/json' } });
      } catch (error) {
        throw new AppError('IDP_UNAVAILABLE', "The identity provider's signing keys could not be fetched.", { cause: error });
      }
      let set: JSONWebKeySet;
      try {
        if (response.status !== 200) throw new Error(`HTTP ${response.status}`);
        const text = await response.text();
        if (text.length > MAX_JWKS_BYTES) throw new Error('too large');
        set = JSON.parse(text) as JSONWebKeySet;
        local = createLocalJWKSet(set);
      } catch (error) {
        await response.body?.cancel().catch(() => {});
        throw new AppError('IDP_BAD_RESPONSE', "The identity provider's signing keys (JWKS) could not be read.", { cause: error });
      }
      fetchedAt = now();
    })().finally(() => {
      pending = undefined;
    });
    return pending;
  };

  const getKey = async (header: JWSHeaderParameters, token: FlattenedJWSInput): Promise<KeyLike> => {
    if (!local || now() - fetchedAt > maxAgeMs) await load();
    try {
      return (await local!(header, token)) as KeyLike;
    } catch (error) {
      if (!(error instanceof errors.JWKSNoMatchingKey)) throw error;
    }
    // An unknown kid: a rotation, or a forged token. Wait for a fetch that starts after this miss.
    const missedAt = now();
    for (;;) {
      if (pending && startedAt >= missedAt) {
        await pending;
        break;
      }
      const wait = startedAt + cooldownMs - now();
      if (wait <= 0) {
        await (pending ?? load());
        if (startedAt >= missedAt) break;
        continue;
      }
      await sleep(wait, options.signal?.());
      if (startedAt >= missedAt) {
        await pending;
        break;
      }
    }
    return (await local!(header, token)) as KeyLike;
  };

  return Object.defineProperty(getKey, 'fetches', { get: () => fetches, enumerable: true }) as IdpJwks;
}

async function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  try {
    await delay(ms, undefined, { signal });
  } catch (error) {
    throw new AppError('CANCELLED', 'The call was cancelled during the token exchange.', { cause: error });
  }
}
