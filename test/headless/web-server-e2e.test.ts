/**
 * End to end on the lab: the real core (sign-in, broker, Vault stand-in, PostgreSQL, audit store,
 * approvals) behind the headless web host, the UI in Chromium, and an MCP SDK client calling tools
 * through the bridge as Claude Desktop does. Chromium also plays the system browser for sign-in.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/sdk/client/stdio.js';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLab, type Lab } from '../../lab/index.ts';
import type { Core } from '../../main/core/app.ts';
import { mcpConfigEntry } from '../../main/core/claude-desktop/config.ts';
import { startWebServer, type WebServer } from '../../main/headless/web-server.ts';
import { startLabCore } from '../helpers/lab-core.ts';
import { describeHits, scanForSecrets } from '../helpers/secret-scan.ts';
import { REPO_ROOT, buildRenderer, launchBrowser, memorySecrets, screenshotPath, type Browser } from '../helpers/ui.ts';

/** expect.poll with a time-out for a loaded CI machine (two cores shared with other suites). */
const poll: typeof expect.poll = (fn, options) => expect.poll(fn, { timeout: 15_000, ...options });


let lab: Lab;
let home: string;
let renderer: { dir: string; dispose(): Promise<void> };
let browser: Browser;
let core: Core;
let server: WebServer;
let client: Client;
let page: Page;

const secrets = memorySecrets();

beforeAll(async () => {
  [lab, renderer, browser, home] = await Promise.all([
    startLab(),
    buildRenderer(),
    launchBrowser({ acceptDownloads: true }),
    mkdtemp(join(tmpdir(), 'countersign-e2e-home-')),
  ]);
  // Chromium stands in for the system browser: it logs in as alice on the lab IdP's page.
  core = await startLabCore({ lab, home, browser, version: '0.1.0', secrets });
  server = await startWebServer({ handlers: core.handlers, events: core.events, staticDir: renderer.dir });
  page = await browser.context.newPage();
  await page.goto(server.url);
}, 60_000);

afterAll(async () => {
  await client?.close().catch(() => {});
  await page?.close().catch(() => {});
  await server?.close();
  await core?.stop();
  await browser?.close();
  await lab?.stop();
  await Promise.all([renderer?.dispose(), home && rm(home, { recursive: true, force: true })]);
}, 60_000);

function connectClient(): Promise<void> {
  const entry = mcpConfigEntry({ countersignHome: home, bridgePath: join(REPO_ROOT, 'bridge', 'main.ts') });
  const transport = new StdioClientTransport({
    command: entry.command,
    args: entry.args,
    env: { ...getDefaultEnvironment(), ...entry.env },
    stderr: 'ignore',
  });
  client = new Client({ name: 'claude-ai', version: '0.0.0-e2e' });
  return client.connect(transport);
}

