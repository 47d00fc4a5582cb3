/**
 * The renderer in Chromium against the headless web host, with the audit channels backed by a real
 * AuditStore (SQLite) and the rest by the in-memory fixture app (test/helpers/ui.ts). Screenshots of
 * each screen land in test-results/screenshots/.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditStore } from '../../main/core/audit/store.ts';
import { EXPORT_MEDIA_TYPES, exportFilename, exportLines } from '../../main/core/audit/export.ts';
import { startWebServer, type WebServer } from '../../main/headless/web-server.ts';
import {
  backWithStore,
  buildRenderer,
  createFixtureApp,
  launchBrowser,
  memorySecrets,
  sampleToolCall,
  screenshotPath,
  type Browser,
  type FixtureApp,
} from '../helpers/ui.ts';

/** expect.poll with a time-out for a loaded CI machine (two cores shared with other suites). */
const poll: typeof expect.poll = (fn, options) => expect.poll(fn, { timeout: 15_000, ...options });


declare const document: { querySelectorAll(s: string): { length: number }; documentElement: { dataset: Record<string, string> } };
declare const localStorage: { length: number; key(i: number): string | null; getItem(k: string): string | null };
declare const sessionStorage: { length: number };
declare const location: { href: string };

const RECORDS = 3000;
const BIDI_ARG = 'DELETE FROM patients WHERE name = \u202Eadmin\u202C';

let renderer: { dir: string; dispose(): Promise<void> };
let dataDir: string;
let store: AuditStore;
let app: FixtureApp;
let server: WebServer;
let browser: Browser;
let unback: () => void;
const pageReads: string[] = [];

function digestOf(bytes: string): string {
  return createHash('sha256').update(bytes).digest('hex');
}

beforeAll(async () => {
  [renderer, browser, dataDir] = await Promise.all([buildRenderer(), launchBrowser({ acceptDownloads: true }), mkdtemp(join(tmpdir(), 'countersign-ui-store-'))]);
  store = await AuditStore.open({ dataDir, secrets: memorySecrets() });
  store.appendMany(Array.from({ length: RECORDS }, (_, i) => sampleToolCall(i + 1)));
  app = createFixtureApp({ demo: true });
  unback = backWithStore(app, store);
  // Every page the UI reads, by the fields it asked for. Wrapped before the server starts: it takes
  // each channel's handler once, when it starts.
  const backed = app.handlers['audit.page'];
  app.handlers['audit.page'] = async (request) => {
    pageReads.push(request.fields);
    return backed(request);
  };
  const bytes = "UPDATE appointments SET note = 'x' WHERE clinic = 'north'";
  app.pending.push({
    id: 'p-1',
    tool: 'update_appointment',
    target: 'postgres://lab/clinic',
    tier: 3,
    reason: 'UPDATE without a row bound on appointments',
    authorization_details: [{ type: 'postgres', actions: ['UPDATE'], locations: ['postgres://lab/clinic'], tables: ['appointments'] }],
    args: { sql: bytes, comment: BIDI_ARG, blob: 'A'.repeat(500) },
    bytes,
    digest: digestOf(bytes),
    client: { name: 'claude-ai', version: '0.1.0', pid: 4242 },
    requestedAt: new Date().toISOString(),
    expiresAt: new Date(Date.now() + 45_000).toISOString(),
  });
  app.cached.push({
    id: 'c-1',
    tool: 'update_appointment',
    target: 'postgres://lab/clinic',
    statementClass: 'bounded UPDATE',
    targets: ['appointments'],
    rowCeiling: 50,
    grantedAt: new Date().toISOString(),
    expiresAt: new Date(Date.now() + 30 * 60_000).toISOString(),
    uses: 2,
  });
  server = await startWebServer({
    handlers: app.handlers,
    events: app.events,
    staticDir: renderer.dir,
    exportAudit: ({ format, filter }) => ({ filename: exportFilename(format), mediaType: EXPORT_MEDIA_TYPES[format], lines: exportLines(store, format, filter) }),
  });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
  unback?.();
  await store?.close();
  await Promise.all([renderer?.dispose(), dataDir && rm(dataDir, { recursive: true, force: true })]);
});

