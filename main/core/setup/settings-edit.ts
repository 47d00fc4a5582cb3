/**
 * Changing the configuration from the settings screen. The screen sends only the fields the person
 * changed, by dotted path; each save reads the person's file afresh, refuses any field the
 * organisation manages (managed.ts), lays the changes over the file, validates the result with the
 * organisation's fields laid over it exactly as a start would, and writes it owner-only and atomically
 * (setup.ts's writeOwnerOnly). A refused save writes nothing and names the field; the screen keeps what
 * the person typed. The running app takes the new file at its next start, and says so.
 *
 * On the desktop every save is shown in a native dialog (`confirm`, the shell's `shell.confirmSettings`)
 * before it is written, field by field, old value and new: these fields say which identity provider,
 * Vault and databases the person's calls trust, so a page that could call the channel (a compromised
 * renderer) cannot point them elsewhere unseen, as it cannot approve a call. The headless host has no
 * such dialog; its web UI is the host's own.
 */
import { readFile } from 'node:fs/promises';
import type { ContractHandlers, SettingsChangeView } from '../../../common/contract.ts';
import { SHOWN_VALUE_CHARS } from '../../../common/contract/settings.ts';
import { valueAt } from '../../../common/dotted-path.ts';
import { AppError } from '../../../common/errors.ts';
import { AppConfigSchema, parseAppConfig } from '../config/config.ts';
import { applyManaged, isManaged, readManagedConfig } from '../config/managed.ts';
import { writeOwnerOnly } from './setup.ts';

type EditChannel = 'settings.config' | 'settings.save';

export interface SettingsEditOptions {
  /** The person's configuration file (`<dataDir>/config.json` or `--config FILE`). */
  file: string;
  platform: NodeJS.Platform;
  env: Readonly<Record<string, string | undefined>>;
  /** The desktop shell's native confirmation: true only when the person applies the change. Absent: none is asked. */
  confirm?: (view: SettingsChangeView) => Promise<boolean>;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export function settingsEditHandlers(o: SettingsEditOptions): Pick<ContractHandlers, EditChannel> {
  const own = async (): Promise<Record<string, unknown>> => {
    let text: string;
    try {
      text = await readFile(o.file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {}; // the managed configuration alone
      throw new AppError('CONFIG_INVALID', `${o.file} could not be read.`, { cause: error });
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw new AppError('CONFIG_INVALID', `${o.file} is not valid JSON: ${(error as Error).message}`);
    }
    if (!isObject(json)) throw new AppError('CONFIG_INVALID', `${o.file} must hold a JSON object.`);
    return json;
  };
  return {
    'settings.config': async () => {
      const [person, managed] = await Promise.all([own(), readManagedConfig(o)]);
      const merged = managed ? applyManaged(person, managed.values).merged : person;
      // Shown with the defaults a start fills in (a time-out the file leaves out is shown as 45, not blank).
      const parsed = AppConfigSchema.safeParse(merged);
      return {
        file: o.file,
        config: parsed.success ? (parsed.data as Record<string, unknown>) : merged,
        managed: managed ? { where: managed.where, fields: applyManaged({}, managed.values).fields } : null,
      };
    },
    'settings.save': async ({ changes }) => {
      const [person, managed] = await Promise.all([own(), readManagedConfig(o)]);
      const fields = managed ? applyManaged({}, managed.values).fields : [];
      const paths = Object.keys(changes);
      if (paths.length === 0) throw new AppError('INPUT_INVALID', 'Nothing was changed.');
      // A managed field, or a section holding one (replacing the section would drop it from the file's view).
      const locked = paths.find((p) => isManaged(fields, p) || fields.some((f) => f.startsWith(`${p}.`)));
      if (locked) {
        throw new AppError(
          'CONFIG_INVALID',
          `${locked} is managed by your organisation (${managed!.where}) and cannot be changed here; nothing was saved.`,
        );
      }
      const next = structuredClone(person);
      for (const [p, value] of Object.entries(changes)) setPath(next, p, value);
      const merged = managed ? applyManaged(next, managed.values).merged : next;
      parseAppConfig(merged, 'The configuration'); // names the field at fault; nothing is written then
      if (o.confirm) {
        const view = { file: o.file, changes: paths.map((p) => ({ path: p, from: shown(valueAt(person, p)), to: shown(changes[p]) })) };
        if (!(await o.confirm(view))) {
          throw new AppError('CANCELLED', "The change was not applied in Countersign's confirmation dialog; nothing was saved.");
        }
        // What was confirmed is written over the file as it was shown: an edit made meanwhile is not lost unseen.
        if (JSON.stringify(await own()) !== JSON.stringify(person)) {
          throw new AppError('CONFIG_INVALID', `${o.file} changed while the change was being confirmed; nothing was saved. Open the settings again and retry.`);
        }
      }
      await writeOwnerOnly(o.file, `${JSON.stringify(next, null, 2)}\n`);
      return { file: o.file, appliesAt: 'next-start' as const };
    },
  };
}

/**
 * A value as the confirmation shows it: JSON; null when absent or removed. A value asked for is a
 * string of at most 2,000 characters, a number or a boolean, so only an old value (a whole section the
 * change replaces) can be cut to the limit.
 */
function shown(value: unknown): string | null {
  if (value === undefined || value === null) return null;
  const text = JSON.stringify(value);
  return text.length > SHOWN_VALUE_CHARS ? `${text.slice(0, SHOWN_VALUE_CHARS - 1)}…` : text;
}

/** Sets (or with null, removes) a dotted path, making the objects on the way. */
function setPath(target: Record<string, unknown>, dotted: string, value: unknown): void {
  const keys = dotted.split('.');
  let at: Record<string, unknown> = target;
  for (const k of keys.slice(0, -1)) {
    if (!isObject(at[k])) at[k] = {};
    at = at[k] as Record<string, unknown>;
  }
  const last = keys.at(-1)!;
  if (value === null) delete at[last];
  else at[last] = value;
}
