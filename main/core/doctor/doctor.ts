/**
 * `countersign doctor`: checks each party a governed call goes through and says, in sentences, what
 * to fix. The identity provider's discovery (token exchange, RAR types, DPoP, PAR, registration,
 * device flow) and which delegation profile fits it; after a sign-in, a real exchange per configured
 * credential (the claims that came back, never the token), a real Vault login with that OBO, the
 * credential, and a `SELECT 1` with it, revoked at once; Vault's health, auth mount and roles; each
 * database and upstream. `ok` only when a governed call can work: every check passed and at least one
 * credential went the whole way.
 *
 * One module per party: ./idp.ts and ./delegation.ts, ./exchange.ts, ./vault.ts, ./database.ts,
 * ./upstreams.ts; ./credentials.ts says what is checked, ./report.ts prints it. The command is
 * main/headless/doctor.ts.
 */
import { readFile } from 'node:fs/promises';
import { createVaultClient } from '../vault/client.ts';
import { credentialsOf } from './credentials.ts';
import { checkDatabaseReachable } from './database.ts';
import { checkExchanges } from './exchange.ts';
import { checkIdentityProvider } from './idp.ts';
import type { DoctorOptions, DoctorReport, Finding } from './types.ts';
import { upstreamCheck } from './upstreams.ts';
import { checkVault } from './vault.ts';

export type { DoctorOptions, DoctorReport, DoctorSession, Finding, FindingStatus, Party } from './types.ts';
export { checkIdentityProvider } from './idp.ts';
export { formatReport } from './report.ts';

export async function runDoctor(options: DoctorOptions): Promise<DoctorReport> {
  const { config } = options;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const findings: Finding[] = [];
  const add = (f: Finding): void => void findings.push(f);

  const credentials = await credentialsOf(config);
  const idp = await checkIdentityProvider(config.idp, credentials, timeoutMs);
  findings.push(...idp.findings);
  const { meta, fits } = idp;

  const vault = createVaultClient({
    address: config.vault.address,
    namespace: config.vault.namespace,
    caCert: config.vault.caCertFile ? await readFile(config.vault.caCertFile, 'utf8') : undefined,
    timeoutMs,
  });
  try {
    const vaultUsable = await checkVault(vault, config.vault.address, credentials, timeoutMs, add);

    // --- each database and upstream, reachable at all
    if (config.postgres) await checkDatabaseReachable(config.postgres, timeoutMs, add);
    for (const u of config.upstreams)
      add(await upstreamCheck(u.name, u.url, u.auth, config.idp.issuer, timeoutMs));

    // --- a real exchange per credential, then Vault and the target with what it bought
    let wholeWay = 0;
    if (!options.session) {
      add({
        party: 'exchange',
        check: 'sign-in',
        status: 'skip',
        says: 'No one is signed in, so no exchange was tried and a governed call is not shown to work.',
        fix: 'Run the doctor with a sign-in (countersign doctor asks for one in your browser).',
      });
    } else if (meta) {
      wholeWay = await checkExchanges({ config, session: options.session, secrets: options.secrets, credentials, vault, vaultUsable, timeoutMs, add });
    }
    const ok = !findings.some((f) => f.status === 'fail') && wholeWay > 0;
    return { ok, delegation: { configured: config.idp.delegation, fits }, findings };
  } finally {
    await vault.close();
  }
}
