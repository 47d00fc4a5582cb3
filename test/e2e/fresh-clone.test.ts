/**
 * The README's first command on a machine whose `node` is 20.x: in a fresh clone, `npm install && npm run
 * demo` with that Node first on PATH, typed as a newcomer types it, up to Claude's first governed call.
 * `npm install` brings the Node the sources need (the registry's `node` package puts Node 24 in
 * node_modules/.bin, which npm's scripts find first); the `countersign` command and the bridge are then
 * run on the machine's Node 20 too, as a shell or Claude Desktop finds it.
 *
 * It clones the commit checked out (uncommitted changes are not in it) and installs from the npm
 * registry through this machine's npm cache. Skipped, saying so, only where no Node 20 is installed.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, sep } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchBrowser, type LabBrowser } from '../helpers/browser.ts';
import { connectThroughEntry, signInOnDemoUi, startDemo, type RunningDemo } from '../helpers/demo.ts';
import { startTestKeyring, type TestKeyring } from '../helpers/keyring.ts';
import { REPO_ROOT } from '../helpers/ui.ts';
import { INIT, spawnRawBridge } from '../bridge/helpers.ts';

const run = promisify(execFile);

/** A Node 20.x on this machine: the first on PATH, else in the usual places. */
function findNode20(): { path: string; version: string } | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(delimiter), '/usr/bin', '/usr/local/bin']) {
    const path = join(dir, 'node');
    if (!dir || !existsSync(path)) continue;
    try {
      const version = execFileSync(path, ['--version'], { encoding: 'utf8' }).trim();
      if (version.startsWith('v20.')) return { path, version };
    } catch {
      // not a runnable node
    }
  }
  return undefined;
}

const node20 = findNode20();
if (!node20) console.log('[fresh clone] skipped: no Node.js 20.x on this machine (looked on PATH, in /usr/bin and /usr/local/bin)');

/**
 * A newcomer's shell: the machine's Node 20 first on PATH, nothing of the test runner's npm (its
 * node_modules/.bin, npm_* settings) or of CI's install (ELECTRON_SKIP_BINARY_DOWNLOAD).
 */
function newcomerEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(npm_|VITEST|INIT_CWD$|NODE$|NODE_ENV$|NODE_OPTIONS$|TEST$|ELECTRON_)/i.test(k)) continue;
    env[k] = v;
  }
  const rest = (process.env.PATH ?? '').split(delimiter).filter((d) => d && !d.includes(`node_modules${sep}.bin`));
  env.PATH = [dirname(node20!.path), ...rest].join(delimiter);
  return { ...env, ...extra };
}

