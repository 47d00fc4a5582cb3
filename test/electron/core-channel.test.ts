/**
 * The desktop channel end to end between the shell (main/electron/main.ts, against the Electron test
 * double: the binary cannot exist here) and the core's half (main/core/shell-link.ts) over the real
 * MessageChannel the double hands the utility process. The core behind the link is the in-memory
 * fixture app; what is under test is the channel, both directions, through the contract's tables.
 */
import { beforeAll, describe, expect, it, vi } from 'vitest';
import type { ApprovalView } from '../../common/approval-view.ts';
import { fromEventPort } from '../../common/port-rpc.ts';
import { linkShell, type ShellLink } from '../../main/core/shell-link.ts';
import { createElectronDouble } from '../helpers/electron-double.ts';
import { createFixtureApp } from '../helpers/ui.ts';

const double = createElectronDouble();
vi.mock('electron', () => double.electron);

const appFrame = { url: 'app://countersign/index.html', parent: null };
const view: ApprovalView = {
  id: 'a1',
  tier: 2,
  tool: 'execute',
  target: 'postgres://lab/clinic',
  summary: 'Bounded UPDATE of appointments',
  authorization: ['postgres: UPDATE on appointments'],
  argumentsText: '{"sql":"UPDATE appointments SET slot = 3 WHERE id = 1"}',
  digest: 'sha256:00',
  requestedAt: new Date().toISOString(),
  expiresAt: new Date().toISOString(),
};

let link: ShellLink;
let stopped = 0;
const fixture = createFixtureApp();

beforeAll(async () => {
  await import('../../main/electron/main.ts');
  await new Promise((r) => setTimeout(r, 20));
  const port = double.recorded.forks[0]!.corePort!;
  link = linkShell(fromEventPort({ postMessage: (m) => port.postMessage(m), on: (_e, l) => port.on('message', (data) => l({ data })), off: () => undefined }));
  link.serve({ handlers: fixture.handlers, events: fixture.events, stop: async () => void (stopped += 1) });
});

const invoke = (channel: string, request: unknown) => double.recorded.ipcHandlers.get(channel)!({ senderFrame: appFrame }, request);

describe('the channel between the shell and the core', () => {
  it("carries the UI's calls through the shell to the core and back, validated on both sides", async () => {
    expect(await invoke('status.get', {})).toMatchObject({ ok: true, value: { user: { sub: 'alice' } } });
    expect(await invoke('audit.get', { seq: 'one' })).toMatchObject({ ok: false, error: { code: 'INPUT_INVALID' } });
  });

  it("answers the core's approval prompt with the native dialog's choice, Deny unless Approve was pressed", async () => {
    double.recorded.messageBoxAnswers.push(1);
    expect(await link.capabilities.prompter.prompt(view, new AbortController().signal)).toBe('approve');
    expect(await link.capabilities.prompter.prompt(view, new AbortController().signal)).toBe('deny');
    expect(String((double.recorded.messageBoxes.at(-1)![1] as { detail: string }).detail)).toContain('UPDATE appointments');
  });

  it('refuses a request from the core that its schema does not admit before the shell acts on it', async () => {
    const opened = vi.spyOn(double.electron.shell, 'openExternal');
    await expect(link.capabilities.openExternal('file:///etc/passwd')).rejects.toMatchObject({ code: 'INPUT_INVALID' });
    expect(opened).not.toHaveBeenCalled();
    await link.capabilities.openExternal('http://127.0.0.1:4000/oidc/auth?x=1');
    expect(opened).toHaveBeenCalledWith('http://127.0.0.1:4000/oidc/auth?x=1');
    const dialogs = double.recorded.saveDialogs.length;
    await expect(link.capabilities.chooseExportFile({ filename: 'a.exe', format: 'exe' as 'csv' })).rejects.toMatchObject({ code: 'INPUT_INVALID' });
    expect(double.recorded.saveDialogs).toHaveLength(dialogs);
  });

  it('drains the core when the app quits', async () => {
    double.electron.app.emit('before-quit', { preventDefault: () => undefined });
    await vi.waitFor(() => expect(stopped).toBe(1));
  });
});
