import { beforeAll, describe, expect, it, vi } from 'vitest';
import { createElectronDouble } from '../helpers/electron-double.ts';
import { CONTENT_SECURITY_POLICY, isTrustedSender } from '../../main/electron/hardening.ts';
import { handleInvoke } from '../../main/electron/ipc.ts';
import { dialogOptions, promptNatively, DENY_BUTTON } from '../../main/electron/native-prompter.ts';
import { resolveAppFile } from '../../main/electron/app-protocol.ts';
import { chooseExportFile } from '../../main/electron/save-dialog.ts';
import { channelsFor } from '../../common/contract.ts';
import { PortRpc } from '../../common/port-rpc.ts';
import type { ApprovalView } from '../../common/approval-view.ts';
import { CORE_V8_FLAGS } from '../../common/v8-flags.ts';

// The Electron module is replaced by a test double (the binary cannot exist here): see the helper.
const double = createElectronDouble();
vi.mock('electron', () => double.electron);

const view: ApprovalView = {
  id: 'a1',
  tier: 3,
  tool: 'execute',
  target: 'postgres://lab/clinic',
  summary: 'Unbounded DELETE of notes',
  authorization: ['postgres: DELETE on notes'],
  argumentsText: '{"sql":"DELETE FROM notes"}',
  digest: 'sha256:00',
  requestedAt: new Date().toISOString(),
  expiresAt: new Date().toISOString(),
};

describe('the desktop shell (against the Electron test double)', () => {
  beforeAll(async () => {
    await import('../../main/electron/main.ts');
    await new Promise((r) => setTimeout(r, 20));
  });

  it('builds every window with isolated, sandboxed, node-free webPreferences', () => {
    expect(double.recorded.windows.length).toBeGreaterThan(0);
    for (const w of double.recorded.windows) {
      const prefs = w.options.webPreferences as Record<string, unknown>;
      expect(prefs).toMatchObject({
        contextIsolation: true,
        sandbox: true,
        nodeIntegration: false,
        nodeIntegrationInWorker: false,
        nodeIntegrationInSubFrames: false,
        webSecurity: true,
        allowRunningInsecureContent: false,
        webviewTag: false,
      });
      expect(String(prefs.preload)).toMatch(/preload\.cjs$/);
      expect(w.loaded).toEqual(['app://countersign/index.html']);
    }
  });

  it('denies every permission request and check', () => {
    let granted: boolean | undefined;
    double.recorded.permissionHandler?.({}, 'media', (g) => (granted = g));
    expect(granted).toBe(false);
    expect(double.recorded.permissionCheck?.()).toBe(false);
  });

  it('blocks remote content and serves a strict CSP on every response', () => {
    const cancel = (url: string) => {
      let r: boolean | undefined;
      double.recorded.beforeRequest?.({ url }, (x) => (r = x.cancel));
      return r;
    };
    expect(cancel('https://example.com/x.js')).toBe(true);
    expect(cancel('app://countersign/index.html')).toBe(false);
    let headers: Record<string, string[]> = {};
    double.recorded.headersReceived?.({ responseHeaders: {} }, (r) => (headers = r.responseHeaders));
    expect(headers['Content-Security-Policy']).toEqual([CONTENT_SECURITY_POLICY]);
    expect(CONTENT_SECURITY_POLICY).toContain("script-src 'self'");
    expect(CONTENT_SECURITY_POLICY).toContain("frame-ancestors 'none'");
    expect(CONTENT_SECURITY_POLICY).not.toMatch(/unsafe-inline|unsafe-eval/);
  });

  it('registers exactly the contract channels available on the desktop', () => {
    expect([...double.recorded.ipcHandlers.keys()].sort()).toEqual(channelsFor('electron').sort());
    expect(double.recorded.ipcHandlers.has('approvals.decide')).toBe(false);
  });

  it('starts the core in a utility process and reaches it over a message port', () => {
    expect(double.recorded.forks).toHaveLength(1);
    expect(double.recorded.forks[0]?.modulePath).toMatch(/core\.mjs$/);
    expect(double.recorded.forks[0]?.corePort).toBeDefined();
  });

  it("gives the core's utility process the core's V8 options, as Electron reads them (--js-flags)", () => {
    expect(double.recorded.forks[0]?.options?.execArgv).toEqual([`--js-flags=${CORE_V8_FLAGS.join(' ')}`]);
    expect(CORE_V8_FLAGS).toContain('--liftoff-only');
  });

  it("answers the core's request for an export path with the native save dialog over the app window", async () => {
    const port = double.recorded.forks[0]!.corePort!;
    const core = new PortRpc({
      postMessage: (m) => port.postMessage(m),
      onMessage: (l) => {
        port.on('message', l);
        return () => port.off('message', l);
      },
    });
    try {
      double.recorded.saveDialogAnswer = { canceled: true };
      expect(await core.call('shell.chooseExportFile', { filename: 'countersign-audit-x.jsonl', format: 'jsonl' })).toEqual({});
      const [parent, options] = double.recorded.saveDialogs.at(-1)!;
      expect((parent as { record?: unknown }).record).toBe(double.recorded.windows.at(-1));
      expect(options).toMatchObject({ defaultPath: '/tmp/countersign-electron-double/countersign-audit-x.jsonl', filters: [{ extensions: ['jsonl'] }] });
      double.recorded.saveDialogAnswer = { canceled: false, filePath: '/home/alice/audit.jsonl' };
      expect(await core.call('shell.chooseExportFile', { filename: 'countersign-audit-x.jsonl', format: 'jsonl' })).toEqual({ path: '/home/alice/audit.jsonl' });
    } finally {
      core.close();
    }
  });
});

