/**
 * The desktop app with nothing configured opens the setup screen, as `countersign serve` does. The
 * Electron module is the Electron test double (test/helpers/electron-double.ts: the binary cannot exist
 * here); everything behind it is real: the shell's main.ts forks the core (recorded by the double) and
 * hands it a port, the core's desktop entry (main/core/desktop-core.ts) runs on that port with an empty
 * data folder, and the renderer, served in Chromium, reaches the core only through the IPC handlers the
 * shell registered, as the preload would. The person checks the lab's issuer (speaking as Keycloak),
 * saves, and the app runs on the saved file: sign-in goes out through the shell's openExternal (here
 * Chromium plays the system browser) and the core reports the signed-in user. Live events are not
 * carried to the page in this test (the double's window does not deliver them); the page reloads its
 * status after saving, as it does in the app. Once configured, a settings change reaches the file only
 * through the shell's native dialog (the double's showMessageBox, answered per test).
 */
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MessagePort } from 'node:worker_threads';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { CHANNEL_NAMES, channelsFor, type Channel, type ContractHandlers } from '../../common/contract.ts';
import { AppError, type WireError } from '../../common/errors.ts';
import { resolvePaths } from '../../common/paths.ts';
import { startLab, type Lab } from '../../lab/index.ts';
import { startDesktopCore } from '../../main/core/desktop-core.ts';
import { MemorySecretStore } from '../../main/core/secrets/memory-store.ts';
import { startWebServer, type WebServer } from '../../main/headless/web-server.ts';
import { launchBrowser, logInOnLabPage, type LabBrowser } from '../helpers/browser.ts';
import { createElectronDouble } from '../helpers/electron-double.ts';
import { fillSetupTargets } from '../helpers/setup-form.ts';
import { REPO_ROOT } from '../helpers/ui.ts';

// The Electron module is replaced by the Electron test double (the binary cannot exist here).
const double = createElectronDouble();
vi.mock('electron', () => double.electron);

const appFrame = { senderFrame: { url: 'app://countersign/index.html', parent: null } };
const quiet = { info: () => {}, warn: () => {}, error: () => {} };

let lab: Lab;
let browser: LabBrowser;
let dataDir: string;
let web: WebServer;
let desktop: Awaited<ReturnType<typeof startDesktopCore>>;

/** What the preload does: invoke the shell's IPC handler for a channel and unwrap its envelope. */
async function invoke(channel: Channel, request: unknown): Promise<unknown> {
  const handler = double.recorded.ipcHandlers.get(channel);
  if (!handler) throw new AppError('INPUT_INVALID', `The desktop shell has no handler for ${channel}.`);
  const envelope = (await handler(appFrame, request)) as { ok: true; value: unknown } | { ok: false; error: WireError };
  if (!envelope.ok) throw new AppError(envelope.error.code, envelope.error.message);
  return envelope.value;
}

beforeAll(async () => {
  [lab, browser, dataDir] = await Promise.all([
    startLab({ idpProfile: 'keycloak' }),
    launchBrowser(),
    mkdtemp(join(tmpdir(), 'cs-desktop-setup-')),
  ]);
  // The shell's userData folder is this empty one; its openExternal is Chromium playing the system browser.
  Object.assign(double.electron.app, { getPath: () => dataDir });
  Object.assign(double.electron.shell, { openExternal: (url: string) => logInOnLabPage(browser, url) });
  await import('../../main/electron/main.ts');
  for (let i = 0; i < 100 && !double.recorded.forks[0]?.corePort; i += 1) await new Promise((r) => setTimeout(r, 20));
  const fork = double.recorded.forks[0]!;
  const port = fork.corePort as MessagePort;
  const dataDirArg = fork.args.find((a) => a.startsWith('--data-dir='))!.slice('--data-dir='.length);
  desktop = await startDesktopCore(
    {
      postMessage: (m) => port.postMessage(m),
      onMessage: (l) => {
        port.on('message', l);
        return () => port.off('message', l);
      },
    },
    {
      dataDir: dataDirArg,
      paths: resolvePaths({ platform: process.platform, env: { ...process.env, COUNTERSIGN_HOME: dataDir }, home: homedir() }),
      secrets: new MemorySecretStore('this test keeps nothing between starts'),
      version: '0.0.0-test',
      log: quiet,
    },
  );
  // The renderer in Chromium, reaching the app only through the shell's IPC handlers.
  const desktopChannels = new Set<string>(channelsFor('electron'));
  const handlers = Object.fromEntries(
    CHANNEL_NAMES.map((name) => [
      name,
      (request: unknown) =>
        desktopChannels.has(name) ? invoke(name, request) : Promise.reject(new AppError('INPUT_INVALID', `${name} is not a desktop channel.`)),
    ]),
  ) as ContractHandlers;
  web = await startWebServer({ handlers, events: () => () => {}, staticDir: join(REPO_ROOT, 'dist', 'renderer') });
}, 120_000);

afterAll(async () => {
  await web?.close();
  await desktop?.stop();
  await browser?.close();
  await lab?.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
}, 60_000);

