/**
 * `countersign doctor [--config FILE] [--json] [--no-sign-in]`: runs the doctor (main/core/doctor) on
 * the configuration and prints its findings as sentences, or one JSON object with `--json`. To try a
 * real exchange it signs in once in the browser with a session it keeps in memory only (never the
 * keychain, so a running app's refresh token is never rotated under it). Exit code 0 only when a
 * governed call can work; 1 when something must be fixed; 2 for bad usage or no configuration.
 */
import { homedir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { Writable } from 'node:stream';
import { AppError } from '../../common/errors.ts';
import { resolvePaths } from '../../common/paths.ts';
import { AuthService } from '../core/auth/auth-service.ts';
import { loadConfiguration } from '../core/config/config.ts';
import { formatReport, runDoctor, type DoctorSession } from '../core/doctor/doctor.ts';
import { MemorySecretStore } from '../core/secrets/memory-store.ts';
import { openSecretStore } from '../core/secrets/open-secret-store.ts';
import type { OpenExternal, SecretStore } from '../core/ports.ts';
import { openExternal as systemBrowser } from './open-external.ts';

export const DOCTOR_USAGE = 'countersign doctor [--config FILE] [--json] [--no-sign-in]';

export interface DoctorIo {
  stdout: Writable;
  stderr: Writable;
  env: Readonly<Record<string, string | undefined>>;
  /** Opens the sign-in page; the system browser by default. */
  openExternal?: OpenExternal;
  /** Where this install's exchange key is kept (`idp.exchangeClientId`); the OS keychain by default. */
  secrets?: SecretStore;
}

export async function runDoctorCommand(
  argv: string[],
  io: DoctorIo = { stdout: process.stdout, stderr: process.stderr, env: process.env },
): Promise<number> {
  let values: { config?: string; json?: boolean; 'no-sign-in'?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: { config: { type: 'string' }, json: { type: 'boolean' }, 'no-sign-in': { type: 'boolean' } },
    }));
  } catch {
    io.stderr.write(`Usage: ${DOCTOR_USAGE}\n`);
    return 2;
  }
  const paths = resolvePaths({ platform: process.platform, env: io.env, home: homedir() });
  let config;
  try {
    ({ config } = await loadConfiguration(values.config ?? path.join(paths.dataDir, 'config.json'), { platform: process.platform, env: io.env }));
  } catch (error) {
    const e = AppError.from(error);
    io.stderr.write(`countersign doctor: ${e.message} [${e.code}]\n`);
    return 2;
  }
  let session: DoctorSession | undefined;
  let auth: AuthService | undefined;
  if (!values['no-sign-in']) {
    try {
      auth = await AuthService.create({
        config: config.idp,
        secrets: new MemorySecretStore('the doctor keeps nothing'),
        openExternal: io.openExternal ?? systemBrowser,
      });
      if (!values.json)
        io.stderr.write('Signing in once in your browser, to try a real exchange (nothing is kept)…\n');
      const user = await auth.signIn({ openExternal: io.openExternal ?? systemBrowser });
      const signedIn = auth;
      session = {
        accessToken: (signal) => signedIn.getAccessToken(signal),
        sub: user.sub,
        client: () => signedIn.client(),
        dpopKeyPair: () => signedIn.dpopKeyPair(),
      };
    } catch (error) {
      const e = AppError.from(error);
      io.stderr.write(
        `countersign doctor: the sign-in did not complete (${e.message} [${e.code}]); the exchange checks are skipped.\n`,
      );
    }
  }
  try {
    // The install's exchange key is the keychain's (the app uses the same one); nothing else is read there.
    const secrets = config.idp.exchangeClientId ? (io.secrets ?? (await openSecretStore({ log: () => {} }).then((s) => (s.status.persistent ? s.store : undefined), () => undefined))) : undefined;
    const report = await runDoctor({ config, ...(session ? { session } : {}), ...(secrets ? { secrets } : {}) });
    io.stdout.write(values.json ? `${JSON.stringify(report)}\n` : formatReport(report));
    return report.ok ? 0 : 1;
  } finally {
    await auth?.close();
  }
}