/** Console lines about CSP violations and uncaught page errors, from every page this file opens. */
const pageProblems: string[] = [];

function watch(page: Page): Page {
  page.on('console', (m) => {
    if (m.text().includes('Content Security Policy')) pageProblems.push(m.text());
  });
  page.on('pageerror', (e) => pageProblems.push(`${e.name}: ${e.message}`));
  return page;
}

async function open(options: { colorScheme?: 'light' | 'dark' } = {}): Promise<Page> {
  const page = watch(await browser.context.newPage());
  if (options.colorScheme) await page.emulateMedia({ colorScheme: options.colorScheme });
  await page.goto(server.issueLaunchUrl());
  await page.getByRole('heading', { name: 'Status' }).waitFor();
  return page;
}

async function openTimeline(page: Page): Promise<void> {
  await page.getByRole('tab', { name: 'Timeline' }).click();
  await poll(() => page.getByTestId('record-count').textContent()).toMatch(/records?$/);
}

describe('the renderer against the headless host', () => {
  afterAll(() => {
    // The whole UI runs under the host's CSP (no inline script or style) without a violation or an uncaught error.
    expect(pageProblems).toEqual([]);
  });

  it('shows who is signed in, the IdP, Vault, Claude Desktop, bridge sessions and the Lab banner', async () => {
    const page = await open();
    await poll(() => page.getByRole('note', { name: 'Lab mode' }).textContent()).toContain('Lab');
    const text = await page.locator('main').textContent();
    expect(text).toContain('Alice Example');
    expect(text).toContain('http://127.0.0.1:4000/oidc');
    expect(text).toContain('http://127.0.0.1:8200');
    expect(text).toContain('Connected');
    expect(text).toContain('claude-ai');
    expect(await page.getByRole('tab', { name: /Approvals/ }).textContent()).toContain('1');
    await page.screenshot({ path: await screenshotPath('status'), fullPage: true });
    await page.close();
  });

  it('keeps the launch token out of the address bar and the bearer out of storage and cookies', async () => {
    const page = await open();
    expect(await page.evaluate(() => location.href)).toBe(server.origin + '/');
    const stored = await page.evaluate(() => {
      const values: string[] = [];
      for (let i = 0; i < localStorage.length; i++) values.push(localStorage.getItem(localStorage.key(i)!) ?? '');
      return { values, session: sessionStorage.length };
    });
    expect(stored.session).toBe(0);
    expect(stored.values.every((v) => v.length < 20)).toBe(true);
    expect(await browser.context.cookies(server.origin)).toEqual([]);
    await page.reload();
    await poll(() => page.getByRole('alert').textContent()).toContain('WEB_UNAUTHORIZED');
    await page.close();
  });

  it('lists the store’s records newest first and scrolls to the oldest', async () => {
    const page = await open();
    await openTimeline(page);
    expect(await page.getByTestId('record-count').textContent()).toBe(`${RECORDS.toLocaleString('en-US')} records`);
    const list = page.getByRole('listbox', { name: /Audit records/ });
    const first = list.getByRole('option').first();
    await poll(() => first.locator('span').first().textContent()).toBe(String(RECORDS));
    expect(await list.getByRole('option').count()).toBeLessThan(80);
    await page.getByRole('listbox', { name: /Audit records/ }).focus();
    await page.keyboard.press('End');
    await poll(() => page.locator(`#row-${RECORDS - 1} span`).first().textContent()).toBe('1');
    await page.screenshot({ path: await screenshotPath('timeline-end') });
    await page.close();
  });

  it('shows a call appended to the store at the top, live', async () => {
    const page = await open();
    await openTimeline(page);
    const before = store.head()!.seq;
    await store.append(sampleToolCall(99_001, { tool: 'live_probe_tool', summary: 'appended during the test' }));
    await poll(() => page.locator('#row-0').textContent()).toContain('live_probe_tool');
    expect(await page.locator('#row-0').textContent()).toContain(String(before + 1));
    await page.close();
  });

  it('keeps up with a burst of calls without a page read per call', async () => {
    const from = pageReads.length;
    const page = await open();
    await openTimeline(page);
    // Opening the timeline read its first page, of rows only: a record's arguments come with its
    // detail (audit.get), not with every page.
    expect(pageReads.length).toBeGreaterThan(from);
    const burst = Array.from({ length: 60 }, (_, i) => store.append(sampleToolCall(98_000 + i, { tool: `burst_${i}` })));
    await Promise.all(burst);
    await poll(() => page.locator('#row-0').textContent()).toContain('burst_59');
    expect(await page.getByTestId('record-count').textContent()).toBe(`${store.count({}).toLocaleString('en-US')} records`);
    expect(pageReads.length - from).toBeLessThan(20);
    expect(new Set(pageReads.slice(from))).toEqual(new Set(['row']));
    await page.close();
  });

  it('filters by outcome, tier, tool and user, and searches join keys', async () => {
    const page = await open();
    await openTimeline(page);
    const count = () => page.getByTestId('record-count').textContent();
    const total = Number((await count())!.replace(/\D/g, ''));
    const chip = (name: string) => page.getByRole('button', { name, exact: true });
    await chip('Outcome denied').click();
    await expect.poll(() => chip('Outcome denied').getAttribute('aria-pressed')).toBe('true');
    await poll(count).toBe(`${store.count({ outcome: ['denied'] }).toLocaleString('en-US')} records`);
    // several values of one filter at once: denied or error
    await chip('Outcome error').click();
    const deniedOrError = store.count({ outcome: ['denied', 'error'] });
    expect(deniedOrError).toBeGreaterThan(store.count({ outcome: ['denied'] }));
    await poll(count).toBe(`${deniedOrError.toLocaleString('en-US')} records`);
    await chip('Tier 2 · write').click();
    await chip('Tier 3 · sensitive').click();
    await poll(count).toBe(`${store.count({ outcome: ['denied', 'error'], tier: [2, 3] }).toLocaleString('en-US')} records`);
    for (const name of ['Outcome denied', 'Outcome error', 'Tier 2 · write', 'Tier 3 · sensitive']) await chip(name).click();
    await poll(count).toBe(`${total.toLocaleString('en-US')} records`);
    await page.getByLabel('Tool', { exact: true }).fill('delete_user');
    await poll(count).toBe(`${store.count({ tool: 'delete_user' }).toLocaleString('en-US')} records`);
    await page.getByLabel('Tool', { exact: true }).fill('');
    await page.getByLabel('User', { exact: true }).fill('bob');
    await poll(count).toBe(`${store.count({ user: 'bob' }).toLocaleString('en-US')} records`);
    await page.getByLabel('User', { exact: true }).fill('');
    await page.getByLabel('From', { exact: true }).fill('2099-01-01T00:00');
    await poll(count).toBe('0 records');
    await page.getByLabel('From', { exact: true }).fill('2000-01-01T00:00');
    await page.getByLabel('To', { exact: true }).fill('2099-01-01T00:00');
    await poll(count).toBe(`${store.count({}).toLocaleString('en-US')} records`);
    await page.getByLabel('To', { exact: true }).fill('2000-01-02T00:00');
    await poll(count).toBe('0 records');
    await page.getByLabel('From', { exact: true }).fill('');
    await page.getByLabel('To', { exact: true }).fill('');
    await page.getByLabel('Search', { exact: true }).fill('jti-000004d2');
    await poll(count).toBe('1 record');
    expect(await page.locator('#row-0').textContent()).toContain('1234');
    await page.getByLabel('Search', { exact: true }).fill('');
    await poll(count).not.toBe('1 record');
    expect(Number((await count())!.replace(/\D/g, ''))).toBeGreaterThanOrEqual(total);
    await page.close();
  });

  it('shows the integrity badge from the store’s verification', async () => {
    const page = await open();
    await openTimeline(page);
    const badge = page.getByRole('status').filter({ hasText: 'Chain' });
    await poll(() => badge.textContent()).toMatch(/Chain intact · [\d,]+ records/);
    await store.append(sampleToolCall(99_003));
    await poll(() => badge.textContent()).toContain('1 newer record not yet checked');
    await badge.getByRole('button', { name: 'Verify' }).click();
    await poll(() => badge.textContent()).not.toContain('newer');
    expect(await badge.textContent()).toContain(`Chain intact · ${store.count({}).toLocaleString('en-US')} records`);
    await page.close();
  });

  it('opens a call with its hops as a waterfall, RAR, approval and join keys to copy', async () => {
    const page = await open();
    await browser.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.origin });
    await openTimeline(page);
    await page.getByLabel('Search', { exact: true }).fill('jti-000004d2');
    await poll(() => page.getByTestId('record-count').textContent()).toBe('1 record');
    await page.locator('#row-0').click();
    const detail = page.getByRole('complementary');
    await detail.getByRole('heading', { name: 'Call #1234' }).waitFor();
    // The heading shows at once; the record's body follows its own audit.get.
    const hops = detail.getByRole('list', { name: 'Hops with durations' }).getByRole('listitem');
    await poll(() => hops.count()).toBe(9);
    expect(await hops.nth(5).getAttribute('aria-label')).toBe('Vault credential: ok, 21.5 ms');
    const text = await detail.textContent();
    expect(text).toContain('database/creds/clinic-read/lease-1234');
    expect(text).toContain('v-jwt-clinic-read-1234');
    expect(text).toContain('"actions": [');
    await detail.getByRole('button', { name: 'Copy OBO jti' }).click();
    expect(await page.evaluate(() => navigator.clipboard.readText())).toBe('jti-000004d2');
    await page.screenshot({ path: await screenshotPath('call-detail') });
    await page.keyboard.press('Escape');
    await poll(() => page.getByRole('complementary').count()).toBe(0);
    expect(await page.getByRole('listbox', { name: /Audit records/ }).evaluate((el) => el === (el.ownerDocument as { activeElement: unknown }).activeElement)).toBe(true);
    await page.close();
  });

  it('moves through the timeline and the screens with the keyboard alone', async () => {
    const page = await open();
    await page.getByRole('tab', { name: 'Status' }).focus();
    await page.keyboard.press('ArrowDown');
    expect(await page.getByRole('tab', { name: 'Timeline' }).getAttribute('aria-selected')).toBe('true');
    await poll(() => page.getByTestId('record-count').textContent()).toMatch(/records?$/);
    await page.getByRole('listbox', { name: /Audit records/ }).focus();
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('ArrowDown');
    expect(await page.locator('#row-2').getAttribute('aria-selected')).toBe('true');
    const seq = (await page.locator('#row-2 span').first().textContent())!;
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: `Call #${seq}` }).waitFor();
    await page.close();
  });

  it('shows a pending call exactly, with invisible characters made visible and long values cut with a count, and approves it', async () => {
    const page = await open();
    await page.getByRole('tab', { name: /Approvals/ }).click();
    const card = page.getByTestId('pending-approval');
    await card.waitFor();
    const text = (await card.textContent())!;
    expect(text).toContain('update_appointment');
    expect(text).toContain('Tier 3');
    expect(text).toContain('postgres · UPDATE · at postgres://lab/clinic · tables: appointments');
    expect(text).toContain('⟦RLO⟧admin⟦PDF⟧');
    expect(text).not.toContain('\u202E');
    expect(await card.getByRole('note', { name: '340 more characters not shown' }).textContent()).toBe('… +340 characters');
    expect(text).toContain('invisible or direction-changing characters');
    expect(await card.getByRole('button', { name: 'Deny' }).evaluate((b) => b === (b.ownerDocument as { activeElement: unknown }).activeElement)).toBe(true);
    await page.screenshot({ path: await screenshotPath('approvals'), fullPage: true });
    await card.getByRole('button', { name: /Show all \(340 more characters\)/ }).click();
    expect(await card.textContent()).toContain('A'.repeat(500));
    await card.getByRole('button', { name: 'Approve' }).click();
    await poll(() => app.decisions.at(-1)).toEqual({
      id: 'p-1',
      decision: 'approve',
      digest: digestOf("UPDATE appointments SET note = 'x' WHERE clinic = 'north'"),
    });
    await poll(() => page.getByText('No call is waiting for approval.').count()).toBe(1);
    await page.close();
  });

  it('shows a call waiting for approval as soon as it arrives, and denies it', async () => {
    const page = await open();
    await page.getByRole('tab', { name: /Approvals/ }).click();
    await page.getByRole('heading', { name: 'Waiting for you' }).waitFor();
    const bytes = 'DROP TABLE appointments';
    app.pending.push({
      id: 'p-2',
      tool: 'run_ddl',
      target: 'postgres://lab/clinic',
      tier: 3,
      reason: 'DDL',
      authorization_details: [{ type: 'postgres', actions: ['DROP'] }],
      args: { sql: bytes },
      bytes,
      digest: digestOf(bytes),
      requestedAt: new Date().toISOString(),
      expiresAt: new Date(Date.now() + 30_000).toISOString(),
    });
    app.emit('approvals.changed', { pending: [...app.pending], cached: [...app.cached] });
    const card = page.getByTestId('pending-approval').filter({ hasText: 'run_ddl' });
    await card.waitFor();
    await poll(() => page.getByRole('tab', { name: /Approvals/ }).textContent()).toContain('1');
    await card.getByRole('button', { name: 'Deny' }).click();
    await poll(() => app.decisions.at(-1)).toEqual({ id: 'p-2', decision: 'deny' });
    await poll(() => card.count()).toBe(0);
    await page.close();
  });

  it('revokes a standing approval', async () => {
    const page = await open();
    await page.getByRole('tab', { name: /Approvals/ }).click();
    await page.getByRole('button', { name: 'Revoke approval for update_appointment bounded UPDATE' }).click();
    await poll(() => app.cached.length).toBe(0);
    await poll(() => page.getByText('None.').count()).toBe(1);
    await page.close();
  });

  it('renders data as text, never as HTML', async () => {
    const hostile = '<img src=x onerror="window.pwned=1"><b>bold</b>';
    await store.append(sampleToolCall(99_002, { tool: 'html_probe', summary: hostile, target: hostile }));
    const page = await open();
    await openTimeline(page);
    await page.getByLabel('Tool', { exact: true }).fill('html_probe');
    await poll(() => page.getByTestId('record-count').textContent()).toBe('1 record');
    await page.locator('#row-0').click();
    const detail = page.getByRole('complementary');
    await detail.getByText(hostile).first().waitFor();
    expect(await page.evaluate(() => document.querySelectorAll('img, b').length)).toBe(0);
    expect(await page.evaluate(() => (globalThis as { pwned?: number }).pwned)).toBeUndefined();
    await page.close();
  });

  it('exports the filtered records as a streamed file whose lines match the store', async () => {
    const page = await open();
    await openTimeline(page);
    await page.getByLabel('Tool', { exact: true }).fill('delete_user');
    await poll(() => page.getByTestId('record-count').textContent()).toBe(`${store.count({ tool: 'delete_user' }).toLocaleString('en-US')} records`);
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export JSON Lines' }).click()]);
    expect(download.suggestedFilename()).toMatch(/^countersign-audit-.*\.jsonl$/);
    const file = await download.path();
    const lines = (await readFile(file, 'utf8')).trim().split('\n');
    expect(lines.length).toBe(store.count({ tool: 'delete_user' }));
    const first = JSON.parse(lines[0]!) as { seq: number; hash: string };
    expect(store.get(first.seq)!.hash).toBe(first.hash);
    await page.close();
  });

  it('shows settings read-only and connects Claude Desktop', async () => {
    app.status.claudeDesktop = { configured: false, connected: false };
    const page = await open();
    await page.getByRole('tab', { name: 'Settings' }).click();
    await page.getByRole('heading', { name: 'Policy (read-only)' }).waitFor();
    const text = await page.locator('main').textContent();
    expect(text).toContain('countersign-desktop');
    expect(text).toContain('clinic-read, clinic-write');
    expect(text).toContain('"appointments"');
    expect(text).toContain('Not configured');
    await page.getByRole('button', { name: 'Connect Claude Desktop' }).click();
    await poll(() => page.getByRole('article', { name: 'Claude Desktop settings' }).textContent()).toContain('Configured');
    await page.screenshot({ path: await screenshotPath('settings'), fullPage: true });
    await page.close();
  });

  it('tells the person to restart Claude Desktop when its tools are no longer Countersign’s', async () => {
    app.status.claudeDesktop = { configured: true, connected: true, restartNeeded: true };
    const page = await open();
    await page.getByRole('status').filter({ hasText: 'quit and reopen it' }).waitFor();
    app.status.claudeDesktop = { configured: true, connected: true, restartNeeded: false };
    await page.close();
    const again = await open();
    await again.getByRole('tab', { name: 'Settings' }).waitFor();
    expect(await again.getByRole('status').filter({ hasText: 'quit and reopen it' }).count()).toBe(0);
    await again.close();
  });

  it('follows a dark system theme and lets the person choose', async () => {
    const page = await open({ colorScheme: 'dark' });
    expect(await page.evaluate(() => document.documentElement.dataset.theme)).toBe('dark');
    await openTimeline(page);
    await page.screenshot({ path: await screenshotPath('timeline-dark') });
    await page.getByRole('tab', { name: 'Settings' }).click();
    await page.getByLabel('Theme', { exact: true }).selectOption('light');
    expect(await page.evaluate(() => document.documentElement.dataset.theme)).toBe('light');
    await page.getByLabel('Theme', { exact: true }).selectOption('system');
    await page.close();
  });

  it('pauses live updates when the app stops, and says the page has ended when the app comes back without its bearer', async () => {
    const first = await startWebServer({ handlers: app.handlers, events: app.events, staticDir: renderer.dir });
    const page = await browser.context.newPage();
    try {
      await page.goto(first.url);
      await page.getByRole('heading', { name: 'Status' }).waitFor();
      await poll(() => page.getByRole('status').filter({ hasText: 'live updates' }).count()).toBe(0);
      await first.close();
      await page.getByText('Live updates paused: reconnecting to the app…').waitFor();
      const second = await startWebServer({ handlers: app.handlers, events: app.events, staticDir: renderer.dir, port: first.port });
      try {
        await page.getByText('This page is no longer connected to the app.', { exact: false }).waitFor({ timeout: 15_000 });
      } finally {
        await second.close();
      }
    } finally {
      await page.close();
      await first.close();
    }
  });

  it('says on the sign-in screen why no sign-in will be kept when the OS keychain is locked, and what to do, in the status’s own words', async () => {
    const reason =
      'The OS keychain (Secret Service) is locked or refused access. Unlock it and try again. Nothing is kept between starts: you will sign in each time the app starts. Countersign looks for the keychain when it starts: restart it once the keychain is usable.';
    const user = app.status.user;
    app.status.user = null;
    app.status.keychain = { persistent: false, code: 'KEYCHAIN_LOCKED', reason };
    const page = watch(await browser.context.newPage());
    try {
      await page.goto(server.issueLaunchUrl());
      await page.getByRole('heading', { name: 'Sign in' }).waitFor();
      const note = page.getByRole('note', { name: 'OS keychain' });
      await poll(() => note.textContent()).toBe(reason);
      await page.screenshot({ path: await screenshotPath('sign-in-keychain-locked') });
    } finally {
      await page.close();
      app.status.keychain = { persistent: true };
      app.status.user = user;
    }
    // The keychain usable: no such note.
    app.status.user = null;
    const again = watch(await browser.context.newPage());
    try {
      await again.goto(server.issueLaunchUrl());
      await again.getByRole('heading', { name: 'Sign in' }).waitFor();
      expect(await again.getByRole('note', { name: 'OS keychain' }).count()).toBe(0);
    } finally {
      await again.close();
      app.status.user = user;
    }
  });

  it('asks to sign in when nobody is, and signs in through the app', async () => {
    app.status.user = null;
    const page = watch(await browser.context.newPage());
    await page.goto(server.issueLaunchUrl());
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    await page.screenshot({ path: await screenshotPath('sign-in') });
    await page.getByRole('button', { name: 'Sign in with your identity provider' }).click();
    await page.getByRole('heading', { name: 'Status' }).waitFor();
    expect(await page.locator('main').textContent()).toContain('Alice Example');
    await page.close();
  });
});
