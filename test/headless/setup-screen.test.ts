/**
 * First run without a text editor: `serve()` with no configuration file opens the web UI on the setup
 * screen; in Chromium a person fills in the lab's issuer (the lab speaking as Keycloak), client, Vault
 * and PostgreSQL, reads the doctor's findings, saves, signs in on the lab's page, and an MCP client
 * spawning the bridge makes a tier-1 `query` that succeeds and is recorded; between the two,
 * `countersign doctor` on the file the screen wrote exits 0. Nothing but the screen
 * writes the configuration. A broken configuration file still refuses to start, with its reason.
 */
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { CallToolResultSchema, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { mkdtemp, readFile, rm, stat, writeFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { DEMO_POLICY_FILE } from '../../lab/app-config.ts';
import { startLab, type Lab } from '../../lab/index.ts';
import type { LoadedConfig } from '../../main/core/config/config.ts';
import { MANAGED_CONFIG_ENV } from '../../main/core/config/managed.ts';
import { setupHandlers } from '../../main/core/setup/setup.ts';
import { runDoctorCommand } from '../../main/headless/doctor.ts';
import { runServe, serve, type Served } from '../../main/headless/start.ts';
import { fillSetupTargets } from '../helpers/setup-form.ts';
import { launchBrowser, logInOnLabPage, type LabBrowser } from '../helpers/browser.ts';
import { connectBuiltBridge, serveForTest, stopAll } from '../helpers/lab-core.ts';

let lab: Lab;
let browser: LabBrowser;
let home: string;
let served: Served;
let client: Client | undefined;
const quiet = { info: () => {}, warn: () => {}, error: () => {} };

beforeAll(async () => {
  [lab, browser, home] = await Promise.all([
    startLab({ idpProfile: 'keycloak' }),
    launchBrowser(),
    mkdtemp(join(tmpdir(), 'cs-setup-')),
  ]);
  served = await serveForTest({ configFile: join(home, 'config.json'), home, browser });
}, 90_000);

afterAll(() => stopAll([client, served, browser, lab], home), 60_000);

it('goes from no configuration to a first governed call using only the setup screen', async () => {
  const file = join(home, 'config.json');
  await expect(stat(file)).rejects.toMatchObject({ code: 'ENOENT' });
  expect(() => served.core).toThrow(/not configured yet/);

  const page = await browser.context.newPage();
  await page.goto(served.web.issueLaunchUrl());
  await page.getByRole('heading', { name: 'Set up Countersign' }).waitFor({ timeout: 20_000 });

  // 1. The issuer, and what its discovery says.
  const idpForm = page.getByRole('form', { name: 'Identity provider' });
  await idpForm.getByLabel('Issuer URL').fill(lab.issuer);
  await idpForm.getByRole('button', { name: 'Check the identity provider' }).click();
  const idpFindings = page.getByRole('list', { name: 'Identity provider findings' });
  await idpFindings.waitFor();
  const idpText = (await idpFindings.textContent())!;
  expect(idpText).toContain(`${lab.issuer} publishes its OpenID configuration.`);
  expect(idpText).toContain('Token exchange (RFC 8693) is offered.');
  expect(idpText).toContain('Dynamic client registration (RFC 7591) is offered.');

  // 2-4. Client, Vault, targets; the doctor's checks that need no sign-in.
  const form = page.getByRole('form', { name: 'Client, Vault and targets' });
  expect(await form.getByLabel(/Register this install as its own client/).isChecked()).toBe(true);
  await fillSetupTargets(page, lab, 'rar'); // the wrong profile first: the doctor says so
  const pg = new URL(lab.postgresUrl);
  await form.getByRole('button', { name: 'Check the configuration' }).click();
  const findings = page.getByRole('list', { name: 'Configuration findings' });
  await findings.waitFor({ timeout: 30_000 });
  expect(await findings.textContent()).toContain('Set idp.delegation to "scopes"');
  expect(await page.getByRole('button', { name: 'Save and continue' }).isVisible()).toBe(true);

  await form.getByLabel('Delegation profile').selectOption('scopes');
  await form.getByRole('button', { name: 'Check the configuration' }).click();
  await findings.waitFor({ timeout: 30_000 });
  const text = (await findings.textContent())!;
  expect(text).toContain('The scopes delegation profile fits');
  expect(text).toContain(`Vault at ${lab.vaultAddr} is initialized and unsealed`);
  expect(text).toContain('Vault has the role clinic-read at auth/jwt.');
  expect(text).toContain(`PostgreSQL at ${pg.hostname}:${pg.port} accepts connections.`);
  expect(text).toContain('No one is signed in, so no exchange was tried');
  expect(await stat(file).catch(() => null)).toBeNull(); // checking writes nothing

  // 5. Save: written owner-only, atomically (no temporary file left), and the app runs on it.
  await page.getByRole('button', { name: 'Save and continue' }).click();
  await page.getByRole('button', { name: 'Sign in with your identity provider' }).waitFor({ timeout: 30_000 });
  expect((await stat(file)).mode & 0o777).toBe(0o600);
  expect((await readdir(home)).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  const saved = JSON.parse(await readFile(file, 'utf8')) as { idp: { issuer: string; delegation: string }; vault: { address: string } };
  expect(saved.idp).toMatchObject({ issuer: lab.issuer, delegation: 'scopes' });
  expect(saved.vault.address).toBe(lab.vaultAddr);
  // The screen is for a first run only.
  await expect(served.core.handlers['setup.save']({ config: saved })).rejects.toMatchObject({ code: 'CONFIG_INVALID' });

  // The doctor on the file the screen wrote, with its own throwaway sign-in: a governed call can work.
  const doctorOut = new PassThrough();
  let doctorJson = '';
  doctorOut.on('data', (d: Buffer) => (doctorJson += d.toString()));
  const doctorCode = await runDoctorCommand(['--config', file, '--json'], {
    stdout: doctorOut,
    stderr: new PassThrough(),
    env: process.env,
    openExternal: (url) => logInOnLabPage(browser, url),
  });
  expect(JSON.parse(doctorJson)).toMatchObject({ ok: true, delegation: { configured: 'scopes', fits: 'scopes' } });
  expect(doctorCode).toBe(0);

  // Sign in from the page, on the lab's login page.
  await page.getByRole('button', { name: 'Sign in with your identity provider' }).click();
  await expect.poll(() => served.core.status().user?.sub, { timeout: 30_000 }).toBeTruthy();

  // A first governed call through the bridge, recorded.
  client = await connectBuiltBridge(home, { name: 'claude-ai', version: '0.1.0' });
  const before = served.core.audit.count({ kind: ['tool_call'] });
  const result = (await client.callTool({ name: 'query', arguments: { sql: 'SELECT count(*) AS n FROM patients' } }, CallToolResultSchema)) as CallToolResult;
  expect(result.isError, JSON.stringify(result.content)).toBeFalsy();
  expect(result.content).toEqual([{ type: 'text', text: expect.stringMatching(/^\| n \|\n\| --- \|\n\| \d+ \|\n\(1 row\)$/) }]);
  expect(served.core.audit.count({ kind: ['tool_call'] })).toBe(before + 1);
  const last = served.core.audit.page({ filter: { kind: ['tool_call'] }, limit: 1 }).records[0]!;
  expect(last).toMatchObject({ tool: 'query', outcome: 'success', delegation: 'scopes', user: { sub: served.core.status().user!.sub } });
  await page.close();
}, 180_000);

it('refuses a draft the schema refuses, saying which field, and writes nothing', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'cs-setup-bad-'));
  const file = join(dir, 'config.json');
  let started = 0;
  const h = setupHandlers({ file, platform: 'linux', env: {}, onSaved: async () => void (started += 1) });
  const draft = { idp: { issuer: lab.issuer, clientId: 'countersign-desktop', allowInsecureHttpForLoopbackOnly: true }, vault: { address: 'http://vault.example:8200' }, policyFile: DEMO_POLICY_FILE };
  try {
    const checked = await h['setup.check']({ config: draft });
    expect(checked.valid).toBe(false);
    expect(checked.findings[0]).toMatchObject({ party: 'configuration', status: 'fail', says: expect.stringContaining('vault.address') });
    await expect(h['setup.save']({ config: draft })).rejects.toMatchObject({ code: 'CONFIG_INVALID', message: expect.stringContaining('vault.address') });
    expect(await readdir(dir)).toEqual([]);
    expect(started).toBe(0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

it('shows the organisation’s managed fields with their values and does not let the screen change them', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'cs-setup-managed-'));
  const managedFile = join(dir, 'managed.json');
  await writeFile(managedFile, JSON.stringify({ vault: { address: lab.vaultAddr, allowInsecureHttpForLoopbackOnly: true } }));
  process.env[MANAGED_CONFIG_ENV] = managedFile;
  const s = await serve({ configFile: join(dir, 'config.json'), home: dir, log: quiet, openUi: async () => {} });
  try {
    const page = await browser.context.newPage();
    await page.goto(s.web.issueLaunchUrl());
    const note = page.getByRole('note', { name: 'Managed settings' });
    await note.waitFor({ timeout: 20_000 });
    expect(await note.textContent()).toContain('vault.address, vault.allowInsecureHttpForLoopbackOnly');
    await page.getByLabel('Issuer URL').fill(lab.issuer);
    await page.getByRole('button', { name: 'Check the identity provider' }).click();
    const vault = page.getByLabel('Vault address');
    await vault.waitFor();
    expect(await vault.isDisabled()).toBe(true);
    expect(await vault.inputValue()).toBe(lab.vaultAddr);
    // Whatever a draft says, the organisation's value is the one checked and run.
    let loaded: LoadedConfig | undefined;
    const h = setupHandlers({
      file: join(dir, 'config.json'),
      platform: 'linux',
      env: { [MANAGED_CONFIG_ENV]: managedFile },
      onSaved: async (l) => void (loaded = l),
    });
    const draft = { idp: { issuer: lab.issuer, clientId: 'c', allowInsecureHttpForLoopbackOnly: true }, vault: { address: 'https://elsewhere.example' }, policyFile: DEMO_POLICY_FILE };
    const checked = await h['setup.check']({ config: draft });
    expect(checked.valid).toBe(true);
    expect(checked.findings.map((f) => f.says).join(' ')).toContain(`Vault at ${lab.vaultAddr} is initialized and unsealed`);
    // Saved, the person's file holds no managed field, and the app runs on the organisation's value.
    await h['setup.save']({ config: draft });
    expect(JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'))).toMatchObject({ vault: {} });
    expect(JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')).vault).not.toHaveProperty('address');
    expect(loaded?.config.vault.address).toBe(lab.vaultAddr);
    expect(loaded?.managed?.fields).toContain('vault.address');
    await page.close();
  } finally {
    delete process.env[MANAGED_CONFIG_ENV];
    await s.stop();
    await rm(dir, { recursive: true, force: true });
  }
}, 60_000);

it('still refuses to start on a configuration file that is there but broken, with its reason', async () => {
  const bad = join(home, 'broken.json');
  await writeFile(bad, JSON.stringify({ idp: { issuer: 'not a url', clientId: 'x' } }));
  await expect(runServe(['--config', bad, '--no-open'])).rejects.toMatchObject({ code: 'CONFIG_INVALID', message: expect.stringContaining('idp.issuer') });
});