function runIn(cwd: string, command: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (output += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (output += d));
    const timer = setTimeout(() => {
      child.kill('SIGTERM');
      reject(new Error(`${command} ${args.join(' ')} did not finish in ${timeoutMs / 1000} s:\n${output}`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

const seconds = (from: number): string => ((performance.now() - from) / 1000).toFixed(1);

let work: string;
let clone: string;
let home: string;
let keyring: TestKeyring;
let browser: LabBrowser;
let demo: RunningDemo | undefined;
let cloneStarted = 0;
let install: { code: number | null; output: string };
const stopAfter: Array<() => Promise<void> | void> = [];

describe.skipIf(!node20)(`npm install && npm run demo in a fresh clone, with the machine's ${node20?.version ?? 'Node 20'} first on PATH`, () => {
  beforeAll(async () => {
    [keyring, browser, work] = await Promise.all([startTestKeyring(), launchBrowser(), mkdtemp(join(tmpdir(), 'cs-fresh-clone-'))]);
    clone = join(work, 'countersign');
    home = join(work, 'home');
    cloneStarted = performance.now();
    await run('git', ['clone', '--quiet', REPO_ROOT, clone]);
    const t = performance.now();
    install = await runIn(clone, 'npm', ['install'], newcomerEnv(), 480_000);
    console.log(`[fresh clone] npm install on ${node20!.version}: ${seconds(t)} s (npm cache of this machine)`);
  }, 540_000);

  afterAll(async () => {
    for (const stop of stopAfter.splice(0).reverse()) await stop();
    if (demo && demo.child.exitCode === null && demo.child.signalCode === null) {
      process.kill(-demo.child.pid!, 'SIGINT');
      await demo.exited;
    }
    await browser?.close();
    await keyring?.stop();
    if (work) await rm(work, { recursive: true, force: true, maxRetries: 3 });
  }, 60_000);

  it('npm install succeeds, brings Node 24 for the scripts, and installs what the lockfile pins', async () => {
    expect(install.code, install.output).toBe(0);
    expect(install.output).not.toMatch(/ERR_UNKNOWN_FILE_EXTENSION|npm error/);
    // every dependency's install script was reviewed (package.json allowScripts)
    expect(install.output).not.toMatch(/install scripts not yet covered/);
    const { stdout } = await run(join(clone, 'node_modules/.bin/node'), ['--version']);
    expect(stdout.trim()).toMatch(/^v24\./);
    // the same versions as on Node 24: npm found nothing to change in the lockfile
    const { stdout: changed } = await run('git', ['status', '--porcelain'], { cwd: clone });
    expect(changed).toBe('');
    expect(JSON.parse(readFileSync(join(clone, 'node_modules/electron/package.json'), 'utf8')).version).toBe(
      JSON.parse(readFileSync(join(clone, 'package-lock.json'), 'utf8')).packages['node_modules/electron'].version,
    );
  });

  it("npm run demo reaches Claude's first governed call through the entry it prints", async () => {
    expect(install.code).toBe(0);
    demo = await startDemo({
      command: 'npm',
      args: ['run', 'demo', '--', '--no-open', '--home', home],
      cwd: clone,
      env: newcomerEnv(keyring.env),
      detached: true,
      readyTimeoutMs: 180_000,
    });
    expect(demo.output()).not.toMatch(/ERR_UNKNOWN_FILE_EXTENSION/);
    // Claude Desktop is told to run the bridge on the Node the install brought, by absolute path
    expect(demo.entry.command).toBe(join(clone, 'node_modules/node/bin/node'));
    await signInOnDemoUi(browser, demo.appUrl);
    const client = await connectThroughEntry(demo.entry);
    try {
      const result = await client.callTool({ name: 'query', arguments: { sql: 'SELECT mrn FROM patients ORDER BY id LIMIT 3' } });
      console.log(`[fresh clone] from git clone to the first governed call: ${seconds(cloneStarted)} s (npm install, build, lab, sign-in included)`);
      expect(result.isError ?? false, JSON.stringify(result.content)).toBe(false);
      expect((result.structuredContent as { rows: unknown[] }).rows).toHaveLength(3);
    } finally {
      await client.close();
    }
  }, 300_000);

  it("the countersign command runs from the machine's Node 20, directly and through npx", async () => {
    const env = newcomerEnv();
    const direct = await run(node20!.path, ['bin/countersign.mjs', 'mcp-config'], { cwd: clone, env });
    const entry = (JSON.parse(direct.stdout) as { mcpServers: { countersign: { command: string; args: string[] } } }).mcpServers.countersign;
    expect(entry).toEqual({ command: join(clone, 'node_modules/node/bin/node'), args: [join(clone, 'dist/bridge.mjs')] });
    const npx = await run('npx', ['countersign', '--version'], { cwd: clone, env });
    expect(npx.stdout.trim()).toBe(JSON.parse(readFileSync(join(clone, 'package.json'), 'utf8')).version);
  });

  it("the bridge on the machine's Node 20 carries a governed call to the demo's app", async () => {
    expect(demo).toBeDefined();
    const client = await connectThroughEntry({ ...demo!.entry, command: node20!.path });
    try {
      const result = await client.callTool({ name: 'query', arguments: { sql: 'SELECT count(*) AS n FROM patients' } });
      expect(result.isError ?? false, JSON.stringify(result.content)).toBe(false);
    } finally {
      await client.close();
    }
  });

  it("the bridge on the machine's Node 20 starts the app when none runs (countersign serve hands itself to the Node the install brought)", async () => {
    const own = join(work, 'own-home');
    await mkdir(own, { mode: 0o700 });
    // a configuration whose services are not there: the app starts all the same, and the bridge reaches it
    await writeFile(
      join(own, 'config.json'),
      JSON.stringify({
        idp: { issuer: 'http://127.0.0.1:9', clientId: 'countersign', allowInsecureHttpForLoopbackOnly: true },
        vault: { address: 'http://127.0.0.1:9', allowInsecureHttpForLoopbackOnly: true },
        policyFile: join(clone, 'main/core/policy/demo-clinic.policy.jsonc'),
        postgres: { host: '127.0.0.1', port: 9, database: 'clinic' },
      }),
    );
    const bridge = spawnRawBridge(join(clone, 'dist/bridge.mjs'), { PATH: newcomerEnv().PATH!, COUNTERSIGN_HOME: own, COUNTERSIGN_APP_WAIT_MS: '30000' }, node20!.path);
    stopAfter.push(async () => {
      await bridge.stop();
      try {
        process.kill((JSON.parse(readFileSync(join(own, 'run/core.lock'), 'utf8')) as { pid: number }).pid, 'SIGTERM');
      } catch {
        // no app was started
      }
    });
    bridge.send(INIT);
    const init = await bridge.waitFor((m) => m.id === 0, 40_000);
    expect(init).toMatchObject({ result: { serverInfo: { name: 'countersign' } } });
    expect((init.result as { instructions?: string }).instructions ?? '').not.toMatch(/not running/);
    const lock = JSON.parse(readFileSync(join(own, 'run/core.lock'), 'utf8')) as { pid: number };
    // the app runs on the Node the install brought, not on the Node 20 that started it
    expect(readFileSync(`/proc/${lock.pid}/cmdline`, 'utf8').split('\0')[0]).toBe(join(clone, 'node_modules/node/bin/node'));
  }, 60_000);

  it('Ctrl-C stops the demo and everything it started', async () => {
    expect(demo).toBeDefined();
    const group = demo!.child.pid!;
    process.kill(-group, 'SIGINT'); // what a terminal's Ctrl-C does: the signal goes to the whole group
    await demo!.exited;
    const deadline = Date.now() + 10_000;
    let alive = true;
    while (alive && Date.now() < deadline) {
      try {
        process.kill(-group, 0);
        await new Promise((r) => setTimeout(r, 200));
      } catch {
        alive = false;
      }
    }
    expect(alive, 'a process of the demo outlived Ctrl-C').toBe(false);
  }, 30_000);
});
