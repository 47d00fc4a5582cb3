/**
 * The README's promise, end to end: `npm run demo` (the lab and the app on it) reaches Claude's first
 * governed call. The demo launcher runs as a child process exactly as the README starts it (after the
 * build `npm test` has done), Chromium plays both the person's browser on the app's web UI and the
 * system browser on the lab IdP's login page, and the MCP SDK client spawns the bridge from the very
 * entry the demo prints for Claude Desktop.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchBrowser, type LabBrowser } from '../helpers/browser.ts';
import { connectThroughEntry, signInOnDemoUi, startDemo, type DemoEntry, type RunningDemo } from '../helpers/demo.ts';
import { startTestKeyring, type TestKeyring } from '../helpers/keyring.ts';

const run = promisify(execFile);
let keyring: TestKeyring;
let home: string;
let demo: RunningDemo;
let browser: LabBrowser;
let output = '';
let started = 0;
let entry: DemoEntry;

beforeAll(async () => {
  [keyring, home, browser] = await Promise.all([startTestKeyring(), mkdtemp(path.join(tmpdir(), 'cs-demo-home-')), launchBrowser()]);
  started = performance.now();
  // Where Claude Desktop's configuration is on Linux: "Connect Claude Desktop" writes it there.
  demo = await startDemo({
    command: process.execPath,
    args: ['lab/demo.ts', '--no-open', '--home', home],
    env: { ...process.env, ...keyring.env, XDG_CONFIG_HOME: path.join(home, 'xdg-config') },
  });
  output = demo.output();
  entry = demo.entry;
});

afterAll(async () => {
  if (demo && demo.child.exitCode === null) {
    demo.child.kill('SIGTERM');
    await demo.exited;
  }
  await browser?.close();
  await keyring?.stop();
  await rm(home, { recursive: true, force: true });
});

describe('npm run demo', () => {
  it("reaches Claude's first governed call: sign in once, a query through the bridge, then an approved write and a cached one", async () => {
    expect(output).toMatch(/LOCAL LAB/);
    expect(entry.env?.COUNTERSIGN_HOME).toBe(home);
    const ui = await signInOnDemoUi(browser, demo.appUrl);
    const client = await connectThroughEntry(entry);
    try {
      const { tools } = await client.listTools();
      expect(tools.map((t) => t.name)).toEqual(expect.arrayContaining(['query', 'execute', 'list_tables', 'describe_table']));
      // The lab's remote MCP servers, each under its namespace, listed with a per-listing OBO / API key.
      expect(tools.some((t) => t.name.startsWith('office__'))).toBe(true);
      expect(tools.some((t) => t.name.startsWith('quotes__'))).toBe(true);
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

      // The README's other way in: "Connect Claude Desktop" in the demo's Settings writes Claude
      // Desktop's configuration, and Claude Desktop starts the bridge from that entry. It must reach
      // this demo (its COUNTERSIGN_HOME), not start another Countersign with no configuration.
      await ui.getByRole('tab', { name: 'Settings' }).click();
      await ui.getByRole('button', { name: 'Connect Claude Desktop' }).click();
      const written = path.join(home, 'xdg-config', 'Claude', 'claude_desktop_config.json');
      await expect.poll(() => readFile(written, 'utf8').catch(() => ''), { timeout: 20_000 }).toContain('countersign');
      const connected = (JSON.parse(await readFile(written, 'utf8')) as { mcpServers: Record<string, DemoEntry> }).mcpServers.countersign!;
      expect(connected.env?.COUNTERSIGN_HOME).toBe(home);
      const viaButton = await connectThroughEntry({ ...connected, env: { ...connected.env, COUNTERSIGN_APP_CMD: '[]' } });
      try {
        const r = await viaButton.callTool({ name: 'query', arguments: { sql: 'SELECT count(*) AS n FROM patients' } });
        expect(r.isError ?? false, JSON.stringify(r.content)).toBe(false);
      } finally {
        await viaButton.close();
      }
    } finally {
      await client.close();
    }
  });

  it('stops cleanly on Ctrl-C and leaves nothing for the throwaway lab IdP in the keychain', async () => {
    const issuer = demo.issuer;
    const ns = createHash('sha256').update(issuer).digest('hex').slice(0, 12);
    const lookup = async (name: string): Promise<string> =>
      (await run('secret-tool', ['lookup', 'service', 'Countersign', 'username', `${ns}:${name}`], { env: { ...process.env, ...keyring.env } }).catch(() => ({ stdout: '' }))).stdout;
    // signed in above: the session and this run's registration are in the keychain while the demo runs
    expect(await lookup('session')).not.toBe('');
    expect(await lookup('client')).not.toBe('');
    demo.child.kill('SIGINT');
    expect(await demo.exited).toBe(0);
    for (const name of ['session', 'client', 'dpop-key']) expect(await lookup(name)).toBe('');
  });
});
