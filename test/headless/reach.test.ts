/**
 * Headless, the person must always be reachable: a call before sign-in or an approval that arrives
 * while no page of the web UI is live opens one (a fresh launch link) and says so on stderr, and
 * `countersign open` gets a fresh link from the running core over its authenticated socket. The lab,
 * `serve()` with the built web UI, the bundled bridge under the MCP SDK client, Chromium as the browser.
 */
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { CallToolResultSchema, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labAppConfig } from '../../lab/app-config.ts';
import { startLab, type Lab } from '../../lab/index.ts';
import { parseAppConfig } from '../../main/core/config/config.ts';
import { controlRequest } from '../../main/core/mcp/control-client.ts';
import { hostPaths } from '../../main/core/mcp/host-paths.ts';
import { runOpen } from '../../main/headless/open.ts';
import type { Served } from '../../main/headless/start.ts';
import { launchBrowser, type LabBrowser } from '../helpers/browser.ts';
import { connectBuiltBridge, serveForTest, stopAll } from '../helpers/lab-core.ts';

let lab: Lab;
let browser: LabBrowser;
let home: string;
let served: Served;
let client: Client;
const opened: string[] = [];
const warnings: string[] = [];

beforeAll(async () => {
  [lab, browser, home] = await Promise.all([startLab(), launchBrowser(), mkdtemp(join(tmpdir(), 'cs-reach-'))]);
  served = await serveForTest({
    config: parseAppConfig(labAppConfig(lab), 'lab configuration'),
    home,
    browser,
    log: { info: () => {}, warn: (m) => warnings.push(m), error: () => {} },
    openUi: async (url) => void opened.push(url),
    // Every summons counts here, so that what keeps a second page from opening is the live page alone.
    summonEveryMs: 0,
  });
  client = await connectBuiltBridge(home, { name: 'claude-ai', version: '0.1.0' });
}, 90_000);

afterAll(() => stopAll([client, served, browser, lab], home), 60_000);

const call = async (name: string, args: Record<string, unknown>) => (await client.callTool({ name, arguments: args }, CallToolResultSchema)) as CallToolResult;

describe('a person who can always be reached, headless', () => {
  it('opens the web UI with a fresh launch link when a call arrives before sign-in, and says so', async () => {
    const result = await call('query', { sql: 'SELECT 1' });
    expect(result.isError).toBe(true);
    expect(result.content).toEqual([{ type: 'text', text: expect.stringMatching(/not signed in to Countersign.*countersign open/) }]);
    expect(opened).toHaveLength(1);
    expect(opened[0]).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/#token=/);
    expect(opened[0]).not.toBe(served.url);
    expect(warnings.some((w) => /before you signed in: opening Countersign in your browser/.test(w))).toBe(true);
    // The link works: it opens the app in the browser.
    const page = await browser.context.newPage();
    await page.goto(opened[0]!);
    await page.getByRole('button', { name: 'Sign in with your identity provider' }).waitFor({ timeout: 20_000 });
    await page.close();
  });

  it('opens the web UI when an approval arrives and no page is live, and not while one is', async () => {
    await served.core.handlers['session.signIn']({});
    const before = opened.length;
    const waiting = call('execute', { sql: 'UPDATE appointments SET status = $1 WHERE id = $2', params: ['completed', 1] });
    await expect.poll(() => served.core.approvals.pending().length, { timeout: 10_000 }).toBe(1);
    await expect.poll(() => opened.length, { timeout: 5_000 }).toBe(before + 1);
    expect(warnings.some((w) => /waiting for your approval and no Countersign page is open/.test(w))).toBe(true);

    // The person opens the link: the page is live, and the next approval does not open another.
    const page = await browser.context.newPage();
    await page.goto(opened.at(-1)!);
    await page.getByRole('tab', { name: /Approvals/ }).waitFor({ timeout: 20_000 });
    await expect.poll(() => served.web.liveUis(), { timeout: 10_000 }).toBe(1);
    served.core.approvals.deny(served.core.approvals.pending()[0]!.id);
    expect((await waiting).isError).toBe(true);
    const second = call('execute', { sql: 'UPDATE appointments SET status = $1 WHERE id = $2', params: ['completed', 2] });
    await expect.poll(() => served.core.approvals.pending().length, { timeout: 10_000 }).toBe(1);
    expect(opened.length).toBe(before + 1);
    served.core.approvals.deny(served.core.approvals.pending()[0]!.id);
    await second;
    await page.close();
  });

  it('countersign open gets a fresh launch link from the running core over its socket and opens it', async () => {
    const links: string[] = [];
    expect(await runOpen([], { paths: hostPaths({ env: { ...process.env, COUNTERSIGN_HOME: home } }), open: async (url) => void links.push(url) })).toBe(0);
    expect(links).toHaveLength(1);
    expect(links[0]).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/#token=/);
    expect(opened).not.toContain(links[0]);
    const page = await browser.context.newPage();
    await page.goto(links[0]!);
    await page.getByRole('tab', { name: /Approvals/ }).waitFor({ timeout: 20_000 });
    await page.close();
  });

  it('answers no control request through an MCP session, and none with a wrong secret', async () => {
    // What a bridge relays is MCP: a control method there is an unknown method, not a launch link.
    await expect(client.request({ method: 'open' as never }, CallToolResultSchema)).rejects.toMatchObject({ code: -32601 });
    const paths = hostPaths({ env: { ...process.env, COUNTERSIGN_HOME: home } });
    await expect(controlRequest({ socketPath: paths.socketPath, secretPath: join(home, 'no-such-secret') }, 'open')).rejects.toMatchObject({ code: 'HANDSHAKE_FAILED' });
    await expect(controlRequest(paths, 'run-shell')).rejects.toMatchObject({ message: expect.stringMatching(/Unknown control request/) });
  });
});
