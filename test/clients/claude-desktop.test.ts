/**
 * Countersign driven the way Claude Desktop drives it (test/clients/claude-desktop-like.ts): the bridge
 * spawned twice at once, names and schemas checked with Claude's rules, `list_changed` ignored,
 * elicitation never answered, 60 s per request. The whole lab, the composed core (startCore) over its
 * real socket, the bundled bridge, and Chromium as the system browser for sign-in.
 *
 * The story of one person: they pressed "Connect Claude Desktop" yesterday (which signed them in and
 * listed every upstream); today the app starts signed out and Claude Desktop starts with it.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Tool } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolvePaths } from '../../common/paths.ts';
import { labAppConfig } from '../../lab/app-config.ts';
import { startLab, type Lab } from '../../lab/index.ts';
import { RESTART_CLAUDE, startCore, type Core } from '../../main/core/app.ts';
import type { Prompter } from '../../main/core/approvals/prompter.ts';
import { parseAppConfig, type AppConfig } from '../../main/core/config/config.ts';
import { MemorySecretStore } from '../../main/core/secrets/memory-store.ts';
import { buildBridgeInto } from '../bridge/helpers.ts';
import { launchBrowser, type LabBrowser } from '../helpers/browser.ts';
import type { ClaudeDesktopLikeSession} from './claude-desktop-like.ts';
import { CLAUDE_TOOL_NAME, launchLikeClaudeDesktop, resultText } from './claude-desktop-like.ts';

let lab: Lab;
let browser: LabBrowser;
let home: string;
let bridgePath: string;
let config: AppConfig;
let core: Core;
const presented: string[] = [];
const warnings: string[] = [];
const sessions: ClaudeDesktopLikeSession[] = [];

/** Approves every approval FOR TESTS: here what is tested is that each tool can be called at all. */
const approvesEverythingForTests: Prompter = { prompt: async () => 'approve' };

/** Chromium as the system browser: logs in as alice on the lab IdP, with the one-time code when asked. */
async function logIn(url: string): Promise<void> {
  await browser.context.clearCookies();
  const page = await browser.context.newPage();
  try {
    await page.goto(url);
    await page.fill('#username', 'alice');
    await page.fill('#password', 'alice-lab-pw');
    if (await page.locator('#otp').count()) await page.fill('#otp', '246810');
    await page.click('button[type=submit]:has-text("Sign in")');
    await page.waitForURL(/\/callback\?/);
  } finally {
    await page.close();
  }
}

function start(): Promise<Core> {
  return startCore({
    config,
    host: 'headless',
    version: '0.0.0-test',
    // A new memory store at each start: the person is signed out after every restart.
    secrets: new MemorySecretStore('this test keeps nothing between starts'),
    prompter: approvesEverythingForTests,
    openExternal: logIn,
    present: (why) => presented.push(why),
    paths: resolvePaths({ platform: process.platform, env: { ...process.env, COUNTERSIGN_HOME: home }, home: homedir() }),
    log: { info: () => {}, warn: (m) => warnings.push(m), error: () => {} },
  });
}

async function launch(): Promise<[ClaudeDesktopLikeSession, ClaudeDesktopLikeSession]> {
  const pair = await launchLikeClaudeDesktop({ bridgePath, env: { COUNTERSIGN_HOME: home, COUNTERSIGN_APP_CMD: '[]' } });
  sessions.push(...pair);
  return pair;
}

/** Valid arguments for each tool, by the upstream's own name (the lab's tools and the database's). */
const ARGS: Record<string, Record<string, unknown>> = {
  query: { sql: 'SELECT count(*) AS n FROM appointments' },
  execute: { sql: 'UPDATE appointments SET status = $1 WHERE id = $2', params: ['completed', 1] },
  list_tables: {},
  describe_table: { table: 'appointments' },
  get_weather: { city: 'Lyon' },
  create_ticket: { title: 'Printer on fire' },
  approve_payment: { payment_id: 'P-1', amount: 12.5 },
  generate_report: { steps: 2, step_ms: 10 },
  get_quote: { symbol: 'ACME' },
};
const ownName = (t: Tool): string => (t._meta?.['countersign/tool'] as string | undefined) ?? t.name;
/** The name a session lists an upstream's tool under, found by the upstream's own name (whatever the lab calls its upstreams). */
function listedAs(s: ClaudeDesktopLikeSession, own: string): string {
  const tool = s.tools.find((t) => t._meta?.['countersign/upstream'] !== undefined && ownName(t) === own);
  if (!tool) throw new Error(`no upstream tool ${own} in the first listing`);
  return tool.name;
}

