/** The tray / menu-bar icon: who is signed in, how many approvals wait, and the few actions that matter. */
import type { MenuItemConstructorOptions } from 'electron';
import type { Status } from '../../common/contract.ts';

export interface TrayActions {
  /** Whether the app starts when the person logs in (off unless they turn it on). */
  startAtLogin: boolean;
  setStartAtLogin(on: boolean): void;
  open(): void;
  signIn(): void;
  signOut(): void;
  quit(): void;
}

export function trayTooltip(status: Status | null): string {
  if (!status) return 'Countersign: starting…';
  const who = status.user ? `signed in as ${status.user.name ?? status.user.email ?? status.user.sub}` : 'signed out';
  const pending = status.pendingApprovals > 0 ? `, ${status.pendingApprovals} approval(s) waiting` : '';
  return `Countersign${status.demo ? ' (lab)' : ''}: ${who}${pending}`;
}

export function trayMenu(status: Status | null, actions: TrayActions): MenuItemConstructorOptions[] {
  const signedIn = !!status?.user;
  return [
    { label: trayTooltip(status), enabled: false },
    { type: 'separator' },
    { label: 'Open Countersign', click: actions.open },
    signedIn ? { label: 'Sign out', click: actions.signOut } : { label: 'Sign in…', click: actions.signIn },
    { type: 'separator' },
    { label: 'Start at login', type: 'checkbox', checked: actions.startAtLogin, click: (item) => actions.setStartAtLogin(item.checked) },
    { label: 'Quit (finishes calls in flight)', click: actions.quit },
  ];
}
