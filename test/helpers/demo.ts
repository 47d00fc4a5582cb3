/**
 * `npm run demo` as a person runs it, for the end-to-end tests: start it, read what it prints (the app's
 * address, the Claude Desktop entry, the lab's endpoints), sign in on its UI as alice, and connect the
 * MCP SDK client through the very entry it prints, as Claude Desktop would.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { Page } from 'playwright-core';
import { logInOnLabPage, type LabBrowser } from './browser.ts';

export interface DemoEntry {
  command: string;
  args: string[];
  env?: Record<string, string>;
}

export interface RunningDemo {
  readonly child: ChildProcess;
  /** Everything printed on stdout and stderr so far. */
  output(): string;
  errors(): string;
  /** The app's address with its one-time launch token. */
  readonly appUrl: string;
  /** The `mcpServers.countersign` entry printed for Claude Desktop. */
  readonly entry: DemoEntry;
  readonly issuer: string;
  /** Resolves with the exit code once the demo has stopped. */
  readonly exited: Promise<number | null>;
}

export interface DemoLaunch {
  command: string;
  args: string[];
  cwd?: string;
  env: NodeJS.ProcessEnv;
  /** Its own process group, to be stopped as a terminal's Ctrl-C stops it (a signal to the group). */
  detached?: boolean;
  readyTimeoutMs?: number;
}

/** Starts the demo and waits until it has printed its "Ctrl-C stops" line. */
export async function startDemo(launch: DemoLaunch): Promise<RunningDemo> {
  const child = spawn(launch.command, launch.args, { cwd: launch.cwd, env: launch.env, detached: launch.detached ?? false, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => finish(new Error(`the demo did not print "Ctrl-C stops" in time:\n${out}\n${err}`)), launch.readyTimeoutMs ?? 60_000);
    const check = () => {
      if (/Ctrl-C stops/.test(out)) finish();
    };
    const early = (code: number | null) => finish(new Error(`the demo exited (${code}) before it was ready:\n${out}\n${err}`));
    function finish(error?: Error) {
      clearTimeout(timer);
      child.stdout!.off('data', check);
      child.off('exit', early);
      if (error) reject(error);
      else resolve();
    }
    child.stdout!.on('data', check);
    child.once('exit', early);
    check();
  });
  return {
    child,
    output: () => out,
    errors: () => err,
    appUrl: out.match(/(http:\/\/127\.0\.0\.1:\d+\/#token=[\w-]+)/)![1]!,
    entry: JSON.parse(out.match(/"countersign": (\{.*\})/)![1]!) as DemoEntry,
    issuer: out.match(/Lab endpoints: IdP (\S+)/)![1]!,
    exited,
  };
}

/**
 * Opens the demo's UI and signs in as alice. Nothing can open a browser on this machine, so the UI shows
 * the sign-in address, as it would over SSH, and Chromium plays the system browser on the IdP's page.
 */
export async function signInOnDemoUi(browser: LabBrowser, appUrl: string): Promise<Page> {
  const ui = await browser.context.newPage();
  await ui.goto(appUrl);
  await ui.getByRole('note', { name: 'Lab mode' }).waitFor();
  await ui.getByRole('button', { name: 'Sign in with your identity provider' }).click();
  const link = ui.locator('.sign-in-url a');
  await link.waitFor({ timeout: 20_000 });
  await logInOnLabPage(browser, (await link.getAttribute('href'))!);
  await ui.getByText('Alice Lab').first().waitFor({ timeout: 20_000 });
  return ui;
}

/** The MCP SDK client on the bridge started from `entry` (its command, args and env), as Claude Desktop starts it. */
export async function connectThroughEntry(entry: DemoEntry, name = 'claude-desktop-stand-in'): Promise<Client> {
  const client = new Client({ name, version: '1.0.0' });
  await client.connect(new StdioClientTransport({ command: entry.command, args: entry.args, env: { ...getDefaultEnvironment(), ...entry.env } }));
  return client;
}
