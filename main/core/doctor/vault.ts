/**
 * Vault as the doctor checks it: its health, each JWT auth mount and role the credentials name, and
 * one real login with an OBO, the credential it mints, and the revocation after it.
 */
import type pg from 'pg';
import { AppError } from '../../../common/errors.ts';
import type { AppConfig } from '../config/config.ts';
import type { Obo } from '../idp/token-exchange.ts';
import type { VaultClient } from '../vault/client.ts';
import type { DoctorCredential } from './credentials.ts';
import { selectOneAs } from './database.ts';
import type { AddFinding } from './types.ts';

/** Vault's health, then every auth mount and role the credentials name; true when Vault can log anyone in. */
export async function checkVault(
  vault: VaultClient,
  address: string,
  credentials: readonly DoctorCredential[],
  timeoutMs: number,
  add: AddFinding,
): Promise<boolean> {
  let vaultUsable = false;
  const health = await vaultHealth(address, timeoutMs);
  if (health === 'unreachable') {
    add({
      party: 'vault',
      check: 'health',
      status: 'fail',
      says: `Vault at ${address} did not answer sys/health.`,
      fix: 'Check vault.address and that Vault is running and reachable from this machine.',
    });
  } else if (health.sealed) {
    add({
      party: 'vault',
      check: 'health',
      status: 'fail',
      says: `Vault at ${address} is sealed: it cannot log anyone in or mint credentials.`,
      fix: 'Ask its operator to unseal it (vault operator unseal).',
    });
  } else if (!health.initialized) {
    add({
      party: 'vault',
      check: 'health',
      status: 'fail',
      says: `Vault at ${address} is not initialized.`,
      fix: 'Initialize and configure it (docs/vault.md).',
    });
  } else {
    vaultUsable = true;
    add({
      party: 'vault',
      check: 'health',
      status: 'ok',
      says: `Vault at ${address} is initialized and unsealed${health.version ? ` (${health.version})` : ''}.`,
    });
  }
  if (vaultUsable) {
    // An OBO upstream takes the OBO itself: no Vault role stands behind it.
    const roles = [
      ...new Map(
        credentials.filter((c) => c.use.kind !== 'obo').map((c) => [`${c.authMount}/${c.vaultRole}`, c]),
      ).values(),
    ];
    const mounts = new Set<string>();
    for (const c of roles) {
      const state = await roleState(vault, c.authMount, c.vaultRole);
      if (state === 'no-mount') {
        if (!mounts.has(c.authMount)) {
          mounts.add(c.authMount);
          add({
            party: 'vault',
            check: `auth/${c.authMount}`,
            status: 'fail',
            says: `Vault has no JWT auth method at auth/${c.authMount}.`,
            fix: `Enable it (vault auth enable -path=${c.authMount} jwt) and point it at your identity provider's JWKS (docs/vault.md §2), or fix vault.authMount.`,
          });
        }
      } else if (state === 'unknown-role') {
        add({
          party: 'vault',
          check: `role ${c.vaultRole}`,
          status: 'fail',
          says: `Vault has no role ${c.vaultRole} at auth/${c.authMount}, which ${c.name} needs.`,
          fix: `Create it (vault write auth/${c.authMount}/role/${c.vaultRole}, docs/vault.md §4), or name the role Vault has in the policy file.`,
        });
      } else
        add({
          party: 'vault',
          check: `role ${c.vaultRole}`,
          status: 'ok',
          says: `Vault has the role ${c.vaultRole} at auth/${c.authMount}.`,
        });
    }
  }
  return vaultUsable;
}

/** Vault login with the OBO, the credential, the target with it, then revoke-self: the call's legs, once. */
export async function throughVault(
  vault: VaultClient,
  c: DoctorCredential,
  obo: Obo,
  ssl: pg.ClientConfig['ssl'] | undefined,
  config: AppConfig,
  timeoutMs: number,
  add: AddFinding,
): Promise<boolean> {
  let token: string | undefined;
  try {
    const login = await vault.loginJwt(c.authMount, obo.vaultRole, obo.token);
    token = login.token;
    add({
      party: 'vault',
      check: `login ${obo.vaultRole}`,
      status: 'ok',
      says: `Vault logged the OBO in at role ${obo.vaultRole} (policies ${login.policies.join(', ') || 'none'}).`,
    });
    if (c.use.kind === 'database') {
      const creds = await vault.databaseCreds(login.token, c.use.dbMount, obo.vaultRole);
      if (!config.postgres) return false;
      return await selectOneAs(config.postgres, creds, obo.vaultRole, ssl, timeoutMs, add);
    }
    if (c.use.kind === 'kv') {
      const secret = await vault.kvRead(login.token, c.use.kvMount, c.use.path);
      const present = typeof secret.data[c.use.field] === 'string';
      add(
        present
          ? {
              party: 'vault',
              check: `secret ${c.use.path}`,
              status: 'ok',
              says: `The ${obo.vaultRole} token reads ${c.use.kvMount}/${c.use.path} (field ${c.use.field} present, value not shown).`,
            }
          : {
              party: 'vault',
              check: `secret ${c.use.path}`,
              status: 'fail',
              says: `${c.use.kvMount}/${c.use.path} has no ${c.use.field} field.`,
              fix: `Write it: vault kv put ${c.use.kvMount}/${c.use.path} ${c.use.field}=…`,
            },
      );
      return present;
    }
    return false;
  } catch (error) {
    const e = AppError.from(error);
    add({
      party: 'vault',
      check: `${c.name} credential`,
      status: 'fail',
      says: `Vault refused ${c.name}: ${e.message} [${e.code}]`,
      fix:
        e.code === 'VAULT_LOGIN_FAILED'
          ? `Bind the role ${obo.vaultRole} on the claims this OBO carries (the claims above; docs/vault.md §4).`
          : undefined,
    });
    return false;
  } finally {
    if (token) await vault.revokeSelf(token).catch(() => {});
  }
}

/** `sys/health` answers 503 when sealed, with the same body: read the body whatever the status. */
async function vaultHealth(
  address: string,
  timeoutMs: number,
): Promise<'unreachable' | { initialized: boolean; sealed: boolean; version?: string }> {
  try {
    const res = await fetch(`${address.replace(/\/+$/, '')}/v1/sys/health`, {
      signal: AbortSignal.timeout(timeoutMs),
      redirect: 'error',
    });
    const body = (await res.json().catch(() => ({}))) as {
      initialized?: unknown;
      sealed?: unknown;
      version?: unknown;
    };
    return {
      initialized: body.initialized !== false,
      sealed: body.sealed === true || res.status === 503,
      ...(typeof body.version === 'string' ? { version: body.version } : {}),
    };
  } catch {
    return 'unreachable';
  }
}

/**
 * Whether a jwt role exists, without a token: a login with a JWT that is not one is refused for the
 * role first (`role "x" could not be found`), else for the token; no mount answers otherwise.
 */
async function roleState(
  vault: VaultClient,
  mount: string,
  role: string,
): Promise<'exists' | 'unknown-role' | 'no-mount'> {
  try {
    await vault.loginJwt(mount, role, 'not-a-jwt');
    return 'exists';
  } catch (error) {
    const e = AppError.from(error);
    if (e.code === 'VAULT_LOGIN_FAILED')
      return /role ".*" could not be found/.test(e.message) ? 'unknown-role' : 'exists';
    return 'no-mount';
  }
}
