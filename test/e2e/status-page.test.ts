/**
 * The status page reads true: Vault's state is what the Vault stand-in's `sys/health` answers (sealed,
 * unsealed, its version), and the count of calls is the audit timeline's, going up with each call.
 * The headless app on the lab, its UI in Chromium, calls from the MCP SDK client through the bridge.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labAppConfig } from '../../lab/app-config.ts';
import { startLab, type Lab } from '../../lab/index.ts';
import { parseAppConfig } from '../../main/core/config/config.ts';
import { serve, type Served } from '../../main/headless/start.ts';
import { launchBrowser, type LabBrowser } from '../helpers/browser.ts';
import { connectThroughEntry, signInOnDemoUi } from '../helpers/demo.ts';
import { REPO_ROOT, screenshotPath } from '../helpers/ui.ts';

const quiet = { info() {}, warn() {}, error() {} };
let lab: Lab;
let home: string;
let browser: LabBrowser;
let served: Served;
let ui: Page;

beforeAll(async () => {
  [lab, home, browser] = await Promise.all([startLab(), mkdtemp(path.join(tmpdir(), 'cs-status-home-')), launchBrowser()]);
  served = await serve({ config: parseAppConfig(labAppConfig(lab), 'lab configuration'), home, log: quiet, vaultHealthEveryMs: 250 });
  ui = await signInOnDemoUi(browser, served.url);
  await ui.getByRole('tab', { name: 'Status' }).click();
}, 60_000);

afterAll(async () => {
  await served?.stop();
  await browser?.close();
  await lab?.stop();
  if (home) await rm(home, { recursive: true, force: true });
}, 60_000);

const vaultCard = () => ui.getByRole('article', { name: 'Vault' });
const callsCard = () => ui.getByRole('article', { name: 'Calls' });

async function health(): Promise<{ status: number; sealed: boolean; version: string }> {
  const r = await fetch(`${lab.vaultAddr}/v1/sys/health`);
  const body = (await r.json()) as { sealed: boolean; version: string };
  return { status: r.status, ...body };
}

describe('the status page', () => {
  it("shows Vault's state as sys/health gives it, and follows the stand-in when it is sealed and unsealed", async () => {
    const before = await health();
    expect(before).toMatchObject({ status: 200, sealed: false });
    await vaultCard().getByText('Unsealed', { exact: true }).waitFor({ timeout: 10_000 });
    await vaultCard().getByText(`Vault ${before.version}, from its health endpoint`).waitFor();

    lab.vault.seal();
    try {
      expect(await health()).toMatchObject({ status: 503, sealed: true });
      await vaultCard().getByText('Sealed', { exact: true }).waitFor({ timeout: 10_000 });
      expect(served.core.status().vault).toMatchObject({ state: 'sealed', initialized: true, sealed: true });
      await ui.screenshot({ path: await screenshotPath('status-vault-sealed'), fullPage: true });
    } finally {
      lab.vault.unseal();
    }
    await vaultCard().getByText('Unsealed', { exact: true }).waitFor({ timeout: 10_000 });
  });

  it("counts the calls on the audit timeline, in all and for the client's session, as they are made", async () => {
    const start = served.core.audit.count({ kind: ['tool_call'] });
    await callsCard().getByText(String(start), { exact: true }).waitFor();
    const client = await connectThroughEntry({
      command: process.execPath,
      args: [path.join(REPO_ROOT, 'dist/bridge.mjs')],
      env: { COUNTERSIGN_HOME: home },
    });
    try {
      const result = await client.callTool({ name: 'query', arguments: { sql: 'SELECT count(*) AS n FROM patients' } });
      expect(result.isError ?? false, JSON.stringify(result.content)).toBe(false);
      await callsCard().getByText(String(start + 1), { exact: true }).waitFor({ timeout: 10_000 });
      const row = ui.getByRole('table', { name: 'Bridge sessions' }).getByRole('row').filter({ hasText: 'claude-desktop-stand-in' });
      await expect.poll(async () => (await row.getByRole('cell').last().textContent())?.trim(), { timeout: 10_000 }).toBe('1');

      // a call Vault refuses is a call too: it is on the timeline, and the status sees Vault sealed at once
      lab.vault.seal();
      const refused = await client.callTool({ name: 'query', arguments: { sql: 'SELECT 1 AS one' } });
      expect(refused.isError).toBe(true);
      await callsCard().getByText(String(start + 2), { exact: true }).waitFor({ timeout: 10_000 });
      await vaultCard().getByText('Sealed', { exact: true }).waitFor({ timeout: 10_000 });
    } finally {
      lab.vault.unseal();
      await client.close();
    }
    expect(served.core.audit.count({ kind: ['tool_call'] })).toBe(start + 2);
  });
});
