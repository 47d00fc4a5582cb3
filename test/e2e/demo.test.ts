/**
 * The README's promise, end to end: `npm run demo` (the lab and the app on it) reaches Claude's first
 * governed call. The demo launcher runs as a child process exactly as the README starts it (after the
 * build `npm test` has done), Chromium plays both the person's browser on the app's web UI and the
 * system browser on the lab IdP's login page, and the MCP SDK client spawns the bridge from the very
 * entry the demo prints for Claude Desktop.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchBrowser, type LabBrowser } from '../helpers/browser.ts';
import { startTestKeyring, type TestKeyring } from '../helpers/keyring.ts';

const run = promisify(execFile);
let keyring: TestKeyring;
let home: string;
let demo: ChildProcess;
let browser: LabBrowser;
let output = '';
let errors = '';
let started = 0;
let appUrl = '';
let entry: { command: string; args: string[]; env?: Record<string, string> };

function waitFor(pattern: RegExp, timeoutMs = 60_000): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`demo did not print ${pattern} in time:\n${output}\n${errors}`)), timeoutMs);
    const check = () => {
      const m = output.match(pattern);
      if (m) {
        clearTimeout(timer);
        demo.stdout?.off('data', check);
        resolve(m);
      }
    };
    demo.stdout?.on('data', check);
    check();
  });
}

beforeAll(async () => {
  [keyring, home, browser] = await Promise.all([startTestKeyring(), mkdtemp(path.join(tmpdir(), 'cs-demo-home-')), launchBrowser()]);
  started = performance.now();
  demo = spawn(process.execPath, ['lab/demo.ts', '--no-open', '--home', home], {
    env: { ...process.env, ...keyring.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  demo.stdout!.setEncoding('utf8').on('data', (d: string) => (output += d));
  demo.stderr!.setEncoding('utf8').on('data', (d: string) => (errors += d));
  await waitFor(/Ctrl-C stops/);
  appUrl = output.match(/(http:\/\/127\.0\.0\.1:\d+\/#token=[\w-]+)/)![1]!;
  entry = JSON.parse(output.match(/"countersign": (\{.*\})/)![1]!);
});

afterAll(async () => {
  if (demo && demo.exitCode === null) {
    const exited = new Promise((r) => demo.once('exit', r));
    demo.kill('SIGTERM');
    await exited;
  }
  await browser?.close();
  await keyring?.stop();
  await rm(home, { recursive: true, force: true });
});

async function signInAsAlice(ui: Page): Promise<void> {
  await ui.getByRole('button', { name: 'Sign in with your identity provider' }).click();
  // Nothing can open a browser on this machine: the UI shows the sign-in address, as it would over SSH.
  const link = ui.locator('.sign-in-url a');
  await link.waitFor({ timeout: 20_000 });
  const login = await browser.context.newPage();
  await login.goto((await link.getAttribute('href'))!);
  await login.fill('#username', 'alice');
  await login.fill('#password', 'alice-lab-pw');
  await login.click('button[type=submit]:has-text("Sign in")');
  await login.waitForURL(/127\.0\.0\.1:\d+\/callback\?/);
  await login.close();
}

describe('npm run demo', () => {
  it("reaches Claude's first governed call: sign in once, a query through the bridge, then an approved write and a cached one", async () => {
    expect(output).toMatch(/LOCAL LAB/);
    expect(entry.env?.COUNTERSIGN_HOME).toBe(home);
    const ui = await browser.context.newPage();
    await ui.goto(appUrl);
    await ui.getByRole('note', { name: 'Lab mode' }).waitFor();
    await signInAsAlice(ui);
    await ui.getByText('Alice Lab').first().waitFor({ timeout: 20_000 });

    const client = new Client({ name: 'claude-desktop-stand-in', version: '1.0.0' });
    await client.connect(new StdioClientTransport({ command: entry.command, args: entry.args, env: { ...getDefaultEnvironment(), ...entry.env } }));
    try {
      const { tools } = await client.listTools();
      expect(tools.map((t) => t.name)).toEqual(expect.arrayContaining(['query', 'execute', 'list_tables', 'describe_table']));
      // The lab's remote MCP servers, each under its namespace, listed with a per-listing OBO / API key.
      expect(tools.some((t) => t.name.startsWith('tickets__'))).toBe(true);
      expect(tools.some((t) => t.name.startsWith('weather__'))).toBe(true);
      const result = await client.callTool({ name: 'query', arguments: { sql: 'SELECT mrn, full_name FROM patients ORDER BY id LIMIT 3' } });
      const seconds = (performance.now() - started) / 1000;
      console.log(`[demo] from launch to the first governed call: ${seconds.toFixed(1)} s (sign-in included)`);
      expect(result.isError ?? false).toBe(false);
      const rows = (result.structuredContent as { rows: unknown[] }).rows;
      expect(rows).toHaveLength(3);

      // The call is on the timeline, live, with its join keys.
      await ui.getByRole('tab', { name: 'Timeline' }).click();
      const row = ui.getByRole('listbox', { name: /Audit records/ }).getByRole('option').filter({ hasText: 'query' }).first();
      await row.waitFor({ timeout: 20_000 });
      await row.click();
      const detail = ui.getByRole('complementary');
      await detail.getByRole('button', { name: 'Copy OBO jti' }).waitFor();
      await detail.getByRole('button', { name: 'Copy Lease id' }).waitFor();

      // Tier 2: the first write waits for the person, who approves it on the card in the web UI; a
      // second write of the same scope in this session is covered by that approval.
      const progress: string[] = [];
      const firstWrite = client.callTool(
        { name: 'execute', arguments: { sql: "UPDATE appointments SET status = 'completed' WHERE id = 1" } },
        undefined,
        { onprogress: (p) => void progress.push(p.message ?? '') },
      );
      await ui.getByRole('tab', { name: /Approvals/ }).click();
      const card = ui.getByTestId('pending-approval');
      await card.waitFor({ timeout: 20_000 });
      expect(await card.textContent()).toContain("UPDATE appointments SET status = 'completed' WHERE id = 1");
      await card.getByRole('button', { name: 'Approve' }).click();
      const first = await firstWrite;
      expect(first.isError ?? false, JSON.stringify(first.content)).toBe(false);
      expect(progress.join('\n')).toMatch(/Waiting for your approval/);
      const second = await client.callTool({ name: 'execute', arguments: { sql: "UPDATE appointments SET status = 'completed' WHERE id = 2" } });
      expect(second.isError ?? false).toBe(false);
      expect(await card.count()).toBe(0);
      await ui.getByRole('button', { name: /Revoke approval for execute/ }).waitFor();
    } finally {
      await client.close();
    }
  });

  it('stops cleanly on Ctrl-C and leaves nothing for the throwaway lab IdP in the keychain', async () => {
    const issuer = output.match(/Lab endpoints: IdP (\S+)/)![1]!;
    const ns = createHash('sha256').update(issuer).digest('hex').slice(0, 12);
    const lookup = async (name: string): Promise<string> =>
      (await run('secret-tool', ['lookup', 'service', 'Countersign', 'username', `${ns}:${name}`], { env: { ...process.env, ...keyring.env } }).catch(() => ({ stdout: '' }))).stdout;
    // signed in above: the session and this run's registration are in the keychain while the demo runs
    expect(await lookup('session')).not.toBe('');
    expect(await lookup('client')).not.toBe('');
    const exited = new Promise<number | null>((r) => demo.once('exit', (code) => r(code)));
    demo.kill('SIGINT');
    expect(await exited).toBe(0);
    for (const name of ['session', 'client', 'dpop-key']) expect(await lookup(name)).toBe('');
  });
});