describe('the core asking for the person', () => {
  it('brings the app window to the front when the core asks (a call before sign-in, `countersign open`)', async () => {
    const port = double.recorded.forks[0]!.corePort!;
    const core = new PortRpc({
      postMessage: (m) => port.postMessage(m),
      onMessage: (l) => {
        port.on('message', l);
        return () => port.off('message', l);
      },
    });
    try {
      const window = double.recorded.windows.at(-1)!;
      const before = window.focused;
      expect(await core.call('shell.present', {})).toEqual({});
      expect(window.focused).toBe(before + 1);
    } finally {
      core.close();
    }
  });
});

describe('IPC handlers', () => {
  const core = { call: vi.fn(async () => ({ ok: true })) };

  it('refuse a sender that is not the app window', async () => {
    for (const frame of [null, { url: 'https://evil.example/', parent: null }, { url: 'file:///etc/passwd', parent: null }]) {
      const r = await handleInvoke(core, 'session.signOut', { senderFrame: frame as never }, {});
      expect(r).toMatchObject({ ok: false, error: { code: 'INPUT_INVALID' } });
    }
    expect(core.call).not.toHaveBeenCalled();
  });

  it('refuse a subframe even of the app origin', () => {
    expect(isTrustedSender({ url: 'app://countersign/index.html', parent: {} as never })).toBe(false);
    expect(isTrustedSender({ url: 'app://countersign/index.html', parent: null })).toBe(true);
  });

  it('validate the request with the contract before the core sees it', async () => {
    const frame = { url: 'app://countersign/index.html', parent: null } as never;
    const bad = await handleInvoke(core, 'audit.get', { senderFrame: frame }, { seq: 'one' });
    expect(bad).toMatchObject({ ok: false, error: { code: 'INPUT_INVALID' } });
    expect(core.call).not.toHaveBeenCalled();
    const good = await handleInvoke(core, 'session.signOut', { senderFrame: frame }, {});
    expect(good).toEqual({ ok: true, value: { ok: true } });
  });

  it('strip fields the contract does not name from responses', async () => {
    const leaky = { call: async () => ({ ok: true, refresh_token: 'rt-secret' }) };
    const frame = { url: 'app://countersign/index.html', parent: null } as never;
    const r = await handleInvoke(leaky, 'session.signOut', { senderFrame: frame }, {});
    expect(JSON.stringify(r)).not.toContain('rt-secret');
  });
});

