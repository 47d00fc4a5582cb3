/**
 * Managed configuration end to end: the organisation's file (COUNTERSIGN_MANAGED_CONFIG stands in for
 * /etc/countersign/config.json) overrides the person's Vault address, the real core runs on the lab
 * with it, and the settings screen in Chromium shows which fields are the organisation's, offers
 * nothing to change them, and the web host has no channel that would.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CHANNELS } from '../../common/contract.ts';
import { labAppConfig } from '../../lab/app-config.ts';
import { startLab, type Lab } from '../../lab/index.ts';
import type { Core } from '../../main/core/app.ts';
import { loadConfiguration } from '../../main/core/config/config.ts';
import { MANAGED_CONFIG_ENV } from '../../main/core/config/managed.ts';
import { startWebServer, type WebServer } from '../../main/headless/web-server.ts';
import { startLabCore } from '../helpers/lab-core.ts';
import { buildRenderer, launchBrowser, memorySecrets, type Browser } from '../helpers/ui.ts';

let lab: Lab;
let home: string;
let renderer: { dir: string; dispose(): Promise<void> };
let browser: Browser;
let core: Core;
let server: WebServer;

beforeAll(async () => {
  [lab, renderer, browser, home] = await Promise.all([
    startLab(),
    buildRenderer(),
    launchBrowser(),
    mkdtemp(join(tmpdir(), 'countersign-managed-home-')),
  ]);
  const personFile = join(home, 'config.json');
  const managedFile = join(home, 'managed.json');
  // The person points Vault somewhere else; the organisation's address wins.
  await writeFile(
    personFile,
    JSON.stringify({
      ...labAppConfig(lab),
      vault: { address: 'http://127.0.0.1:9', authMount: 'jwt', allowInsecureHttpForLoopbackOnly: true },
    }),
  );
  await writeFile(
    managedFile,
    JSON.stringify({ vault: { address: lab.vaultAddr }, idp: { delegation: 'rar' } }),
  );
  const { config, managed } = await loadConfiguration(personFile, {
    platform: 'linux',
    env: { [MANAGED_CONFIG_ENV]: managedFile },
  });
  core = await startLabCore({ lab, home, config, ...(managed ? { managed } : {}), secrets: memorySecrets() });
  server = await startWebServer({ handlers: core.handlers, events: core.events, staticDir: renderer.dir });
}, 90_000);

afterAll(async () => {
  await server?.close();
  await core?.stop();
  await browser?.close();
  await lab?.stop();
  await Promise.all([renderer?.dispose(), home && rm(home, { recursive: true, force: true })]);
}, 60_000);

it('shows the organisation’s fields as managed, with its values, and offers no way to change them', async () => {
  const page = await browser.context.newPage();
  await page.goto(server.url);
  await page.getByRole('tab', { name: 'Settings' }).click();
  const note = page.getByRole('note', { name: 'Managed settings' });
  await note.waitFor();
  expect(await note.textContent()).toContain('vault.address, idp.delegation');
  const vault = page.getByRole('article', { name: 'Vault settings' });
  const vaultText = (await vault.textContent())!;
  expect(vaultText).toContain(lab.vaultAddr);
  expect(vaultText).not.toContain('127.0.0.1:9/');
  expect(vaultText).toContain('Managed by your organisation');
  // The issuer is the person's own: not marked.
  expect(await page.getByRole('article', { name: 'Identity provider settings' }).textContent()).not.toContain(
    'Managed by your organisation',
  );
  // The cards only show; the configuration form is where a field changes, and a managed one is disabled there.
  expect(await vault.locator('input, select, textarea, [contenteditable="true"]').count()).toBe(0);
  expect(
    await page
      .getByRole('article', { name: 'Identity provider settings' })
      .locator('input, select, textarea')
      .count(),
  ).toBe(0);
  await page.close();
  // The one channel that writes configuration refuses the managed fields (test/headless/settings-edit.test.ts).
  expect(Object.keys(CHANNELS).filter((name) => name.startsWith('settings.'))).toEqual(['settings.get', 'settings.config', 'settings.save']);
});
