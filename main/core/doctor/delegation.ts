/**
 * Which delegation profile the identity provider's discovery fits: `rar` when it publishes every RAR
 * type these calls use, `scopes` when it publishes every `vault:<role>` scope, else unknown.
 */
import type { AppConfig } from '../config/config.ts';
import type { DoctorCredential } from './credentials.ts';
import type { AddFinding, DoctorReport } from './types.ts';

const TYPES_NEEDED = { database: 'postgres', kv: 'api_key', obo: 'mcp_tool_call' } as const;

export function checkDelegationProfile(
  idp: Pick<AppConfig['idp'], 'delegation' | 'delegationScopePrefix'>,
  credentials: readonly Pick<DoctorCredential, 'vaultRole' | 'use'>[],
  meta: Record<string, unknown>,
  rarTypes: readonly string[],
  add: AddFinding,
): DoctorReport['delegation']['fits'] {
  let fits: DoctorReport['delegation']['fits'] = 'unknown';
  const needed = [...new Set(credentials.map((c) => TYPES_NEEDED[c.use.kind]))];
  const scopes = Array.isArray(meta.scopes_supported) ? (meta.scopes_supported as string[]) : undefined;
  const vaultScopes = credentials
    .filter((c) => c.use.kind !== 'obo')
    .map((c) => `${idp.delegationScopePrefix}${c.vaultRole}`);
  if (needed.length > 0 && needed.every((t) => rarTypes.includes(t))) fits = 'rar';
  else if (scopes && vaultScopes.length > 0 && vaultScopes.every((s) => scopes.includes(s)))
    fits = 'scopes';
  const configured = idp.delegation;
  if (fits === configured) {
    add({
      party: 'delegation',
      check: 'profile',
      status: 'ok',
      says: `The ${configured} delegation profile fits: ${configured === 'rar' ? `the identity provider takes the RAR types these calls use (${needed.join(', ')})` : `it publishes the scopes ${vaultScopes.join(', ')}`}.`,
    });
  } else if (fits === 'unknown') {
    add({
      party: 'delegation',
      check: 'profile',
      status: 'warn',
      says: `Discovery shows neither the RAR types these calls use (${needed.join(', ') || 'none'}) nor the scopes ${vaultScopes.join(', ') || '(none)'}; the exchanges below show whether ${configured} works.`,
    });
  } else if (configured === 'rar') {
    add({
      party: 'delegation',
      check: 'profile',
      status: 'fail',
      says: `Your identity provider publishes no RAR types for these calls but the scopes ${vaultScopes.join(', ')}: under the rar profile every call would be refused.`,
      fix: 'Set idp.delegation to "scopes" (docs/identity-providers.md says what that gives up).',
    });
  } else {
    add({
      party: 'delegation',
      check: 'profile',
      status: 'warn',
      says: `Your identity provider takes the RAR types these calls use (${needed.join(', ')}): with the rar profile it would decide each call from its full description, not only the credential.`,
      fix: 'Set idp.delegation to "rar" to let it.',
    });
  }
  return fits;
}