describe('the native approval dialog', () => {
  it('defaults to Deny, cancels to Deny and carries the abort signal', () => {
    const signal = new AbortController().signal;
    const o = dialogOptions(view, signal);
    expect(o.buttons?.[DENY_BUTTON]).toBe('Deny');
    expect(o.defaultId).toBe(DENY_BUTTON);
    expect(o.cancelId).toBe(DENY_BUTTON);
    expect(o.signal).toBe(signal);
    expect(o.detail).toContain('DELETE FROM notes');
  });

  it('always has a parent window, and denies when there is none', async () => {
    const showMessageBox = vi.fn(async (..._args: unknown[]) => ({ response: 1, checkboxChecked: false }));
    const parent = {} as never;
    expect(await promptNatively({ dialog: { showMessageBox }, parent: () => parent, platform: 'linux' }, view, new AbortController().signal)).toBe('approve');
    expect(showMessageBox.mock.calls[0]?.[0]).toBe(parent);
    expect(await promptNatively({ dialog: { showMessageBox }, parent: () => null, platform: 'linux' }, view, new AbortController().signal)).toBe('deny');
  });

  it('denies when the call is cancelled while the dialog is open', async () => {
    const c = new AbortController();
    const showMessageBox = vi.fn(async () => (c.abort(), { response: 1, checkboxChecked: false }));
    expect(await promptNatively({ dialog: { showMessageBox }, parent: () => ({}) as never, platform: 'linux' }, view, c.signal)).toBe('deny');
  });

  it('asks for Touch ID on macOS for tier 3 and denies when it fails', async () => {
    const showMessageBox = async () => ({ response: 1, checkboxChecked: false });
    const systemPreferences = { canPromptTouchID: () => true, promptTouchID: vi.fn(async () => Promise.reject(new Error('cancelled'))) };
    const r = await promptNatively({ dialog: { showMessageBox }, systemPreferences, parent: () => ({}) as never, platform: 'darwin' }, view, new AbortController().signal);
    expect(r).toBe('deny');
    expect(systemPreferences.promptTouchID).toHaveBeenCalled();
  });
});

describe('the app:// protocol', () => {
  it('serves files inside the renderer only', () => {
    expect(resolveAppFile('/opt/app/renderer', 'app://countersign/index.html')).toBe('/opt/app/renderer/index.html');
    expect(resolveAppFile('/opt/app/renderer', 'app://countersign/')).toBe('/opt/app/renderer/index.html');
    expect(resolveAppFile('/opt/app/renderer', 'app://countersign/..%2f..%2fetc/passwd')).toBeNull();
    expect(resolveAppFile('/opt/app/renderer', 'app://other/index.html')).toBeNull();
    expect(resolveAppFile('/opt/app/renderer', 'https://countersign/index.html')).toBeNull();
  });
});

describe('the tray', () => {
  it('shows who is signed in and how many approvals wait, and offers start at login (off by default)', async () => {
    const { trayMenu, trayTooltip } = await import('../../main/electron/tray.ts');
    const status = {
      host: 'electron' as const,
      version: '0.1.0',
      demo: false,
      user: { sub: 'a', name: 'Alice' },
      session: { state: 'signed_in' as const },
      idp: { issuer: 'https://idp', state: 'ok' as const, delegation: 'rar' as const },
      vault: { address: 'https://vault', state: 'ok' as const },
      claudeDesktop: { configured: true, connected: true },
      bridgeSessions: [],
      pendingApprovals: 2,
      calls: 0,
    };
    expect(trayTooltip(status)).toBe('Countersign: signed in as Alice, 2 approval(s) waiting');
    let set: boolean | undefined;
    const menu = trayMenu(status, { startAtLogin: false, setStartAtLogin: (on) => (set = on), open() {}, signIn() {}, signOut() {}, quit() {} });
    const item = menu.find((m) => m.label === 'Start at login')!;
    expect(item).toMatchObject({ type: 'checkbox', checked: false });
    (item.click as (i: { checked: boolean }) => void)({ checked: true });
    expect(set).toBe(true);
    expect(menu.map((m) => m.label)).toContain('Sign out');
  });
});

describe('the export save dialog', () => {
  const dialog = (answer: { canceled: boolean; filePath?: string }) => {
    const calls: unknown[][] = [];
    return { calls, showSaveDialog: async (...args: unknown[]) => (calls.push(args), answer) };
  };

  it('never uses a suggested name with a path in it, and refuses a format it does not know', async () => {
    const d = dialog({ canceled: true });
    const deps = { dialog: d as never, parent: () => null, downloads: '/home/u/Downloads' };
    await chooseExportFile(deps, { filename: '../../.ssh/authorized_keys', format: 'csv' });
    expect(d.calls[0]![0]).toMatchObject({ defaultPath: '/home/u/Downloads/countersign-audit.csv', filters: [{ extensions: ['csv'] }] });
    await expect(chooseExportFile(deps, { filename: 'x.exe', format: 'exe' })).rejects.toThrow(/JSON Lines or CSV/);
    expect(d.calls).toHaveLength(1);
  });

  it('answers nothing when the dialog is cancelled or returns no path', async () => {
    const deps = (answer: { canceled: boolean; filePath?: string }) => ({ dialog: dialog(answer) as never, parent: () => null, downloads: '/d' });
    expect(await chooseExportFile(deps({ canceled: true, filePath: '/d/a.jsonl' }), { format: 'jsonl' })).toEqual({});
    expect(await chooseExportFile(deps({ canceled: false, filePath: '' }), { format: 'jsonl' })).toEqual({});
  });
});