describe('the UI on the real core and the lab', () => {
  it('signs in through the identity provider from the Sign-in screen', async () => {
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    await page.getByRole('button', { name: 'Sign in with your identity provider' }).click();
    await page.getByRole('heading', { name: 'Status' }).waitFor({ timeout: 30_000 });
    expect(await page.locator('main').textContent()).toContain('Alice Lab');
    await page.getByRole('note', { name: 'Lab mode' }).waitFor();
  });

  it('shows a call made through the bridge live, with its hops and join keys', async () => {
    await connectClient();
    await poll(() => page.getByRole('table', { name: 'Bridge sessions' }).textContent().catch(() => '')).toContain('claude-ai');
    await page.screenshot({ path: await screenshotPath('e2e-status'), fullPage: true });
    await page.getByRole('tab', { name: 'Timeline' }).click();
    await poll(() => page.getByTestId('record-count').textContent()).toMatch(/records?$/);

    const result = await client.callTool({ name: 'query', arguments: { sql: 'SELECT count(*) AS n FROM appointments' } });
    expect(result.isError).toBeFalsy();
    await poll(() => page.locator('#row-0').textContent()).toContain('query');
    await page.locator('#row-0').click();
    const detail = page.getByRole('complementary');
    await detail.getByRole('list', { name: 'Hops with durations' }).waitFor();
    const items = await detail.getByRole('list', { name: 'Hops with durations' }).getByRole('listitem').all();
    const hops = await Promise.all(items.map((i) => i.getAttribute('aria-label')));
    for (const name of ['Token exchange: ok', 'Vault login: ok', 'Vault credential: ok', 'Execute: ok', 'Revoke: ok']) {
      expect(hops.some((h) => h?.startsWith(name)), name).toBe(true);
    }
    const keys = (await detail.getByRole('table', { name: 'Join keys' }).textContent())!;
    const record = core.audit.page({ limit: 1 }).records[0]!;
    expect(record.tool).toBe('query');
    expect(keys).toContain(record.keys.obo_jti!);
    expect(keys).toContain(record.keys.lease_id!);
    expect(keys).toContain(record.keys.db_role!);
    await page.screenshot({ path: await screenshotPath('e2e-call-detail') });
    await page.keyboard.press('Escape');
  });

  it('puts a write in front of the person, and runs it once approved in the UI', async () => {
    await page.getByRole('tab', { name: /Approvals/ }).click();
    const pendingCall = client.callTool(
      { name: 'execute', arguments: { sql: 'UPDATE appointments SET status = $1 WHERE id = $2', params: ['completed', 1] } },
      undefined,
      { timeout: 60_000 },
    );
    const card = page.getByTestId('pending-approval');
    await card.waitFor({ timeout: 15_000 });
    expect(await card.textContent()).toContain('UPDATE appointments SET status = $1 WHERE id = $2');
    await page.screenshot({ path: await screenshotPath('e2e-approval'), fullPage: true });
    await card.getByRole('button', { name: 'Approve' }).click();
    const result = await pendingCall;
    expect(result.isError, JSON.stringify(result.content)).toBeFalsy();
    await poll(() => card.count()).toBe(0);
    const record = core.audit.page({ filter: { tool: 'execute' }, limit: 1 }).records[0]!;
    expect(record.hops.find((h) => h.name === 'approval')?.outcome).toBe('ok');
  });

  it('exports the timeline as CSV through the contract, one row per stored record', async () => {
    await page.getByRole('tab', { name: 'Timeline' }).click();
    await poll(() => page.getByTestId('record-count').textContent()).toMatch(/records?$/);
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export CSV' }).click()]);
    expect(download.suggestedFilename()).toMatch(/^countersign-audit-.*\.csv$/);
    const rows = (await readFile(await download.path(), 'utf8')).trim().split('\r\n');
    expect(rows[0]).toMatch(/^seq,at,kind,outcome,/);
    expect(rows.length - 1).toBe(core.audit.count({}));
  });

  it('asks again once the standing approval is revoked, and refuses the call when the person denies it', async () => {
    await page.getByRole('tab', { name: /Approvals/ }).click();
    await page.getByRole('button', { name: /^Revoke approval for execute/ }).click();
    await poll(() => core.approvals.cached().length).toBe(0);
    const pendingCall = client.callTool(
      { name: 'execute', arguments: { sql: 'UPDATE appointments SET status = $1 WHERE id = $2', params: ['cancelled', 2] } },
      undefined,
      { timeout: 60_000 },
    );
    const card = page.getByTestId('pending-approval');
    await card.waitFor({ timeout: 15_000 });
    await card.getByRole('button', { name: 'Deny' }).click();
    const result = await pendingCall;
    expect(result.isError).toBe(true);
    const record = core.audit.page({ filter: { tool: 'execute' }, limit: 1 }).records[0]!;
    expect(record.outcome).toBe('denied');
  });
});

describe('what the UI run leaves on disk', () => {
  it('holds no token, refresh token or key in the Chromium profile (History and every SQLite file), test-results/ or the data directory; the launch link it keeps is spent', async () => {
    const launchToken = new URL(server.url).hash.replace('#token=', '');
    const planted: Record<string, string> = {};
    for (const [i, v] of secrets.values().entries()) if (v.length >= 8) planted[`keychain_value_${i}`] = v;
    expect(Object.keys(planted).length).toBeGreaterThan(1);
    await page.close();
    await browser.stop(); // the profile's SQLite files are written out on close
    const profile = await readdir(browser.profileDir, { recursive: true });
    expect(profile.some((f) => f.endsWith('History')), profile.join(', ')).toBe(true);
    await mkdir(join(REPO_ROOT, 'test-results'), { recursive: true });
    const artifacts = [
      { kind: 'dir', path: browser.profileDir },
      { kind: 'dir', path: join(REPO_ROOT, 'test-results') },
      { kind: 'dir', path: home },
    ] as const;
    const hits = await scanForSecrets(planted, artifacts);
    expect(hits, describeHits(hits)).toEqual([]);
    // Chromium keeps every URL it opened, fragment included, in History and its session files (the
    // scanner finds the launch token there raw and as UTF-16): so the token must be dead once used.
    const launchHits = await scanForSecrets({ launch: launchToken }, artifacts);
    expect(launchHits.some((h) => h.where.endsWith('History'))).toBe(true);
    const replay = await fetch(`${new URL(server.url).origin}/api/session`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'sec-fetch-site': 'same-origin', origin: new URL(server.url).origin },
      body: JSON.stringify({ token: launchToken }),
    });
    expect(replay.status).toBe(401);
  });
});
