/**
 * A client that lists before the user signs in: Claude Desktop starts the bridge at launch, lists once,
 * and lists again only when told. Before sign-in the remote upstreams cannot list (their listing needs
 * the user's token), so the first list holds the database tools only; after sign-in the core lists the
 * upstreams itself and sends `notifications/tools/list_changed`, and the next list has their tools.
 * The whole lab, the composed core (startCore), the bundled bridge and the MCP SDK client.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/sdk/client/stdio.js';
import { ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolvePaths } from '../../../common/paths.ts';
import { labAppConfig } from '../../../lab/app-config.ts';
import { startLab, type Lab } from '../../../lab/index.ts';
import { startCore, type Core } from '../../../main/core/app.ts';
import { ScriptedPrompterForTests } from '../../../main/core/approvals/prompter.ts';
import { parseAppConfig } from '../../../main/core/config/config.ts';
import { MemorySecretStore } from '../../../main/core/secrets/memory-store.ts';
import { buildBridgeInto } from '../../bridge/helpers.ts';
import { launchBrowser, logInOnLabPage, type LabBrowser } from '../../helpers/browser.ts';

let lab: Lab;
let browser: LabBrowser;
let home: string;
let core: Core;
let client: Client;
let changes = 0;
let changed: () => void = () => {};
const quiet = { info: () => {}, warn: () => {}, error: () => {} };

beforeAll(async () => {
  [lab, browser, home] = await Promise.all([startLab(), launchBrowser(), mkdtemp(join(tmpdir(), 'countersign-late-upstream-'))]);
  core = await startCore({
    config: parseAppConfig(labAppConfig(lab), 'lab configuration'),
    host: 'headless',
    version: '0.0.0-test',
    secrets: new MemorySecretStore('this test keeps nothing between starts'),
    prompter: new ScriptedPrompterForTests(),
    // Chromium plays the system browser: it logs in as alice on the lab IdP's page.
    openExternal: (url) => logInOnLabPage(browser, url),
    paths: resolvePaths({ platform: process.platform, env: { ...process.env, COUNTERSIGN_HOME: home }, home: homedir() }),
    log: quiet,
  });
  const bridgePath = buildBridgeInto(home);
  client = new Client({ name: 'late-upstream-test', version: '1' });
  client.setNotificationHandler(ToolListChangedNotificationSchema, async () => {
    changes += 1;
    changed();
  });
  await client.connect(
    new StdioClientTransport({
      command: process.execPath,
      args: [bridgePath],
      env: { ...getDefaultEnvironment(), COUNTERSIGN_HOME: home, COUNTERSIGN_APP_CMD: '[]' },
      stderr: 'ignore',
    }),
  );
}, 60_000);

afterAll(async () => {
  await client?.close();
  await core?.stop();
  await browser?.close();
  await lab?.stop();
  if (home) await rm(home, { recursive: true, force: true });
}, 60_000);

const names = async (): Promise<string[]> => (await client.listTools()).tools.map((t) => t.name);

describe('remote upstreams that could not list before sign-in', () => {
  it('are left out of a list taken before sign-in, and nothing is announced while signed out', async () => {
    const before = await names();
    expect(before).toContain('query');
    expect(before.filter((n) => n.startsWith('office__') || n.startsWith('quotes__'))).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(changes).toBe(0);
  });

  it('are listed by the core once the user signs in, and the client is told to list again', async () => {
    const told = new Promise<void>((resolve) => (changed = resolve));
    await core.handlers['session.signIn']({});
    await Promise.race([told, new Promise((_, reject) => setTimeout(() => reject(new Error('no tools/list_changed after sign-in')), 10_000))]);
    const after = await names();
    expect(after).toEqual(expect.arrayContaining(['query', 'office__get_weather', 'office__create_ticket', 'quotes__get_quote']));
    const listings = core.audit.page({ filter: { kind: ['system'] }, limit: 10 }).records.filter((r) => r.tool === 'office.*');
    expect(listings.length).toBeGreaterThanOrEqual(1);
  });

  it('does not announce again when a listing finds the same tools', async () => {
    const seen = changes;
    await core.broker.warm();
    await names();
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(changes).toBe(seen);
  });
});
