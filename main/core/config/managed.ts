/**
 * Managed configuration for fleets: a system-wide configuration an organisation installs, whose fields
 * a person's own configuration cannot override. Read where present, once at start:
 *
 * - Linux: `/etc/countersign/config.json` (root-owned), or the file `COUNTERSIGN_MANAGED_CONFIG` names;
 * - macOS: the `Config` key of the managed preferences domain `com.countersign.app`
 *   (`/Library/Managed Preferences/com.countersign.app.plist`, written by an MDM profile), a string
 *   holding the same JSON, read with `plutil`;
 * - Windows: the `Config` value (REG_SZ, the same JSON) of `HKLM\SOFTWARE\Policies\Countersign`,
 *   written by Group Policy or Intune, read with `reg query`.
 *
 * Its fields are laid over the person's configuration (objects merged, anything else replaced) and
 * listed by path, so the settings screen can say which ones are the organisation's.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { AppError } from '../../../common/errors.ts';

export const MANAGED_CONFIG_ENV = 'COUNTERSIGN_MANAGED_CONFIG';
const LINUX_MANAGED_FILE = '/etc/countersign/config.json';
const MAC_MANAGED_PLIST = '/Library/Managed Preferences/com.countersign.app.plist';
const WINDOWS_POLICY_KEY = 'HKLM\\SOFTWARE\\Policies\\Countersign';

export interface ManagedConfig {
  /** Where it was read (a file path or the registry key), for the settings screen. */
  where: string;
  values: Record<string, unknown>;
}

type Run = (command: string, args: string[]) => Promise<string>;
const runCommand: Run = async (command, args) =>
  (await promisify(execFile)(command, args, { timeout: 5_000, windowsHide: true })).stdout;

/** The organisation's configuration, or undefined where none is installed. A present but broken one fails start-up. */
export async function readManagedConfig(o: {
  platform: NodeJS.Platform;
  env: Readonly<Record<string, string | undefined>>;
  run?: Run;
}): Promise<ManagedConfig | undefined> {
  const override = o.env[MANAGED_CONFIG_ENV];
  if (override || o.platform === 'linux' || (o.platform !== 'darwin' && o.platform !== 'win32')) {
    const file = override || LINUX_MANAGED_FILE;
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new AppError('CONFIG_INVALID', `The managed configuration ${file} could not be read.`, {
        cause: error,
      });
    }
    return { where: file, values: parse(text, file) };
  }
  const run = o.run ?? runCommand;
  if (o.platform === 'darwin') {
    let text: string;
    try {
      text = await run('plutil', ['-extract', 'Config', 'raw', '-o', '-', MAC_MANAGED_PLIST]);
    } catch {
      return undefined; // no profile installed, or no Config key in it
    }
    return { where: `${MAC_MANAGED_PLIST} (Config)`, values: parse(text, MAC_MANAGED_PLIST) };
  }
  let out: string;
  try {
    out = await run('reg', ['query', WINDOWS_POLICY_KEY, '/v', 'Config']);
  } catch {
    return undefined; // no policy key or value
  }
  const m = /^\s*Config\s+REG_(?:EXPAND_)?SZ\s+(.*)$/m.exec(out);
  if (!m) return undefined;
  return { where: `${WINDOWS_POLICY_KEY}\\Config`, values: parse(m[1]!.trim(), WINDOWS_POLICY_KEY) };
}

function parse(text: string, where: string): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new AppError(
      'CONFIG_INVALID',
      `The managed configuration ${where} is not valid JSON: ${(error as Error).message}`,
    );
  }
  if (!isObject(json))
    throw new AppError('CONFIG_INVALID', `The managed configuration ${where} must be a JSON object.`);
  return json;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The person's configuration with the organisation's laid over it: nested objects merge, any other
 * value (a string, a list, an array of upstreams) replaces the person's whole. `fields` lists the
 * managed leaves by dotted path (`idp.issuer`, `upstreams`).
 */
export function applyManaged(
  person: unknown,
  managed: Record<string, unknown>,
): { merged: Record<string, unknown>; fields: string[] } {
  const fields: string[] = [];
  const merge = (base: unknown, over: Record<string, unknown>, prefix: string): Record<string, unknown> => {
    const out: Record<string, unknown> = isObject(base) ? { ...base } : {};
    for (const [k, v] of Object.entries(over)) {
      const path = prefix ? `${prefix}.${k}` : k;
      if (isObject(v)) out[k] = merge(out[k], v, path);
      else {
        out[k] = v;
        fields.push(path);
      }
    }
    return out;
  };
  return { merged: merge(person, managed, ''), fields };
}

// Whether a setting's path is the organisation's: itself or anything above it is managed.
export { isManaged } from '../../../common/dotted-path.ts';
