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
 * status after saving, as it does in the app.
 */
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
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