beforeAll(async () => {
  [lab, browser, home] = await Promise.all([startLab(), launchBrowser(), mkdtemp(join(tmpdir(), 'countersign-claude-like-'))]);
  bridgePath = buildBridgeInto(home);
  config = parseAppConfig(labAppConfig(lab), 'lab configuration');
  process.env.XDG_CONFIG_HOME = join(home, 'config');
  // Yesterday: "Connect Claude Desktop" signed in, listed every upstream and wrote Claude's configuration.
  const yesterday = await start();
  try {
    const connected = await yesterday.handlers['claude.connect']({});
    expect(connected.message).toMatch(/with \d+ tools\. Quit and reopen Claude Desktop/);
    const written = JSON.parse(await readFile(connected.configPath, 'utf8')) as { mcpServers: Record<string, unknown> };
    expect(written.mcpServers.countersign).toBeDefined();
  } finally {
    await yesterday.stop();
  }
  core = await start();
}, 120_000);

afterAll(async () => {
  await Promise.all(sessions.map((s) => s.close()));
  await core?.stop();
  await browser?.close();
  await lab?.stop();
  if (home) await rm(home, { recursive: true, force: true });
}, 60_000);

describe('Claude Desktop, as it behaves, before and after sign-in', () => {
  let a: ClaudeDesktopLikeSession;
  let b: ClaudeDesktopLikeSession;

  it('accepts both sessions’ first listing whole before sign-in, upstream tools included', async () => {
    expect(core.auth.status().state).not.toBe('signed_in');
    [a, b] = await launch();
    for (const s of [a, b]) {
      expect(s.problems).toEqual([]);
      expect(s.tools.every((t) => CLAUDE_TOOL_NAME.test(t.name))).toBe(true);
      expect(s.tools.map((t) => t.name)).toContain('query');
      for (const own of ['get_weather', 'approve_payment', 'get_quote']) expect(listedAs(s, own)).toMatch(/^[a-z][a-z0-9-]*(_[a-z0-9-]+)*__/);
    }
    expect(b.tools).toEqual(a.tools);
  });

  it('answers a call before sign-in at once with how to sign in, and brings the app in front', async () => {
    const times: number[] = [];
    for (const s of [a, b]) {
      const started = performance.now();
      const result = await s.call(listedAs(s, 'get_weather'), { city: 'Lyon' });
      const ms = performance.now() - started;
      expect(result.isError).toBe(true);
      expect(resultText(result)).toMatch(/not signed in to Countersign.*Sign in/);
      expect(ms).toBeLessThan(2_000);
      times.push(ms);
    }
    console.log(`[claude-desktop-like] a call before sign-in answered in ${times.map((t) => t.toFixed(0)).join(' and ')} ms (bridge, socket, core)`);
    const db = await a.call('query', ARGS.query!);
    expect(db.isError).toBe(true);
    expect(presented).toContain('sign-in');
    expect(a.elicitationsSeen + b.elicitationsSeen).toBe(0);
  });

  it('lists after sign-in exactly what it listed before, and says nothing needs a restart', async () => {
    await core.handlers['session.signIn']({});
    await core.broker.warm();
    const again = await a.client.listTools();
    expect(again.tools).toEqual(a.tools);
    expect(core.status().claudeDesktop.restartNeeded).toBe(false);
  });

  it('runs every tool of the first listing after sign-in', async () => {
    const missing = a.tools.filter((t) => !(ownName(t) in ARGS)).map((t) => t.name);
    expect(missing, 'a tool without test arguments').toEqual([]);
    for (const tool of a.tools) {
      const result = await a.call(tool.name, ARGS[ownName(tool)]!);
      expect(result.isError, `${tool.name}: ${resultText(result)}`).toBeFalsy();
    }
    expect(a.elicitationsSeen).toBe(0);
  }, 120_000);

  it('is told why a result over the 1 MB Claude Desktop accepts was withheld, and the record says so', async () => {
    // 500,000 characters: under what PostgreSQL may send for one call, but the answer holds them twice.
    const query = a.tools.find((t) => ownName(t) === 'query')!.name;
    const result = await a.call(query, { sql: "SELECT repeat('x', 500000) AS big" });
    expect(result.isError).toBe(true);
    expect(resultText(result)).toMatch(/more than the 1000000 Claude Desktop accepts in one answer, so Countersign withheld it\. Ask for less.*\[RESULT_TOO_LARGE\]$/);
    const page = await core.handlers['audit.page']({ filter: {}, offset: 0, limit: 1, fields: 'all' });
    expect(page.records[0]).toMatchObject({ tool: 'query', outcome: 'error', error: { code: 'RESULT_TOO_LARGE' } });
  });

  it("shows the timeline a call's row without the arguments the model chose, and the whole record on demand", async () => {
    const query = a.tools.find((t) => ownName(t) === 'query')!.name;
    const value = 'v'.repeat(200_000);
    const result = await a.call(query, { sql: 'SELECT length($1::text) AS n', params: [value] });
    expect(result.isError, resultText(result)).toBeFalsy();
    // The timeline's request: a page of rows. 200 KB of arguments recorded, a few hundred bytes shown.
    const rows = await core.handlers['audit.page']({ filter: {}, offset: 0, limit: 1, fields: 'row' });
    expect(rows.records[0]).toMatchObject({ tool: 'query', outcome: 'success' });
    expect(rows.records[0]!.args).toBeUndefined();
    expect(Buffer.byteLength(JSON.stringify(rows.records[0]))).toBeLessThan(4_096);
    const whole = await core.handlers['audit.get']({ seq: rows.records[0]!.seq });
    expect(whole.args).toEqual({ sql: 'SELECT length($1::text) AS n', params: [value] });
    expect(whole.hash).toBe(rows.records[0]!.hash);
    // Asked for everything (an export's or a test's page), the record comes whole.
    const all = await core.handlers['audit.page']({ filter: {}, offset: 0, limit: 1, fields: 'all' });
    expect(all.records[0]!.args).toEqual(whole.args);
  });

  it('keeps the other session working when Claude Desktop kills one bridge', async () => {
    a.kill();
    const result = await b.call(listedAs(b, 'get_weather'), { city: 'Nice' });
    expect(result.isError).toBeFalsy();
    expect(resultText(result)).toContain('Nice');
  });
});

