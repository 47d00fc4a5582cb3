/**
 * Claude Desktop starts each stdio server twice at the same instant (test/clients/claude-desktop-like.ts).
 * With no app running, each bridge starts one: here the real thing, `countersign serve` on the lab,
 * started by the bundled bridges themselves, with the sign-in of an earlier run in a real keychain.
 * Exactly one core runs, both sessions work, and neither asks for a second sign-in: the core that loses
 * the lock stops before it reads the keychain or refreshes the sign-in the winner uses.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolvePaths } from '../../common/paths.ts';
import { labAppConfig } from '../../lab/app-config.ts';
import { startLab, type Lab } from '../../lab/index.ts';
import { ROOT, buildBridgeInto } from '../bridge/helpers.ts';
import { launchBrowser, type LabBrowser } from '../helpers/browser.ts';
import { signInOnDemoUi } from '../helpers/demo.ts';
import { startTestKeyring, type TestKeyring } from '../helpers/keyring.ts';
import { launchLikeClaudeDesktop, resultText, type ClaudeDesktopLikeSession } from './claude-desktop-like.ts';

const BIN = join(ROOT, 'bin', 'countersign.mjs');
let keyring: TestKeyring;
let lab: Lab;
let browser: LabBrowser;
let home: string;
let configFile: string;
let bridgePath: string;
let sessions: ClaudeDesktopLikeSession[] = [];

function env(): Record<string, string> {
  return { ...(process.env as Record<string, string>), ...keyring.env, COUNTERSIGN_HOME: home };
}

/** `countersign serve` as a person starts it; resolves with its launch link once it prints it. */
function serveByHand(): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [BIN, 'serve', '--config', configFile, '--no-open'], { env: env(), stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const url = /http:\/\/127\.0\.0\.1:\d+\/#token=\S+/.exec(out)?.[0];
      if (url) resolve({ child, url });
    });
    child.stderr!.on('data', () => {});
    child.once('exit', (code) => reject(new Error(`serve exited with ${code}: ${out}`)));
  });
}

beforeAll(async () => {
  [keyring, lab, browser, home] = await Promise.all([startTestKeyring(), startLab(), launchBrowser(), mkdtemp(join(tmpdir(), 'cs-two-spawns-'))]);
  configFile = join(home, 'config.json');
  await writeFile(configFile, JSON.stringify({ ...labAppConfig(lab), demo: true }));
  bridgePath = buildBridgeInto(home);
  // Yesterday: the person signed in once; the sign-in is kept in the keychain.
  const first = await serveByHand();
  const ui = await signInOnDemoUi(browser, first.url);
  await ui.close();
  const exited = new Promise((resolve) => first.child.once('exit', resolve));
  first.child.kill('SIGTERM');
  await exited;
}, 120_000);

afterAll(async () => {
  await Promise.all(sessions.map((s) => s.close()));
  const paths = resolvePaths({ platform: process.platform, env: { COUNTERSIGN_HOME: home }, home });
  try {
    const { pid } = JSON.parse(await readFile(join(paths.runDir, 'core.lock'), 'utf8')) as { pid: number };
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 100; i++) {
      await new Promise((r) => setTimeout(r, 100));
      try {
        process.kill(pid, 0);
      } catch {
        break;
      }
    }
  } catch {
    // no core left running
  }
  await browser?.close();
  await lab?.stop();
  await keyring?.stop();
  if (home) await rm(home, { recursive: true, force: true });
}, 60_000);

describe('two bridges started at the same instant with no app running', () => {
  it('start exactly one core; both sessions work on the kept sign-in, and one survives the other', async () => {
    const appLog = join(home, 'app.log');
    const appCommand = ['/bin/sh', '-c', `exec "$0" "$1" serve --config "$2" --no-open 2>>"$3"`, process.execPath, BIN, configFile, appLog];
    const pair = await launchLikeClaudeDesktop({
      bridgePath,
      env: { ...keyring.env, COUNTERSIGN_HOME: home, COUNTERSIGN_APP_CMD: JSON.stringify(appCommand), COUNTERSIGN_APP_WAIT_MS: '40000' },
    });
    sessions = pair;
    const [a, b] = pair;
    for (const s of pair) {
      expect(s.problems).toEqual([]);
      expect(s.tools.map((t) => t.name)).toContain('query');
    }
    expect(b.tools).toEqual(a.tools);

    // Signed in from the keychain in the one core: no call is told to sign in.
    for (const s of pair) {
      const result = await s.call('query', { sql: 'SELECT count(*) AS n FROM patients' });
      expect(result.isError, resultText(result)).toBeFalsy();
    }

    const log = await readFile(appLog, 'utf8');
    const started = pair.reduce((n, s) => n + s.stderr.filter((l) => l.includes('starting the app')).length, 0);
    const listening = log.split('\n').filter((l) => l.includes('socket: listening')).length;
    const refused = log.split('\n').filter((l) => l.includes('[ALREADY_RUNNING]')).length;
    console.log(`[two spawns] bridges that started the app: ${started}; cores listening: ${listening}; cores that stopped at the lock: ${refused}`);
    expect(listening).toBe(1);
    expect(refused).toBe(started - 1);
    // The core that lost stopped before it opened the keychain or the audit store.
    expect(log).not.toMatch(/needs_sign_in|refresh.*(failed|refused)/i);

    a.kill();
    const after = await b.call('query', { sql: 'SELECT 1 AS one' });
    expect(after.isError, resultText(after)).toBeFalsy();
  }, 120_000);
});
