/**
 * `npm start` on a machine without Electron's binary (these build machines): it says why and falls
 * back to the headless app, whose UI works in Chromium.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labAppConfig } from '../../lab/app-config.ts';
import { startLab, type Lab } from '../../lab/index.ts';
import { electronBinary } from '../../main/headless/start.ts';
import { launchBrowser, type LabBrowser } from '../helpers/browser.ts';

let lab: Lab;
let home: string;
let app: ChildProcess;
let browser: LabBrowser;
let stdout = '';
let stderr = '';

beforeAll(async () => {
  [lab, home, browser] = await Promise.all([startLab(), mkdtemp(path.join(tmpdir(), 'cs-start-home-')), launchBrowser()]);
  const config = path.join(home, 'config.json');
  await writeFile(config, JSON.stringify(labAppConfig(lab)));
  app = spawn(process.execPath, ['bin/countersign.mjs', 'start', '--no-open', '--config', config], {
    env: { ...process.env, COUNTERSIGN_HOME: home, DBUS_SESSION_BUS_ADDRESS: 'unix:path=/nonexistent' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  app.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  app.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const deadline = Date.now() + 30_000;
  while (!/#token=/.test(stdout)) {
    if (Date.now() > deadline || app.exitCode !== null) throw new Error(`npm start did not come up:\n${stdout}\n${stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
});

afterAll(async () => {
  if (app && app.exitCode === null) {
    const exited = new Promise((r) => app.once('exit', r));
    app.kill('SIGTERM');
    await exited;
  }
  await browser?.close();
  await lab?.stop();
  await rm(home, { recursive: true, force: true });
});

describe('npm start without an Electron binary', () => {
  it.skipIf(electronBinary() !== null)('says why and starts the headless app instead', () => {
    expect(stderr).toMatch(/Electron is not available here/);
    expect(stderr).toMatch(/Starting the headless app instead/);
  });

  it('reaches a working UI in Chromium, which says no keychain is usable here', async () => {
    const url = stdout.match(/(http:\/\/127\.0\.0\.1:\d+\/#token=[\w-]+)/)![1]!;
    const page = await browser.context.newPage();
    await page.goto(url);
    await page.getByRole('note', { name: 'Lab mode' }).waitFor();
    await page.getByRole('button', { name: 'Sign in with your identity provider' }).waitFor();
    expect(stderr).toMatch(/KEYCHAIN_UNAVAILABLE/);
  });
});
