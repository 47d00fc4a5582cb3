/**
 * Changing the configuration on the settings screen, in Chromium, against `serve()` running the real
 * core on the lab: the organisation's managed configuration (COUNTERSIGN_MANAGED_CONFIG stands in for
 * /etc/countersign/config.json) fixes Vault's address. A person sees every field, changes one and saves
 * (validated, written owner-only through a temporary file, the rest of the file kept); a bad value is
 * refused naming the field, with everything typed still on the screen and the file untouched; a
 * managed field cannot be edited on the screen, and a request that tries anyway is refused.
 */
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { labAppConfig } from '../../lab/app-config.ts';
import { startLab, type Lab } from '../../lab/index.ts';
import { loadConfiguration } from '../../main/core/config/config.ts';
import { MANAGED_CONFIG_ENV } from '../../main/core/config/managed.ts';
import { serve, type Served } from '../../main/headless/start.ts';
import { launchBrowser, type LabBrowser } from '../helpers/browser.ts';

let lab: Lab;
let browser: LabBrowser;
let home: string;
let served: Served;
let file: string;
const quiet = { info: () => {}, warn: () => {}, error: () => {} };

beforeAll(async () => {
  [lab, browser, home] = await Promise.all([startLab(), launchBrowser(), mkdtemp(join(tmpdir(), 'cs-settings-edit-'))]);
  file = join(home, 'config.json');
  const managedFile = join(home, 'managed.json');
  await writeFile(file, JSON.stringify(labAppConfig(lab), null, 2), { mode: 0o600 });
  await writeFile(managedFile, JSON.stringify({ vault: { address: lab.vaultAddr } }));
  process.env[MANAGED_CONFIG_ENV] = managedFile;
  const { config, managed } = await loadConfiguration(file, { platform: 'linux', env: process.env });
  served = await serve({ config, ...(managed ? { managed } : {}), configFile: file, home, log: quiet, openUi: async () => {} });
}, 90_000);

afterAll(async () => {
  delete process.env[MANAGED_CONFIG_ENV];
  await served?.stop();
  await browser?.close();
  await lab?.stop();
  if (home) await rm(home, { recursive: true, force: true });
}, 60_000);

it('shows the configuration, saves a change atomically, refuses a bad value without losing what was typed, and keeps managed fields fixed', async () => {
  const page = await browser.context.newPage();
  await page.goto(served.web.issueLaunchUrl());
  await page.getByRole('tab', { name: 'Settings' }).click();
  const form = page.getByRole('form', { name: 'Configuration' });
  await form.waitFor({ timeout: 20_000 });

  // Every field is shown with its value; the organisation's is shown, marked, and cannot be edited.
  expect(await form.getByLabel(/^Issuer URL/).inputValue()).toBe(lab.issuer);
  const vault = form.getByLabel(/^Vault address/);
  expect(await vault.inputValue()).toBe(lab.vaultAddr);
  expect(await vault.isDisabled()).toBe(true);
  expect(await form.locator('label', { has: page.getByText('vault.address') }).textContent()).toContain('Managed by your organisation');
  expect(await form.getByLabel(/^Issuer URL/).isDisabled()).toBe(false);

  // A change, saved: only that field moves, the rest of the file is kept, written owner-only and whole.
  const before = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  await form.getByLabel(/^Approval time-out/).fill('30');
  await form.getByRole('button', { name: 'Save the configuration' }).click();
  await page.getByRole('status').filter({ hasText: 'Saved to' }).waitFor({ timeout: 10_000 });
  expect(await page.getByRole('status').filter({ hasText: 'Saved to' }).textContent()).toContain('from its next start');
  const after = JSON.parse(await readFile(file, 'utf8')) as { approvals: { timeoutSeconds: number } } & Record<string, unknown>;
  expect(after.approvals.timeoutSeconds).toBe(30);
  expect({ ...after, approvals: before.approvals }).toEqual(before);
  expect((await stat(file)).mode & 0o777).toBe(0o600);
  expect((await readdir(home)).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  // The managed value never enters the person's file.
  expect(after.vault).toEqual(before.vault);

  // A bad value: refused naming the field, nothing written, everything typed still there.
  const saved = await readFile(file, 'utf8');
  await form.getByLabel(/^Client ID/).fill('countersign-other');
  await form.getByLabel(/^PostgreSQL port/).fill('five thousand');
  await form.getByRole('button', { name: 'Save the configuration' }).click();
  const alert = form.getByRole('alert');
  await alert.waitFor({ timeout: 10_000 });
  expect(await alert.textContent()).toMatch(/CONFIG_INVALID.*postgres\.port/);
  expect(await form.getByLabel(/^PostgreSQL port/).inputValue()).toBe('five thousand');
  expect(await form.getByLabel(/^Client ID/).inputValue()).toBe('countersign-other');
  expect(await readFile(file, 'utf8')).toBe(saved);
  // Corrected, the same form saves both.
  await form.getByLabel(/^PostgreSQL port/).fill(new URL(lab.postgresUrl).port);
  await form.getByRole('button', { name: 'Save the configuration' }).click();
  await page.getByRole('status').filter({ hasText: 'Saved to' }).waitFor({ timeout: 10_000 });
  expect(JSON.parse(await readFile(file, 'utf8'))).toMatchObject({ idp: { clientId: 'countersign-other' } });
  await page.close();

  // A request that tries a managed field, or the section holding it, is refused and writes nothing.
  const now = await readFile(file, 'utf8');
  const attempts: Record<string, string | null>[] = [{ 'vault.address': 'https://vault.elsewhere.example' }, { vault: null }];
  for (const changes of attempts) {
    await expect(served.core.handlers['settings.save']({ changes })).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
      message: expect.stringMatching(/is managed by your organisation .* nothing was saved/),
    });
  }
  expect(await readFile(file, 'utf8')).toBe(now);
}, 120_000);