describe('an upstream that adds a tool with a 100-character name', () => {
  const long = `summarize_${'quarterly_'.repeat(10)}`.slice(0, 100);

  it('is announced but, as Claude Desktop discards it, the person is told to restart Claude Desktop', async () => {
    expect(long).toHaveLength(100);
    const [, b] = sessions.slice(-2) as [ClaudeDesktopLikeSession, ClaudeDesktopLikeSession];
    const heard = b.listChangedSeen;
    lab.upstream.addTool(long);
    await expect.poll(() => b.discardedListings.length > 0 && b.listChangedSeen > heard, { timeout: 15_000 }).toBe(true);
    const discarded = b.discardedListings.at(-1)!;
    const added = discarded.find((t) => ownName(t) === long);
    expect(added?.name).toMatch(CLAUDE_TOOL_NAME);
    expect(b.tools.some((t) => ownName(t) === long)).toBe(false);
    await expect.poll(() => core.status().claudeDesktop.restartNeeded, { timeout: 5_000 }).toBe(true);
    expect(warnings).toContain(RESTART_CLAUDE);
  });

  it('is in the first listing after Claude Desktop restarts, under the same valid name, and can be called', async () => {
    const before = sessions.at(-1)!.discardedListings.at(-1)!.find((t) => ownName(t) === long)!.name;
    await Promise.all(sessions.map((s) => s.close()));
    await expect.poll(() => core.status().claudeDesktop.restartNeeded, { timeout: 5_000 }).toBe(false);
    const [c] = await launch();
    const listed = c.tools.find((t) => ownName(t) === long);
    expect(c.problems).toEqual([]);
    expect(listed?.name).toBe(before);
    expect(listed!.name.length).toBeLessThanOrEqual(64);
    const result = await c.call(listed!.name, { text: 'a long way round' });
    expect(result.isError).toBeFalsy();
    expect(resultText(result)).toBe('a long way round');
  });
});
