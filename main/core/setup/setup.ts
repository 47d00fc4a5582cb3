/**
 * First run without a text editor: while no configuration exists, the UI's setup screen drafts one.
 * The issuer is checked the way the doctor checks it, the whole draft is validated with the
 * configuration's own schema and run through the doctor's checks that need no sign-in, and the saved
 * file is written owner-only and atomically (a temporary file renamed over), so a crash never leaves
 * half a configuration behind.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { ContractHandlers, FindingView } from '../../../common/contract.ts';
import { AppError } from '../../../common/errors.ts';
import { valueAt } from '../../../common/dotted-path.ts';
import { loadConfiguration, parseAppConfig, type LoadedConfig } from '../config/config.ts';
import { applyManaged, readManagedConfig } from '../config/managed.ts';
import { checkIdentityProvider, runDoctor } from '../doctor/doctor.ts';

type SetupChannel = 'setup.get' | 'setup.discover' | 'setup.check' | 'setup.save';

const TIMEOUT_MS = 10_000;

export interface SetupOptions {
  /** Where the configuration is written (`<dataDir>/config.json` or `--config FILE`). */
  file: string;
  platform: NodeJS.Platform;
  env: Readonly<Record<string, string | undefined>>;
  /** Starts the app on the saved configuration, so sign-in works without a restart. */
  onSaved(loaded: LoadedConfig): Promise<void>;
}

export function setupHandlers(o: SetupOptions): Pick<ContractHandlers, SetupChannel> {
  const managedNow = () => readManagedConfig({ platform: o.platform, env: o.env });
  /** The draft as the app would run it: the organisation's fields laid over, then the schema. */
  const validate = async (draft: Record<string, unknown>) => {
    const managed = await managedNow();
    const merged = managed ? applyManaged(draft, managed.values).merged : draft;
    return parseAppConfig(merged, 'The configuration');
  };
  let saved = false;
  return {
    'setup.get': async () => {
      const managed = await managedNow();
      return {
        file: o.file,
        managed: managed ? { where: managed.where, fields: applyManaged({}, managed.values).fields, values: managed.values } : null,
      };
    },
    'setup.discover': async ({ issuer }) => {
      if (!URL.canParse(issuer) || !/^https?:$/.test(new URL(issuer).protocol)) {
        return {
          fits: 'unknown' as const,
          findings: [{ party: 'idp' as const, check: 'issuer', status: 'fail' as const, says: `${issuer || 'The issuer'} is not an http(s) URL.`, fix: 'Give the issuer exactly as your identity provider publishes it, e.g. https://login.example.com/realms/acme.' }],
        };
      }
      // The calls' credentials are not known yet (they come from the targets), so no profile is judged here.
      const idp = await checkIdentityProvider(
        { issuer, delegation: 'rar', delegationScopePrefix: 'vault:', dynamicRegistration: 'off' },
        [],
        TIMEOUT_MS,
      );
      return { findings: idp.findings, fits: idp.fits };
    },
    'setup.check': async ({ config: draft }) => {
      let config;
      try {
        config = await validate(draft);
      } catch (error) {
        return { valid: false, fits: 'unknown' as const, findings: [problem(error)] };
      }
      try {
        const report = await runDoctor({ config, timeoutMs: TIMEOUT_MS });
        return { valid: true, fits: report.delegation.fits, findings: report.findings };
      } catch (error) {
        return { valid: true, fits: 'unknown' as const, findings: [problem(error)] };
      }
    },
    'setup.save': async ({ config: draft }) => {
      if (saved) throw new AppError('CONFIG_INVALID', 'Countersign is already configured: change the configuration file instead.');
      await validate(draft); // refuses with the field at fault, before anything is written
      // The organisation's fields are not the person's to write: they stay in the managed configuration.
      const managed = await managedNow();
      const own = managed ? withoutFields(draft, applyManaged({}, managed.values).fields) : draft;
      await writeOwnerOnly(o.file, `${JSON.stringify(own, null, 2)}\n`);
      const loaded = await loadConfiguration(o.file, { platform: o.platform, env: o.env });
      saved = true;
      await o.onSaved(loaded);
      return { file: o.file };
    },
  };
}

function withoutFields(draft: Record<string, unknown>, fields: readonly string[]): Record<string, unknown> {
  const copy = structuredClone(draft);
  for (const field of fields) {
    const keys = field.split('.');
    const parent = keys.length > 1 ? valueAt(copy, keys.slice(0, -1).join('.')) : copy;
    if (parent && typeof parent === 'object') delete (parent as Record<string, unknown>)[keys.at(-1)!];
  }
  return copy;
}

function problem(error: unknown): FindingView {
  const e = AppError.from(error);
  return { party: 'configuration', check: 'schema', status: 'fail', says: e.message, fix: 'Correct that field and check again.' };
}

/** Writes `text` to `file` as 0600 via a temporary file in the same directory and a rename. */
export async function writeOwnerOnly(file: string, text: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await open(temp, 'wx', 0o600);
  try {
    await handle.writeFile(text, 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await chmod(temp, 0o600); // the umask cannot widen it, but a 0600 it did not narrow is said here
    await rename(temp, file);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}
