import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import type { BrowserContext } from 'playwright-core';

/** Debian's Chromium, with the flags that make it start headless as root in a container. */
export const CHROMIUM_PATH = '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-dev-shm-usage',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

export interface LabBrowser {
  context: BrowserContext;
  userDataDir: string;
  /** Closes the browser and removes its profile directory. Safe to call twice. */
  close(): Promise<void>;
}

/**
 * A real Chromium for tests: a persistent context on a fresh temporary profile (no state shared
 * between tests), torn down completely by `close()`.
 */
export async function launchBrowser(opts: { headless?: boolean } = {}): Promise<LabBrowser> {
  const userDataDir = await mkdtemp(join(tmpdir(), 'countersign-chromium-'));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM_PATH,
      headless: opts.headless ?? true,
      args: CHROMIUM_ARGS,
    });
  } catch (err) {
    await rm(userDataDir, { recursive: true, force: true });
    throw err;
  }
  let closed = false;
  return {
    context,
    userDataDir,
    async close() {
      if (closed) return;
      closed = true;
      await context.close().catch(() => {});
      await rm(userDataDir, { recursive: true, force: true, maxRetries: 3 });
    },
  };
}

/**
 * Chromium as the system browser: opens a sign-in address in a fresh IdP browser session (so the login
 * page is always shown) and logs in on the lab IdP's page, by default as alice.
 */
export async function logInOnLabPage(browser: Pick<LabBrowser, 'context'>, url: string, user = { username: 'alice', password: 'alice-lab-pw' }): Promise<void> {
  await browser.context.clearCookies();
  const page = await browser.context.newPage();
  try {
    await page.goto(url);
    await page.fill('#username', user.username);
    await page.fill('#password', user.password);
    await page.click('button[type=submit]:has-text("Sign in")');
    await page.waitForURL(/\/callback\?/);
  } finally {
    await page.close();
  }
}
