/**
 * A settings change as a native dialog before the core writes it (`shell.confirmSettings`): every
 * field, its value in the file and the value asked for, whole. Cancel is both the default and the
 * cancel button, and the dialog always has the main window as its parent. A change too long for one
 * dialog is not offered at all: what the person applies is what they were shown.
 */
import type { BrowserWindow, Dialog, MessageBoxOptions } from 'electron';
import type { SettingsChangeView } from '../../common/contract.ts';

export interface SettingsDialogDeps {
  dialog: Pick<Dialog, 'showMessageBox'>;
  parent: () => BrowserWindow | null;
}

const CANCEL_BUTTON = 0;
const APPLY_BUTTON = 1;
/** The most of a change one dialog shows (a message box does not scroll). */
export const SETTINGS_DIALOG_CHARS = 4_000;

/** Answers the core's `shell.confirmSettings`: `apply` only when the person presses Apply. */
export async function confirmSettings(deps: SettingsDialogDeps, view: SettingsChangeView): Promise<'apply' | 'cancel'> {
  const lines = view.changes.map((c) => `${c.path}: ${c.from ?? '(not set)'} → ${c.to ?? '(removed)'}`);
  const detail = lines.join('\n');
  const fits = detail.length <= SETTINGS_DIALOG_CHARS;
  const base = { type: 'warning', title: 'Countersign', noLink: true } as const;
  const options: MessageBoxOptions = fits
    ? {
        ...base,
        message: 'Change Countersign’s configuration?',
        detail: `${detail}\n\nCountersign's configuration decides which identity provider, Vault and services your calls trust, and how calls are approved. This is written to ${view.file} and applies when Countersign next starts.`,
        buttons: ['Cancel', 'Apply at next start'],
        defaultId: CANCEL_BUTTON,
        cancelId: CANCEL_BUTTON,
      }
    : {
        ...base,
        message: 'This change is too long to show here, so it was not saved.',
        detail: `Edit ${view.file} instead, then restart Countersign.`,
        buttons: ['OK'],
        defaultId: 0,
        cancelId: 0,
      };
  const parent = deps.parent();
  const { response } = parent ? await deps.dialog.showMessageBox(parent, options) : await deps.dialog.showMessageBox(options);
  return fits && response === APPLY_BUTTON ? 'apply' : 'cancel';
}
