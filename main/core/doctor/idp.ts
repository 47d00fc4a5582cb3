/**
 * The identity provider's discovery as the doctor reads it: the issuer, token exchange, the RAR types,
 * DPoP, PAR, registration and the device flow, then which delegation profile fits (./delegation.ts).
 */
import { AppError } from '../../../common/errors.ts';
import type { AppConfig } from '../config/config.ts';
import { GRANT_TOKEN_EXCHANGE } from '../idp/token-exchange.ts';
import type { DoctorCredential } from './credentials.ts';
import { checkDelegationProfile } from './delegation.ts';
import type { DoctorReport, Finding } from './types.ts';

/**
 * The identity provider's discovery and, when the calls' credentials are known, which delegation
 * profile fits: the doctor's first checks, also run alone by the setup screen on an issuer.
 */
export async function checkIdentityProvider(
  idp: Pick<AppConfig['idp'], 'issuer' | 'delegation' | 'delegationScopePrefix' | 'dynamicRegistration'>,
  credentials: readonly Pick<DoctorCredential, 'vaultRole' | 'use'>[],
  timeoutMs: number,
): Promise<{ findings: Finding[]; fits: DoctorReport['delegation']['fits']; meta?: Record<string, unknown> }> {
  const findings: Finding[] = [];
  const add = (f: Finding): void => void findings.push(f);
  // --- the identity provider's discovery
  const meta = await discovery(idp.issuer, timeoutMs).catch((error: unknown) => {
    add({
      party: 'idp',
      check: 'discovery',
      status: 'fail',
      says: `Countersign could not read ${idp.issuer}/.well-known/openid-configuration (${AppError.from(error).message}).`,
      fix: 'Check idp.issuer: it must be the issuer exactly as your identity provider publishes it, reachable from this machine.',
    });
    return undefined;
  });
  let fits: DoctorReport['delegation']['fits'] = 'unknown';
  if (meta) {
    if (meta.issuer !== idp.issuer) {
      add({
        party: 'idp',
        check: 'issuer',
        status: 'fail',
        says: `The discovery document names the issuer ${String(meta.issuer)}, not ${idp.issuer}.`,
        fix: 'Set idp.issuer to the issuer the document names.',
      });
    } else
      add({
        party: 'idp',
        check: 'discovery',
        status: 'ok',
        says: `${idp.issuer} publishes its OpenID configuration.`,
      });
    const grants = Array.isArray(meta.grant_types_supported)
      ? (meta.grant_types_supported as string[])
      : undefined;
    if (grants === undefined) {
      add({
        party: 'idp',
        check: 'token exchange',
        status: 'warn',
        says: 'The discovery document does not list its grants, so token exchange cannot be seen there; the exchanges below decide.',
      });
    } else if (!grants.includes(GRANT_TOKEN_EXCHANGE)) {
      add({
        party: 'idp',
        check: 'token exchange',
        status: 'fail',
        says: 'Your identity provider does not offer token exchange (RFC 8693): its grants do not include urn:ietf:params:oauth:grant-type:token-exchange, so no call can get an on-behalf-of token.',
        fix: "Turn token exchange on: Keycloak 26.2+, the client's Standard Token Exchange switch; Okta, the Token Exchange grant in the authorization server's access policy; IBM Verify, the Token exchange grant on the application (docs/identity-providers.md).",
      });
    } else
      add({
        party: 'idp',
        check: 'token exchange',
        status: 'ok',
        says: 'Token exchange (RFC 8693) is offered.',
      });
    const rarTypes = Array.isArray(meta.authorization_details_types_supported)
      ? (meta.authorization_details_types_supported as string[])
      : [];
    add({
      party: 'idp',
      check: 'RAR types',
      status: 'ok',
      says:
        rarTypes.length > 0
          ? `Authorization details types offered (RFC 9396): ${rarTypes.join(', ')}.`
          : 'No authorization details types (RFC 9396) are published.',
    });
    const feature = (check: string, present: boolean, yes: string, no: string, wanted?: string): void =>
      add({
        party: 'idp',
        check,
        status: !present && wanted ? 'warn' : 'ok',
        says: present ? yes : no,
        ...(!present && wanted ? { fix: wanted } : {}),
      });
    feature(
      'DPoP',
      Array.isArray(meta.dpop_signing_alg_values_supported),
      'DPoP (RFC 9449) is offered: tokens will be bound to this install’s key.',
      'DPoP is not offered: tokens are bearer tokens.',
    );
    feature(
      'PAR',
      typeof meta.pushed_authorization_request_endpoint === 'string',
      'Pushed authorization requests (RFC 9126) are offered.',
      'Pushed authorization requests are not offered.',
    );
    feature(
      'registration',
      typeof meta.registration_endpoint === 'string',
      'Dynamic client registration (RFC 7591) is offered.',
      'Dynamic client registration is not offered.',
      idp.dynamicRegistration === 'when-offered'
        ? 'idp.dynamicRegistration is when-offered but there is no registration endpoint: the configured client is used.'
        : undefined,
    );
    feature(
      'device flow',
      typeof meta.device_authorization_endpoint === 'string',
      'The device flow (RFC 8628) is offered, for sign-in without a browser here.',
      'The device flow is not offered.',
    );
    fits = checkDelegationProfile(idp, credentials, meta, rarTypes, add);
  }

  return { findings, fits, ...(meta ? { meta } : {}) };
}

async function discovery(issuer: string, timeoutMs: number): Promise<Record<string, unknown>> {
  const url = `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
  let res: Response;
  try {
    res = await fetch(url, {
      signal: AbortSignal.timeout(timeoutMs),
      redirect: 'error',
      headers: { accept: 'application/json' },
    });
  } catch (error) {
    throw new AppError('IDP_UNAVAILABLE', 'it did not answer', { cause: error });
  }
  if (res.status !== 200) throw new AppError('IDP_BAD_RESPONSE', `HTTP ${res.status}`);
  const json: unknown = await res.json().catch(() => undefined);
  if (!json || typeof json !== 'object')
    throw new AppError('IDP_BAD_RESPONSE', 'the answer is not a JSON object');
  return json as Record<string, unknown>;
}
