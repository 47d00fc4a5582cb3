import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The password of the throwaway login keyring (it protects only a temp directory's test data). */
const KEYRING_PASSWORD = 'countersign-test-keyring';

export interface TestKeyring {
  /** True when this helper started its own bus and daemon (false: the developer's session keyring is used). */
  readonly private: boolean;
  /** Where gnome-keyring keeps its (encrypted) keyring files; empty when not private. */
  readonly dataDir: string;
  readonly env: { DBUS_SESSION_BUS_ADDRESS: string; XDG_DATA_HOME: string; XDG_RUNTIME_DIR: string };
  /** Restarts the keyring daemon without unlocking it: the login collection exists but is locked. */
  relock(): Promise<void>;
  /** Restarts the daemon unlocked again. */
  unlock(): Promise<void>;
  /** Kills the keyring daemon with SIGKILL (the Secret Service goes away from the bus); `unlock()` starts it again. */
  kill(): Promise<void>;
  /**
   * Runs `body`. gnome-keyring-daemon 42 can abort on its own when a client leaves the bus with a call
   * of its still in flight (a NULL client record, gnome-keyring#195; `secret-tool` is such a short-lived
   * client). If `body` fails and the daemon died meanwhile without being asked to, this prints the
   * daemon's log, starts it again unlocked and runs `body` once more. A failure while the daemon stayed
   * up, or a second failure, is the test's own.
   */
  retryIfDaemonDied<T>(body: () => Promise<T>): Promise<T>;
  /** Stops the daemon and the bus, removes the temp directory, restores the environment. Safe to call twice. */
  stop(): Promise<void>;
}

async function waitForName(address: string, name: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const { stdout } = await run(
      'dbus-send',
      ['--session', '--print-reply', '--dest=org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus.NameHasOwner', `string:${name}`],
      { env: { ...process.env, DBUS_SESSION_BUS_ADDRESS: address } },
    ).catch(() => ({ stdout: '' }));
    if (stdout.includes('boolean true')) return;
    if (Date.now() > deadline) throw new Error(`${name} did not appear on the test session bus`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A daemon the bus started on its own (D-Bus activation: a client asked for the Secret Service while
 * none ran, as on a desktop after the daemon died) owns the name too: stopped here, by the pid the bus
 * reports, so the next daemon is the one this helper controls.
 */
async function stopActivated(address: string): Promise<void> {
  const { stdout } = await run(
    'dbus-send',
    ['--session', '--print-reply', '--dest=org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus.GetConnectionUnixProcessID', 'string:org.freedesktop.secrets'],
    { env: { ...process.env, DBUS_SESSION_BUS_ADDRESS: address } },
  ).catch(() => ({ stdout: '' }));
  const pid = Number(/uint32 (\d+)/.exec(stdout)?.[1]);
  if (!pid) return;
  process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 100; i += 1) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

function stopChild(child: ChildProcess | undefined, asked?: WeakSet<ChildProcess>): Promise<void> {
  if (child) asked?.add(child);
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

/**
 * A Secret Service for tests: when DBUS_SESSION_BUS_ADDRESS isn't set (CI, containers), a private
 * D-Bus session bus and a gnome-keyring-daemon whose login keyring is unlocked and lives in a temp
 * directory (XDG_DATA_HOME). `private: true` forces that even on a desktop, for tests that lock it.
 * The test process's environment points at it until `stop()`.
 */
export async function startTestKeyring(options: { private?: boolean } = {}): Promise<TestKeyring> {
  const existing = process.env.DBUS_SESSION_BUS_ADDRESS;
  if (existing && !options.private) {
    return {
      private: false,
      dataDir: '',
      env: { DBUS_SESSION_BUS_ADDRESS: existing, XDG_DATA_HOME: process.env.XDG_DATA_HOME ?? '', XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '' },
      relock: () => Promise.reject(new Error('relock needs a private keyring')),
      retryIfDaemonDied: (body) => body(),
      kill: () => Promise.reject(new Error('kill needs a private keyring')),
      unlock: () => Promise.reject(new Error('unlock needs a private keyring')),
      stop: async () => {},
    };
  }
  const root = await mkdtemp(join(tmpdir(), 'countersign-keyring-'));
  const dataDir = join(root, 'data');
  const runtimeDir = join(root, 'run');
  await mkdir(dataDir);
  await mkdir(runtimeDir);
  await chmod(runtimeDir, 0o700);
  const address = `unix:path=${join(runtimeDir, 'bus')}`;
  const env = { DBUS_SESSION_BUS_ADDRESS: address, XDG_DATA_HOME: dataDir, XDG_RUNTIME_DIR: runtimeDir };
  const saved = { DBUS_SESSION_BUS_ADDRESS: process.env.DBUS_SESSION_BUS_ADDRESS, XDG_DATA_HOME: process.env.XDG_DATA_HOME, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR };

  const bus = spawn('dbus-daemon', ['--session', '--nofork', `--address=${address}`], { stdio: 'ignore' });
  let daemon: ChildProcess | undefined;
  /** Daemons that exited without being asked to (by `stop`, `relock`, `unlock` or `kill`), with how they ended. */
  const diedUnasked: string[] = [];
  const asked = new WeakSet<ChildProcess>();
  const logFile = join(root, 'daemon.log');
  const log = createWriteStream(logFile, { flags: 'a' });
  const startDaemon = async (unlocked: boolean) => {
    const child = spawn('gnome-keyring-daemon', ['--components=secrets', '--foreground', ...(unlocked ? ['--unlock'] : [])], {
      env: { ...process.env, ...env },
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    daemon = child;
    child.stderr!.pipe(log, { end: false });
    child.once('exit', (code, signal) => {
      if (!asked.has(child)) diedUnasked.push(`pid ${child.pid} ${signal ? `killed by ${signal}` : `exited with ${code}`}`);
    });
    if (unlocked) daemon.stdin!.end(KEYRING_PASSWORD);
    else daemon.stdin!.end();
    await waitForName(address, 'org.freedesktop.secrets');
  };
  /** Stops this helper's daemon and any the bus activated meanwhile, then starts one, unlocked or not. */
  const restart = async (unlocked: boolean) => {
    await stopChild(daemon, asked);
    await stopActivated(address);
    await startDaemon(unlocked);
  };
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await stopChild(daemon, asked);
    await stopChild(bus);
    log.end();
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    await rm(root, { recursive: true, force: true });
  };
  try {
    await waitForName(address, 'org.freedesktop.DBus');
    await startDaemon(true);
  } catch (error) {
    await stop();
    throw error;
  }
  Object.assign(process.env, env);
  return {
    private: true,
    dataDir,
    env,
    relock: () => restart(false),
    unlock: () => restart(true),
    async kill() {
      const d = daemon;
      if (!d || d.exitCode !== null || d.signalCode !== null) return;
      asked.add(d);
      await new Promise<void>((resolve) => {
        d.once('exit', () => resolve());
        d.kill('SIGKILL');
      });
    },
    async retryIfDaemonDied(body) {
      const before = diedUnasked.length;
      try {
        return await body();
      } catch (error) {
        // The failed call can see the daemon leave the bus before this process sees it exit.
        const d = daemon;
        if (diedUnasked.length === before && d && d.exitCode === null && d.signalCode === null) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, 500);
            d.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
          });
        }
        if (diedUnasked.length === before) throw error;
        const text = await readFile(logFile, 'utf8').catch(() => '');
        console.warn(
          `gnome-keyring-daemon died on its own (${diedUnasked.slice(before).join('; ')}) during a test, which then failed with: ${String(error)}\n` +
            `daemon log:\n${text.trim() || '(empty)'}\nStarting it again unlocked and running the test once more.`,
        );
        await restart(true);
        return body();
      }
    },
    stop,
  };
}
