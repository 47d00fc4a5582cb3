/**
 * Approval prompts as native dialogs. The dialog always has the main window as its parent (on macOS a
 * parentless message box blocks the main process), Deny is both the default and the cancel button, and
 * the core's AbortSignal (Claude cancelled, or the approval timed out) closes it. What will run is shown
 * whole: in parts when it is longer than a dialog can show (`dialogPages`). On macOS a tier-3 approval
 * additionally asks for Touch ID where the machine has it.
 */
import type { BrowserWindow, Dialog, SystemPreferences } from 'electron';
import type { ApprovalAnswer, ApprovalView } from '../../common/approval-view.ts';

export interface NativePrompterDeps {
  dialog: Pick<Dialog, 'showMessageBox'>;
  systemPreferences?: Pick<SystemPreferences, 'canPromptTouchID' | 'promptTouchID'>;
  parent: () => BrowserWindow | null;
  platform: NodeJS.Platform;
}

export const DENY_BUTTON = 0;
const APPROVE_BUTTON = 1;
/** On every part but the last, the second button reads on instead of approving. */
const NEXT_BUTTON = 1;
/**
 * The most of what will run one dialog shows. A message box does not scroll (NSAlert, GTK and the
 * Windows task dialog grow with their text), so a longer call is shown in parts of this size, one
 * dialog each, and Approve is offered only on the last: the whole text passes before the person's eyes.
 */
export const PART_CHARS = 2_000;

/** What will run, cut into parts on character boundaries (code points, never half a surrogate pair). */
function runParts(text: string, size = PART_CHARS): Array<{ from: number; to: number; text: string }> {
  const chars = [...text];
  const parts: Array<{ from: number; to: number; text: string }> = [];
  for (let at = 0; at < chars.length || parts.length === 0; at += size) {
    const piece = chars.slice(at, at + size);
    parts.push({ from: at + 1, to: at + piece.length, text: piece.join('') });
  }
  return parts;
}

/** The dialogs for one approval: one when what will run fits, else one per part, Approve on the last. */
function dialogPages(view: ApprovalView, signal: AbortSignal): Electron.MessageBoxOptions[] {
  const parts = runParts(view.argumentsText);
  const total = [...view.argumentsText].length;
  const head = [`Tool: ${view.tool}`, `Target: ${view.target}`, `Tier: ${view.tier} (${view.tier === 3 ? 'sensitive: asked every time' : 'write'})`, ''];
  return parts.map((part, i) => {
    const first = i === 0;
    const last = i === parts.length - 1;
    const lines = [
      ...head,
      ...(first ? ['Authorization requested from your identity provider:', ...view.authorization.map((a) => `  ${a}`), ''] : []),
      parts.length === 1
        ? 'Exactly what will run:'
        : `Exactly what will run, part ${i + 1} of ${parts.length} (characters ${part.from}–${part.to} of ${total}):`,
      part.text,
      '',
      last
        ? view.scope
          ? `Approving covers: ${view.scope}`
          : 'Approving covers this one call only.'
        : `Approve is offered after the last part. Next part shows characters ${part.to + 1}–${parts[i + 1]!.to}.`,
      `Digest: ${view.digest}`,
    ];
    return {
      type: 'warning',
      title: parts.length === 1 ? 'Countersign: approve a tool call?' : `Countersign: approve a tool call? (part ${i + 1} of ${parts.length})`,
      message: view.summary,
      detail: lines.join('\n'),
      buttons: ['Deny', last ? 'Approve' : 'Next part'],
      defaultId: DENY_BUTTON,
      cancelId: DENY_BUTTON,
      noLink: true,
      normalizeAccessKeys: false,
      signal,
    };
  });
}

/** The dialog when what will run fits in one (the first of `dialogPages` otherwise). */
export function dialogOptions(view: ApprovalView, signal: AbortSignal): Electron.MessageBoxOptions {
  return dialogPages(view, signal)[0]!;
}

export async function promptNatively(deps: NativePrompterDeps, view: ApprovalView, signal: AbortSignal): Promise<ApprovalAnswer> {
  const parent = deps.parent();
  if (!parent) return 'deny';
  const pages = dialogPages(view, signal);
  for (const [i, page] of pages.entries()) {
    const { response } = await deps.dialog.showMessageBox(parent, page);
    if (signal.aborted) return 'deny';
    if (response !== (i === pages.length - 1 ? APPROVE_BUTTON : NEXT_BUTTON)) return 'deny';
  }
  if (view.tier === 3 && deps.platform === 'darwin' && deps.systemPreferences?.canPromptTouchID()) {
    try {
      await deps.systemPreferences.promptTouchID(`approve ${view.tool} on ${view.target}`);
    } catch {
      return 'deny';
    }
  }
  return signal.aborted ? 'deny' : 'approve';
}
