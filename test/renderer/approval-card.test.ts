/**
 * The headless approval card shows everything that will run: a ~20 KB statement and its 100 bound
 * values, whole, as text, in boxes that scroll. The pending entry is the real ApprovalService's for a
 * call planned by the real PostgreSQL planner; the rest of the app is the in-memory fixture
 * (test/helpers/ui.ts) behind the real headless web host, in Chromium.
 */
import { readFileSync } from 'node:fs';
import type { Page } from 'playwright-core';
import type { PendingApproval } from '../../common/contract.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApprovalService } from '../../main/core/approvals/approval-service.ts';
import { approverFor } from '../../main/core/approvals/broker-approver.ts';
import { ScriptedPrompterForTests, waitForUi } from '../../main/core/approvals/prompter.ts';
import { planPostgresCall } from '../../main/core/connectors/postgres/plan.ts';
import { parsePolicy, type PostgresPolicy } from '../../main/core/policy/policy.ts';
import { startWebServer, type WebServer } from '../../main/headless/web-server.ts';
import { buildRenderer, createFixtureApp, launchBrowser, type Browser, type FixtureApp } from '../helpers/ui.ts';
import { LONG_PARAMS, LONG_SQL, MARKUP, longPlan } from '../core/approvals/long-call.ts';

const POLICY = parsePolicy(readFileSync(new URL('../../main/core/policy/demo-clinic.policy.jsonc', import.meta.url), 'utf8')).postgres as PostgresPolicy;
const poll: typeof expect.poll = (fn, options) => expect.poll(fn, { timeout: 15_000, ...options });

declare const window: { pwned?: number };

let renderer: { dir: string; dispose(): Promise<void> };
let browser: Browser;
let app: FixtureApp;
let server: WebServer;
let service: ApprovalService;
let asked: Promise<unknown>;
let first: PendingApproval;
const controller = new AbortController();

beforeAll(async () => {
  [renderer, browser] = await Promise.all([buildRenderer(), launchBrowser()]);
  app = createFixtureApp();
  service = new ApprovalService({ prompter: waitForUi, timeoutMs: 50_000 });
  asked = approverFor(service).approve(await longPlan(), { requestId: 1, sessionId: 's', client: { name: 'vitest' }, user: { sub: 'alice' }, progress: () => {} }, controller.signal);
  first = service.pending()[0]!;
  app.pending.push(first);
  // A standing approval as the service keeps it once its call succeeded.
  const granted = new ApprovalService({ prompter: new ScriptedPrompterForTests(['approve']) });
  const small = await planPostgresCall(POLICY, 'execute', { sql: 'UPDATE appointments SET reason = $1 WHERE id = $2', params: ['x', 1] });
  const yes = await granted.approve({ plan: small.plan, args: {}, user: { sub: 'alice' }, sessionId: 's', signal: controller.signal });
  granted.settle(yes.approvalId!, true);
  app.cached.push(...granted.cached());
  server = await startWebServer({ handlers: app.handlers, events: app.events, staticDir: renderer.dir });
}, 60_000);

afterAll(async () => {
  controller.abort();
  await asked?.catch(() => undefined);
  await browser?.close();
  await server?.close();
  await renderer?.dispose();
});

async function openCard(): Promise<{ page: Page; card: ReturnType<Page['getByTestId']> }> {
  const page = await browser.context.newPage();
  await page.goto(server.issueLaunchUrl());
  await page.getByRole('tab', { name: /Approvals/ }).click();
  const card = page.getByTestId('pending-approval');
  await card.waitFor();
  return { page, card };
}

describe('the approval card of a long call', () => {
  it('shows the whole statement under "What will run", as text, in a box that scrolls', async () => {
    expect(LONG_SQL.length).toBeGreaterThan(20_000);
    const { page, card } = await openCard();
    const run = card.getByLabel('What will run', { exact: true });
    expect(await run.textContent()).toBe(LONG_SQL);
    expect(await card.getByRole('note').filter({ hasText: /more characters|characters not shown/ }).count()).toBe(0);
    const box = await run.evaluate((el) => {
      const e = el as unknown as { scrollHeight: number; clientHeight: number; ownerDocument: { defaultView: { getComputedStyle(x: unknown): { overflowY: string } } } };
      return { scrollHeight: e.scrollHeight, clientHeight: e.clientHeight, overflowY: e.ownerDocument.defaultView.getComputedStyle(e).overflowY };
    });
    expect(box.overflowY).toBe('auto');
    expect(box.scrollHeight).toBeGreaterThan(box.clientHeight * 10);
    await page.close();
  });

  it('lists every bound value in placeholder order, whole', async () => {
    const { page, card } = await openCard();
    const items = card.getByLabel('Values bound to it').locator('li');
    expect(await items.count()).toBe(LONG_PARAMS.length);
    const texts = await items.allTextContents();
    expect(texts).toEqual(LONG_PARAMS.map((v, i) => `$${i + 1} = ${JSON.stringify(v)}`));
    expect(texts[0]).toContain('END-OF-FIRST-VALUE');
    await page.close();
  });

  it('renders the markup in the statement and the values as text, never as HTML', async () => {
    const { page, card } = await openCard();
    expect(await card.locator('img, b, script').count()).toBe(0);
    expect(await card.textContent()).toContain(MARKUP);
    expect(await page.evaluate(() => window.pwned)).toBeUndefined();
    await page.close();
  });

  it('lists what a standing approval lets a call change', async () => {
    const { page } = await openCard();
    const row = page.getByRole('row').filter({ hasText: 'execute' });
    expect(await row.textContent()).toContain('changes: UPDATE public.appointments');
    await page.close();
  });

  it('approves with the digest of exactly these bytes', async () => {
    const { page, card } = await openCard();
    await card.getByRole('button', { name: 'Approve' }).click();
    await poll(() => app.decisions.length).toBe(1);
    const [shown] = app.pending.length ? app.pending : [first];
    expect(app.decisions[0]).toEqual({ id: first.id, decision: 'approve', digest: first.digest });
    expect(shown!.digest).toBe(first.digest);
    await page.close();
  });
});