it('opens the setup screen when nothing is configured, and runs on what it saves', async () => {
  const file = join(dataDir, 'config.json');
  await expect(stat(file)).rejects.toMatchObject({ code: 'ENOENT' });
  // The setup channels are the desktop's too; everything else says what to do first.
  expect(channelsFor('electron')).toEqual(expect.arrayContaining(['setup.get', 'setup.discover', 'setup.check', 'setup.save']));
  expect(await invoke('status.get', {})).toMatchObject({ host: 'electron', setup: true });
  await expect(invoke('audit.page', {})).rejects.toMatchObject({ code: 'CONFIG_MISSING', message: expect.stringContaining('finish the setup screen first') });

  const page = await browser.context.newPage();
  await page.goto(web.issueLaunchUrl());
  await page.getByRole('heading', { name: 'Set up Countersign' }).waitFor({ timeout: 20_000 });
  // The screen names where it will write: the desktop core's data folder, from the shell's --data-dir.
  await page.getByText(file).first().waitFor({ timeout: 10_000 });
  await page.getByLabel('Issuer URL').fill(lab.issuer);
  await page.getByRole('button', { name: 'Check the identity provider' }).click();
  const idpFindings = page.getByRole('list', { name: 'Identity provider findings' });
  await idpFindings.waitFor({ timeout: 20_000 });
  expect(await idpFindings.textContent()).toContain('Token exchange (RFC 8693) is offered.');

  const form = page.getByRole('form', { name: 'Client, Vault and targets' });
  await fillSetupTargets(page, lab, 'scopes');
  await form.getByRole('button', { name: 'Check the configuration' }).click();
  const findings = page.getByRole('list', { name: 'Configuration findings' });
  await findings.waitFor({ timeout: 30_000 });
  expect(await findings.textContent()).toContain('The scopes delegation profile fits');

  await page.getByRole('button', { name: 'Save and continue' }).click();
  await page.getByRole('button', { name: 'Sign in with your identity provider' }).waitFor({ timeout: 30_000 });
  expect((await stat(file)).mode & 0o777).toBe(0o600);
  expect(JSON.parse(await readFile(file, 'utf8'))).toMatchObject({ idp: { issuer: lab.issuer, delegation: 'scopes' } });
  expect(desktop.core()).toBeDefined();
  expect(await invoke('status.get', {})).toMatchObject({ host: 'electron', idp: { issuer: lab.issuer, delegation: 'scopes' } });
  expect((await invoke('status.get', {})) as { setup?: boolean }).not.toMatchObject({ setup: true });

  // Sign-in goes out through the shell (its openExternal, the system browser), as in the app.
  await page.getByRole('button', { name: 'Sign in with your identity provider' }).click();
  await expect.poll(async () => ((await invoke('status.get', {})) as { user: { sub: string } | null }).user?.sub, { timeout: 30_000 }).toBeTruthy();
  await page.close();
}, 180_000);

it("writes a settings change only once the person applies it in the shell's native dialog, whoever asked for it", async () => {
  // A page that can call the channel (here the test, as a compromised renderer would) asks to point
  // Vault elsewhere: the shell shows the change, Cancel is the default, and nothing is written.
  const file = join(dataDir, 'config.json');
  const before = await readFile(file, 'utf8');
  const address = (JSON.parse(before) as { vault: { address: string } }).vault.address;
  const shown = double.recorded.messageBoxes.length;
  await expect(invoke('settings.save', { changes: { 'vault.address': 'https://vault.elsewhere.example:8200' } })).rejects.toMatchObject({ code: 'CANCELLED' });
  expect(await readFile(file, 'utf8')).toBe(before);
  const dialog = double.recorded.messageBoxes.at(-1)!.at(-1) as { detail: string; buttons: string[]; defaultId: number; cancelId: number };
  expect(double.recorded.messageBoxes.length).toBe(shown + 1);
  expect(dialog.detail).toContain(`vault.address: ${JSON.stringify(address)} → "https://vault.elsewhere.example:8200"`);
  expect(dialog.buttons[dialog.defaultId]).toBe('Cancel');
  expect(dialog.cancelId).toBe(dialog.defaultId);

  // Applied in the dialog, the change is written, the rest of the file kept.
  double.recorded.messageBoxAnswers.push(1);
  await expect(invoke('settings.save', { changes: { 'approvals.timeoutSeconds': 30 } })).resolves.toMatchObject({ appliesAt: 'next-start' });
  const after = JSON.parse(await readFile(file, 'utf8')) as { approvals: { timeoutSeconds: number }; vault: { address: string } };
  expect(after).toMatchObject({ approvals: { timeoutSeconds: 30 }, vault: { address } });

  // The file edited while the dialog was open (by hand, or by another window): what was confirmed is
  // not written over the edit.
  const edited = JSON.stringify({ ...after, approvals: { ...after.approvals, timeoutSeconds: 35 } }, null, 2);
  const showMessageBox = double.electron.dialog.showMessageBox;
  double.electron.dialog.showMessageBox = async (...args: unknown[]) => {
    await writeFile(file, edited);
    return showMessageBox(...args).then(() => ({ response: 1, checkboxChecked: false }));
  };
  try {
    await expect(invoke('settings.save', { changes: { 'approvals.timeoutSeconds': 40 } })).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
      message: expect.stringContaining('changed while the change was being confirmed'),
    });
  } finally {
    double.electron.dialog.showMessageBox = showMessageBox;
  }
  expect(await readFile(file, 'utf8')).toBe(edited);

  // A change too long for one dialog is not offered: the second button is not Apply, and nothing is written.
  const written = await readFile(file, 'utf8');
  double.recorded.messageBoxAnswers.push(1);
  const long = { 'vault.namespace': 'n'.repeat(2000), 'vault.authMount': 'm'.repeat(2000), 'idp.clientId': 'c'.repeat(2000) };
  await expect(invoke('settings.save', { changes: long })).rejects.toMatchObject({ code: 'CANCELLED' });
  expect(await readFile(file, 'utf8')).toBe(written);
  expect((double.recorded.messageBoxes.at(-1)!.at(-1) as { message: string; buttons: string[] })).toMatchObject({ message: expect.stringContaining('too long to show'), buttons: ['OK'] });
}, 60_000);
