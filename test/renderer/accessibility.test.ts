/**
 * Every screen, in the light and the dark theme, checked with axe-core in Chromium (WCAG 2.x A and AA
 * rules: names and roles for screen readers, keyboard reachability, colour contrast). The app runs
 * against the in-memory fixture behind the real headless web host.
 */
import { createRequire } from 'node:module';
import { readFile } from 'node:fs/promises';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWebServer, type WebServer } from '../../main/headless/web-server.ts';
import { buildRenderer, createFixtureApp, launchBrowser, sampleToolCall, type Browser } from '../helpers/ui.ts';

interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: { target: string[] }[];
}

let renderer: { dir: string; dispose(): Promise<void> };
let browser: Browser;
let server: WebServer;
let axeSource: string;

beforeAll(async () => {
  const app = createFixtureApp({ demo: true });
  for (let i = 1; i <= 200; i++) app.append(sampleToolCall(i));
  app.pending.push({
    id: 'p-1',
    tool: 'execute',
    target: 'postgres://lab/clinic',
    tier: 2,
    reason: 'bounded UPDATE of appointments',
    authorization_details: [{ type: 'postgres', actions: ['UPDATE'] }],
    args: { sql: 'UPDATE appointments SET status = $1 WHERE id = $2', params: ['completed', 1] },
    bytes: 'UPDATE appointments SET status = $1 WHERE id = $2',
    digest: 'ab'.repeat(32),
    requestedAt: new Date().toISOString(),
    expiresAt: new Date(Date.now() + 600_000).toISOString(),
  });
  app.cached.push({
    id: 'c-1',
    tool: 'execute',
    target: 'postgres://lab/clinic',
    statementClass: 'bounded UPDATE',
    targets: ['appointments'],
    rowCeiling: 50,
    grantedAt: new Date().toISOString(),
    expiresAt: new Date(Date.now() + 1_800_000).toISOString(),
    uses: 1,
  });
  axeSource = await readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
  [renderer, browser] = await Promise.all([buildRenderer(), launchBrowser()]);
  server = await startWebServer({ handlers: app.handlers, events: app.events, staticDir: renderer.dir });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
  await renderer?.dispose();
});

/** Runs axe on the page as it is (page.evaluate is not subject to the page's CSP). */
async function violations(page: Page): Promise<string[]> {
  await page.evaluate(axeSource);
  const found = await page.evaluate(async () => {
    const axe = (globalThis as unknown as { axe: { run(o: unknown): Promise<{ violations: AxeViolation[] }> } }).axe;
    const r = await axe.run({ runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } });
    return r.violations;
  });
  return found.map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

const SCREENS = [
  { tab: 'Status', ready: (p: Page) => p.getByRole('heading', { name: 'Status' }).waitFor() },
  { tab: 'Timeline', ready: (p: Page) => p.locator('#row-0 span').first().waitFor() },
  { tab: 'Approvals', ready: (p: Page) => p.getByTestId('pending-approval').waitFor() },
  { tab: 'Settings', ready: (p: Page) => p.getByRole('heading', { name: 'Policy (read-only)' }).waitFor() },
];

describe('accessibility', () => {
  for (const scheme of ['light', 'dark'] as const) {
    it(`finds no WCAG A/AA violation on any screen in the ${scheme} theme`, async () => {
      const page = await browser.context.newPage();
      await page.emulateMedia({ colorScheme: scheme });
      await page.goto(server.issueLaunchUrl());
      const problems: string[] = [];
      for (const screen of SCREENS) {
        await page.getByRole('tab', { name: new RegExp(`^${screen.tab}`) }).click();
        await screen.ready(page);
        if (screen.tab === 'Timeline') {
          await page.locator('#row-0').click();
          await page.getByRole('complementary').getByRole('heading', { name: /^Call #/ }).waitFor();
        }
        problems.push(...(await violations(page)).map((v) => `${screen.tab}: ${v}`));
      }
      await page.close();
      expect(problems).toEqual([]);
    });
  }
});
