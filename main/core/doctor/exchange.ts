/**
 * A real token exchange per credential with the signed-in session (the claims that came back, never
 * the token), then that OBO through Vault to the target (./vault.ts): the checks that show a governed
 * call can work.
 */
import { decodeJwt } from 'jose';
import { AppError } from '../../../common/errors.ts';
import type { AppConfig } from '../config/config.ts';
import { postgresSsl } from '../connectors/postgres/tls.ts';
import { createTokenExchanger, type Obo } from '../idp/token-exchange.ts';
import { exchangeClientOptions, installExchangeKey } from '../idp/exchange-client.ts';
import type { SecretStore } from '../ports.ts';
import type { VaultClient } from '../vault/client.ts';
import type { DoctorCredential } from './credentials.ts';
import type { AddFinding, DoctorSession } from './types.ts';
import { throughVault } from './vault.ts';

/** Without the keychain, the exchange key cannot be read: the exchange checks say so instead of using another client. */
const noKeychain: SecretStore = {
  kind: 'memory',
  get: async () => {
    throw new AppError('KEYCHAIN_UNAVAILABLE', "The doctor was not given the keychain, so this install's exchange key cannot be read.");
  },
  set: async () => {
    throw new AppError('KEYCHAIN_UNAVAILABLE', "The doctor was not given the keychain, so this install's exchange key cannot be kept.");
  },
  delete: async () => {},
};

/** Exchanges for each credential and, where Vault is usable, takes the OBO the whole way; returns how many went the whole way. */
export async function checkExchanges(options: {
  config: AppConfig;
  session: DoctorSession;
  secrets: SecretStore | undefined;
  credentials: readonly DoctorCredential[];
  vault: VaultClient;
  vaultUsable: boolean;
  timeoutMs: number;
  add: AddFinding;
}): Promise<number> {
  const { config, session, credentials, vault, vaultUsable, timeoutMs, add } = options;
  const secrets = options.secrets ?? noKeychain;
  let wholeWay = 0;
  const signInClient = session.client;
  const exchanger = createTokenExchanger({
    issuer: config.idp.issuer,
    clientId: config.idp.clientId,
    ...(config.idp.exchangeClientId
      ? exchangeClientOptions(config.idp, signInClient && { client: signInClient, clientRejected: () => {} }, secrets)
      : signInClient
        ? { client: signInClient }
        : {}),
    allowInsecureHttpForLoopbackOnly: config.idp.allowInsecureHttpForLoopbackOnly,
    delegation: config.idp.delegation,
    scopePrefix: config.idp.delegationScopePrefix,
    ...(config.idp.allowLongLivedOboUpToSeconds ? { maxOboLifetimeS: config.idp.allowLongLivedOboUpToSeconds } : {}),
    timeoutMs,
  });
  if (config.idp.exchangeClientId) {
    const id = config.idp.exchangeClientId;
    try {
      const key = await installExchangeKey(secrets, config.idp.issuer);
      add({
        party: 'exchange',
        check: 'exchange client',
        status: 'ok',
        says: `Token exchanges authenticate as ${id} with this install's exchange key (kid ${key.publicJwk.kid}, private_key_jwt).`,
        fix: `If the identity provider refuses that client (invalid_client), add this public key to it (Okta: the service app's Client Credentials, Public key / Private key): ${JSON.stringify(key.publicJwk)}`,
      });
    } catch (error) {
      const e = AppError.from(error);
      add({ party: 'exchange', check: 'exchange client', status: 'fail', says: `This install's exchange key for ${id} is not usable: ${e.message} [${e.code}]`, fix: 'Unlock the keychain, or remove the damaged entry and add the new key to the client.' });
    }
  }
  const pgSsl = config.postgres ? await postgresSsl(config.postgres) : undefined;
  for (const c of credentials) {
    if (config.idp.delegation === 'rar' && c.rarUnavailable) {
      add({ party: 'exchange', check: c.name, status: 'skip', says: c.rarUnavailable });
      continue;
    }
    if (config.idp.delegation === 'scopes' && c.use.kind === 'obo') {
      add({
        party: 'exchange',
        check: c.name,
        status: 'fail',
        says: `${c.name} takes the OBO itself as its credential, which only the rar profile can describe: its calls will be refused.`,
        fix: 'Use an identity provider that takes the RAR (idp.delegation rar), or reach this upstream with an API key from Vault.',
      });
      continue;
    }
    let obo: Obo;
    try {
      obo = await exchanger.exchange({
        subjectToken: await session.accessToken(),
        authorizationDetails: c.authorizationDetails,
        ...(c.audience ? { audience: c.audience } : {}),
        ...(c.resource ? { resource: c.resource } : {}),
        ...(c.use.kind !== 'obo' ? { credential: c.vaultRole } : {}),
        ...(session.dpopKeyPair?.() ? { dpopKeyPair: session.dpopKeyPair()! } : {}),
        ...(session.sub ? { expectedSub: session.sub } : {}),
      });
    } catch (error) {
      const e = AppError.from(error);
      add({
        party: 'exchange',
        check: c.name,
        status: e.code === 'IDP_DENIED' ? 'warn' : 'fail',
        says: `The exchange for ${c.name} failed: ${e.message} [${e.code}]`,
        fix: exchangeFix(e.code, config.idp.delegation),
      });
      continue;
    }
    add({
      party: 'exchange',
      check: c.name,
      status: 'ok',
      says: `The identity provider issued an OBO for ${c.name} (vault_role ${obo.vaultRole}, ${obo.exp - obo.iat} s) that fits the ${obo.delegation} profile.`,
      claims: decodeJwt(obo.token) as Record<string, unknown>,
    });
    if (c.use.kind === 'obo' || !vaultUsable) continue;
    if (await throughVault(vault, c, obo, pgSsl, config, timeoutMs, add)) wholeWay += 1;
  }
  return wholeWay;
}

function exchangeFix(code: string, delegation: 'rar' | 'scopes'): string {
  if (code === 'OBO_INVALID') {
    return delegation === 'rar'
      ? 'The OBO does not fit the rar profile (the reason above). If your identity provider decides by scope, set idp.delegation to "scopes" and map each vault:<role> scope to vault_role.'
      : 'The OBO does not fit the scopes profile (the reason above): grant exactly the one scope asked, map it to vault_role, keep the token to 60 s (or allow longer with idp.allowLongLivedOboUpToSeconds where the identity provider cannot go lower), and make the client the azp (docs/identity-providers.md).';
  }
  if (code === 'IDP_DENIED')
    return 'Your identity provider refused it: check its policy for this user and this client (its reason above).';
  if (code === 'IDP_UNAVAILABLE') return 'Check that the identity provider is reachable from this machine.';
  return 'See docs/identity-providers.md for the settings your identity provider needs.';
}
