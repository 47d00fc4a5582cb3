/**
 * The client a token exchange authenticates as, when it is not the sign-in client: an
 * administrator-created confidential client (`idp.exchangeClientId`; Okta's API service app, the only
 * kind of app Okta lets make an on-behalf-of exchange). It authenticates with private_key_jwt (RFC
 * 7523 §2.2) using this install's exchange key: a P-256 key generated once and kept in the keychain,
 * whose public half an administrator adds to that client (`countersign doctor` prints it). No client
 * secret is written anywhere, and a fleet can provision one key into every install's keychain instead
 * (docs/identity-providers.md says where).
 */
import { createHash, webcrypto } from 'node:crypto';
import { calculateJwkThumbprint, type JWK } from 'jose';
import * as oidc from 'openid-client';
import { AppError } from '../../../common/errors.ts';
import type { SecretStore } from '../ports.ts';
import type { ExchangeClient, TokenExchangerOptions } from './token-exchange.ts';

const ALG = { name: 'ECDSA', namedCurve: 'P-256' } as const;

/** The keychain account of the exchange key: `<first 12 hex of SHA-256(issuer)>:exchange-key`, beside the sign-in's entries. */
function exchangeKeyAccount(issuer: string): string {
  return `${createHash('sha256').update(issuer).digest('hex').slice(0, 12)}:exchange-key`;
}

export interface InstallExchangeKey {
  /** The public JWK (with `kid`, `alg`, `use`) to add to the exchange client at the IdP. */
  publicJwk: JWK & { kid: string };
  privateKey: webcrypto.CryptoKey;
}

/** This install's exchange key: read from the keychain, or generated and stored there the first time. */
export async function installExchangeKey(secrets: SecretStore, issuer: string): Promise<InstallExchangeKey> {
  const account = exchangeKeyAccount(issuer);
  const stored = await secrets.get(account);
  if (stored) {
    const restored = await restore(stored);
    if (restored) return restored;
    throw new AppError(
      'CONFIG_INVALID',
      `The token-exchange key kept in the keychain (${account}) is unreadable: remove it, start again, and add the new public key to the exchange client.`,
    );
  }
  const pair = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const jwk = await webcrypto.subtle.exportKey('jwk', pair.privateKey);
  await secrets.set(account, JSON.stringify(jwk));
  const restored = await restore(JSON.stringify(jwk));
  if (!restored) throw new AppError('INTERNAL', 'The new token-exchange key could not be read back.');
  return restored;
}

async function restore(text: string): Promise<InstallExchangeKey | undefined> {
  try {
    const jwk = JSON.parse(text) as webcrypto.JsonWebKey;
    if (jwk.kty !== 'EC' || jwk.crv !== 'P-256' || !jwk.d) return undefined;
    const { d: _d, key_ops: _ops, ext: _ext, ...pub } = jwk;
    const kid = await calculateJwkThumbprint(pub as JWK);
    // Held non-extractable from here on: the keychain has the only exportable copy.
    const privateKey = await webcrypto.subtle.importKey('jwk', jwk, ALG, false, ['sign']);
    return { publicJwk: { ...(pub as JWK), kid, alg: 'ES256', use: 'sig' }, privateKey };
  } catch {
    return undefined;
  }
}

/**
 * The exchange client for `exchangeClientId`: the IdP's metadata comes from the sign-in client (same
 * issuer, already discovered), the authentication from this install's exchange key.
 */
function exchangeClientFor(o: {
  clientId: string;
  secrets: SecretStore;
  issuer: string;
  signInClient: () => Promise<Pick<ExchangeClient, 'serverMetadata'>>;
}): () => Promise<ExchangeClient> {
  let key: Promise<InstallExchangeKey> | undefined;
  let built: { metadata: oidc.ServerMetadata; client: ExchangeClient } | undefined;
  return async () => {
    key ??= installExchangeKey(o.secrets, o.issuer).catch((error: unknown) => {
      key = undefined;
      throw error;
    });
    const { privateKey, publicJwk } = await key;
    const { serverMetadata } = await o.signInClient();
    // The same object while nothing changed, so the exchanger keeps its configuration and DPoP handle.
    if (built?.metadata !== serverMetadata) {
      built = {
        metadata: serverMetadata,
        client: {
          clientId: o.clientId,
          clientAuth: oidc.PrivateKeyJwt({ key: privateKey, kid: publicJwk.kid }),
          serverMetadata,
          clientMetadata: { token_endpoint_auth_method: 'private_key_jwt', token_endpoint_auth_signing_alg: 'ES256' },
        },
      };
    }
    return built.client;
  };
}

/**
 * The exchanger's client options for a configuration: the sign-in client (this install's registered
 * one when there is one, dropped when the IdP forgets it), or the configured exchange client. An
 * exchange client the IdP refuses is an administrator's setting to fix, never a reason to drop the
 * sign-in's registration.
 */
export function exchangeClientOptions(
  idp: { issuer: string; exchangeClientId?: string | undefined },
  signIn: { client(): Promise<ExchangeClient>; clientRejected(): Promise<void> | void } | undefined,
  secrets: SecretStore,
): Pick<TokenExchangerOptions, 'client' | 'onClientRejected'> {
  if (!signIn) return {};
  if (!idp.exchangeClientId) return { client: () => signIn.client(), onClientRejected: () => signIn.clientRejected() };
  const clientId = idp.exchangeClientId;
  return {
    client: exchangeClientFor({ clientId, secrets, issuer: idp.issuer, signInClient: () => signIn.client() }),
    onClientRejected: () => {
      throw new AppError(
        'IDP_DENIED',
        `Your identity provider refused the token-exchange client ${clientId} (invalid_client): add this install's exchange key to that client (countersign doctor shows it).`,
      );
    },
  };
}
