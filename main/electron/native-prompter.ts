/**
 * Approval prompts as native dialogs. The dialog always has the main window as its parent (on macOS a
 * parentless message box blocks the main process), Deny is both the default and the cancel button, and
 * the core's AbortSignal (Claude cancelled, or the approval timed out) closes it. On macOS a tier-3
 * approval additionally asks for Touch ID where the machine has it.
 */
import type { BrowserWindow, Dialog, SystemPreferences } from 'electron';
import type { ApprovalDecision, ApprovalView } from '../../common/approval-view.ts';

export interface NativePrompterDeps {
  dialog: Pick<Dialog, 'showMessageBox'>;
  systemPreferences?: Pick<SystemPreferences, 'canPromptTouchID' | 'promptTouchID'>;
  parent: () => BrowserWindow | null;
  platform: NodeJS.Platform;
}

export const DENY_BUTTON = 0;
export const APPROVE_BUTTON = 1;

export function dialogOptions(view: ApprovalView, signal: AbortSignal): Electron.MessageBoxOptions {
  const lines = [
    `Tool: ${view.tool}`,
    `Target: ${view.target}`,
    `Tier: ${view.tier} (${view.tier === 3 ? 'sensitive: asked every time' : 'write'})`,
    '',
    'Authorization requested from your identity provider:',
    ...view.authorization.map((a) => `  ${a}`),
    '',
    'Exactly what will run:',
    view.argumentsText,
    '',
    view.scope ? `Approving covers: ${view.scope}` : 'Approving covers this one call only.',
    `Digest: ${view.digest}`,
  ];
  return {
    type: 'warning',
    title: 'Countersign: approve a tool call?',
    message: view.summary,
    detail: lines.join('\n'),
    buttons: ['Deny', 'Approve'],
    defaultId: DENY_BUTTON,
    cancelId: DENY_BUTTON,
    noLink: true,
    normalizeAccessKeys: false,
    signal,
  };
}

export async function promptNatively(deps: NativePrompterDeps, view: ApprovalView, signal: AbortSignal): Promise<ApprovalDecision> {
  const parent = deps.parent();
  if (!parent) return 'deny';
  const { response } = await deps.dialog.showMessageBox(parent, dialogOptions(view, signal));
  if (signal.aborted || response !== APPROVE_BUTTON) return 'deny';
  if (view.tier === 3 && deps.platform === 'darwin' && deps.systemPreferences?.canPromptTouchID()) {
    try {
      await deps.systemPreferences.promptTouchID(`approve ${view.tool} on ${view.target}`);
    } catch {
      return 'deny';
    }
  }
  return signal.aborted ? 'deny' : 'approve';
}
