/**
 * "Start a core on the lab and sign in", written once for the tests that need it: the real core
 * (startCore) on the lab's configuration with its data under a test's own home, Chromium playing the
 * system browser on the lab IdP's login page (next to `logInOnLabPage`), and an MCP SDK client that
 * spawns the bridge as Claude Desktop does.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/sdk/client/stdio.js';
import { rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { resolvePaths, type CountersignPaths } from '../../common/paths.ts';
import { labAppConfig } from '../../lab/app-config.ts';
import type { Lab } from '../../lab/index.ts';
import { startCore, type Core, type CoreAuth, type CoreOptions } from '../../main/core/app.ts';
import type { TokenSource } from '../../main/core/ports.ts';
import { waitForUi } from '../../main/core/approvals/prompter.ts';
import { mcpConfigEntry } from '../../main/core/claude-desktop/config.ts';
import { parseAppConfig } from '../../main/core/config/config.ts';
import { serve, type Served } from '../../main/headless/start.ts';
import { MemorySecretStore } from '../../main/core/secrets/memory-store.ts';
import { buildBridgeInto } from '../bridge/helpers.ts';
import { logInOnLabPage, type LabBrowser } from './browser.ts';
import { REPO_ROOT } from './ui.ts';

export const quietLog = { info: () => {}, warn: () => {}, error: () => {} };

/** Where a core keeps its data when COUNTERSIGN_HOME is `home`. */
export function homePaths(home: string): CountersignPaths {
  return resolvePaths({ platform: process.platform, env: { ...process.env, COUNTERSIGN_HOME: home }, home: homedir() });
}

export interface LabCoreOptions extends Partial<CoreOptions> {
  lab: Lab;
  home: string;
  /** Plays the system browser: signs in as alice on the lab IdP's page. Without it nothing is opened. */
  browser?: Pick<LabBrowser, 'context'>;
}

/**
 * The core on the lab: the lab's configuration, a memory keychain, the web UI's approvals (no
 * prompt), and quiet logs, each of which a test may replace. It is not signed in yet: call
 * `core.handlers['session.signIn']({})`.
 */
export function startLabCore({ lab, home, browser, ...options }: LabCoreOptions): Promise<Core> {
  return startCore({
    config: parseAppConfig(labAppConfig(lab), 'lab configuration'),
    host: 'headless',
    version: '0.0.0-test',
    secrets: new MemorySecretStore('this test keeps nothing between starts'),
    prompter: waitForUi,
    openExternal: browser ? (url) => logInOnLabPage(browser, url) : async () => {},
    paths: homePaths(home),
    log: quietLog,
    ...options,
  });
}

/**
 * Sign-in's stand-in for a core that starts signed in (`createAuth: async () => signedInAs(tokens)`): a
 * session holding a real access token the test obtained from the lab IdP over HTTP.
 */
export function signedInAs(tokens: TokenSource): CoreAuth {
  const user = tokens.user()!;
  return {
    getAccessToken: (signal?: AbortSignal) => tokens.getAccessToken(signal),
    stepUp: (challenge, signal) => tokens.stepUp(challenge, signal),
    user: () => user,
    dpopKeyPair: () => tokens.dpopKeyPair(),
    status: () => ({ state: 'signed_in', user, persistent: false }),
    onStatus: () => () => {},
    onSignOut: () => () => {},
    signIn: async () => user,
    signOut: async () => {},
    close: async () => {},
  } as CoreAuth;
}

/** An MCP SDK client on the bundled bridge (dist/bridge.mjs built into `home`), with no app to start. */
export async function connectBuiltBridge(home: string, clientInfo: { name: string; version: string }): Promise<Client> {
  const client = new Client(clientInfo);
  await client.connect(
    new StdioClientTransport({
      command: process.execPath,
      args: [buildBridgeInto(home)],
      env: { ...getDefaultEnvironment(), COUNTERSIGN_HOME: home, COUNTERSIGN_APP_CMD: '[]' },
      stderr: 'ignore',
    }),
  );
  return client;
}

/** An MCP SDK client on the bridge, started from the entry Countersign writes into Claude Desktop's configuration. */
export async function connectBridge(home: string, clientInfo: { name: string; version: string }): Promise<Client> {
  const entry = mcpConfigEntry({ countersignHome: home, bridgePath: join(REPO_ROOT, 'bridge', 'main.ts') });
  const client = new Client(clientInfo);
  await client.connect(new StdioClientTransport({ command: entry.command, args: entry.args, env: { ...getDefaultEnvironment(), ...entry.env }, stderr: 'ignore' }));
  return client;
}

/**
 * `countersign serve` for a test: the headless host with its data under `home`, Chromium signing in
 * on the lab IdP's page, nothing opened for the UI and quiet logs unless the test says otherwise.
 */
export function serveForTest(options: Parameters<typeof serve>[0] & { home: string; browser: Pick<LabBrowser, 'context'> }): Promise<Served> {
  const { browser, ...rest } = options;
  return serve({ log: quietLog, openUi: async () => {}, openExternal: (url) => logInOnLabPage(browser, url), ...rest });
}

type Stoppable = { close(): Promise<unknown> } | { stop(): Promise<unknown> } | { end(): Promise<unknown> };

/** Stops what a test started, in the order given, skipping what never started; then removes its home. */
export async function stopAll(parts: Array<Stoppable | undefined>, home?: string): Promise<void> {
  for (const part of parts) {
    if (!part) continue;
    await ('close' in part ? part.close() : 'stop' in part ? part.stop() : part.end());
  }
  if (home) await rm(home, { recursive: true, force: true });
}
