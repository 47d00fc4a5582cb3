/**
 * Where an audit export goes on the desktop: the native save dialog, over the app's window, starting in
 * the person's Downloads folder with the core's suggested name. The path comes from the dialog alone,
 * never from the renderer, so a compromised page cannot make the core write anywhere.
 */
import type { BaseWindow, Dialog, SaveDialogOptions } from 'electron';
import { join } from 'node:path';

const FILTERS: Record<'jsonl' | 'csv', { name: string; extensions: string[] }> = {
  jsonl: { name: 'JSON Lines', extensions: ['jsonl'] },
  csv: { name: 'CSV', extensions: ['csv'] },
};

export interface SaveDialogDeps {
  dialog: Pick<Dialog, 'showSaveDialog'>;
  parent: () => BaseWindow | null;
  /** app.getPath('downloads'). */
  downloads: string;
}

/** Answers the core's `shell.chooseExportFile`: `{ path }`, or `{}` when the person cancels. */
export async function chooseExportFile(deps: SaveDialogDeps, params: unknown): Promise<{ path?: string }> {
  const { filename, format } = (params ?? {}) as { filename?: unknown; format?: unknown };
  if (format !== 'jsonl' && format !== 'csv') throw new Error('An export is JSON Lines or CSV.');
  // the suggested name is the core's own; anything with a separator in it is not used as given
  const name = typeof filename === 'string' && /^[\w.-]{1,200}$/.test(filename) ? filename : `countersign-audit.${format}`;
  const options: SaveDialogOptions = {
    title: 'Export the audit timeline',
    defaultPath: join(deps.downloads, name),
    buttonLabel: 'Export',
    filters: [FILTERS[format]],
    properties: ['createDirectory', 'showOverwriteConfirmation'],
  };
  const parent = deps.parent();
  const result = parent ? await deps.dialog.showSaveDialog(parent, options) : await deps.dialog.showSaveDialog(options);
  return result.canceled || !result.filePath ? {} : { path: result.filePath };
}
