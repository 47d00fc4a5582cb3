/**
 * The keychain's state reaches the app's status (`keychain` in common/contract/status.ts), from what
 * `openSecretStore` found, through both hosts that open it: the headless host (`serve`, main/headless/
 * start.ts) with the keychain locked (a private gnome-keyring restarted locked), and the desktop core's
 * entry (main/core/utility-entry.ts, in a process of its own as Electron's utility process is) with no
 * Secret Service on the bus. Both run the real core on the lab; the status is read as the UI reads it.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StatusSchema } from '../../common/contract.ts';
import { labAppConfig } from '../../lab/app-config.ts';
import { startLab, type Lab } from '../../lab/index.ts';
import { parseAppConfig } from '../../main/core/config/config.ts';
import { serve, type Served } from '../../main/headless/start.ts';
import { startTestKeyring, type TestKeyring } from '../helpers/keyring.ts';
import { REPO_ROOT } from '../helpers/ui.ts';

const run = promisify(execFile);
const quiet = { info() {}, warn() {}, error() {} };

let lab: Lab;
let keyring: TestKeyring;
let work: string;

beforeAll(async () => {
  [lab, keyring, work] = await Promise.all([startLab(), startTestKeyring({ private: true }), mkdtemp(join(tmpdir(), 'cs-keychain-status-'))]);
}, 60_000);

afterAll(async () => {
  await lab?.stop();
  await keyring?.stop();
  if (work) await rm(work, { recursive: true, force: true });
}, 60_000);

describe("the keychain's state in the app's status", () => {
  it('headless, the keychain locked at start: the status carries KEYCHAIN_LOCKED and the reason, through the contract', async () => {
    await keyring.relock();
    let served: Served | undefined;
    try {
      served = await serve({ config: parseAppConfig(labAppConfig(lab), 'lab configuration'), home: join(work, 'headless'), log: quiet });
      const status = StatusSchema.parse(await served.core.handlers['status.get']({}));
      expect(status.keychain).toMatchObject({ persistent: false, code: 'KEYCHAIN_LOCKED' });
      const reason = status.keychain?.persistent === false ? status.keychain.reason : '';
      expect(reason).toMatch(/locked.*Unlock it/);
      expect(reason).toContain('sign in each time');
      expect(reason).toContain('restart it once the keychain is usable');
    } finally {
      await served?.stop();
      await keyring.unlock();
    }
  }, 60_000);

  it('desktop, no Secret Service on the bus: the core entry puts KEYCHAIN_UNAVAILABLE and the reason in the status it serves the shell', async () => {
    const dataDir = join(work, 'desktop-data');
    await mkdir(dataDir, { recursive: true });
    await writeFile(join(dataDir, 'config.json'), JSON.stringify(labAppConfig(lab)));
    // Plays Electron: `process.parentPort` hands the entry one end of a MessageChannel; the shell's end
    // asks `status.get` as the shell's IPC handler would, until the core serves it.
    const script = `
      import { MessageChannel } from 'node:worker_threads';
      import { PortRpc, fromEventPort } from './common/port-rpc.ts';
      const eventPort = (p) => {
        const wrapped = new Map();
        return {
          postMessage: (m) => p.postMessage(m),
          on: (_e, l) => { const w = (data) => l({ data }); wrapped.set(l, w); p.on('message', w); },
          off: (_e, l) => p.off('message', wrapped.get(l)),
          start: () => p.start(),
        };
      };
      const { port1, port2 } = new MessageChannel();
      process.argv = [process.execPath, 'utility-entry', '--data-dir=' + process.env.TEST_DATA_DIR];
      process.parentPort = { once: (_e, l) => setImmediate(() => l({ data: null, ports: [eventPort(port1)] })) };
      const shell = new PortRpc(fromEventPort(eventPort(port2)));
      await import('./main/core/utility-entry.ts');
      let status;
      for (let i = 0; i < 40 && !status; i += 1) {
        // A request sent before the core listens on its port is lost: each ask gives up after a second.
        status = await shell.call('status.get', {}, AbortSignal.timeout(1_000)).catch(() => undefined);
        if (!status) await new Promise((r) => setTimeout(r, 100));
      }
      console.log(JSON.stringify(status ?? null));
      await shell.call('core.drain', {}, AbortSignal.timeout(10_000)).catch(() => undefined);
      process.exit(0);
    `;
    const { stdout, stderr } = await run(process.execPath, ['--input-type=module', '-e', script], {
      cwd: REPO_ROOT,
      timeout: 50_000,
      env: {
        ...process.env,
        TEST_DATA_DIR: dataDir,
        COUNTERSIGN_HOME: join(work, 'desktop-home'),
        DBUS_SESSION_BUS_ADDRESS: `unix:path=${join(keyring.env.XDG_RUNTIME_DIR, 'no-such-bus')}`,
      },
    });
    expect(stderr).toContain('secrets: KEYCHAIN_UNAVAILABLE: keeping secrets in memory only');
    const status = StatusSchema.parse(JSON.parse(stdout.trim().split('\n').at(-1)!));
    expect(status.host).toBe('electron');
    expect(status.keychain).toMatchObject({ persistent: false, code: 'KEYCHAIN_UNAVAILABLE' });
    const reason = status.keychain?.persistent === false ? status.keychain.reason : '';
    expect(reason).toContain('Secret Service');
    expect(reason).toContain('sign in each time');
  }, 60_000);
});
