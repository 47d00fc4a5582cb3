/**
 * Running a lab PostgreSQL server: as the OS user `postgres` when we are root (PostgreSQL refuses to
 * run as root), on a free loopback port, with its files in RAM when the machine has /dev/shm, TLS
 * certificates from a throwaway CA when asked, and an exit hook that stops what a dying process left.
 */
import { spawn, execFile } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { accessSync, closeSync, constants, openSync, readFileSync, rmSync } from 'node:fs';
import { chmod, chown, copyFile, mkdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';

export const execFileP = promisify(execFile);

export const SUPERUSER = 'postgres';

export interface Running {
  child: ChildProcess;
  dir: string;
}
export const running = new Set<Running>();
let exitHookInstalled = false;

export function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort when the test runner or the CLI dies without calling stop(): an immediate shutdown
  // (SIGQUIT) and the data directory removed, synchronously.
  process.on('exit', () => {
    for (const r of running) {
      try {
        r.child.kill('SIGQUIT');
      } catch {
        /* already gone */
      }
      try {
        rmSync(r.dir, { recursive: true, force: true });
      } catch {
        /* best effort */
      }
    }
  });
}

export interface OsUser {
  uid: number;
  gid: number;
  name: string;
}

/** The OS user PostgreSQL runs as: ourselves, or `postgres` when we are root. */
export function serverUser(): OsUser | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  if (!line) throw new Error('running as root needs an OS user "postgres" to run PostgreSQL');
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid), name: 'postgres' };
}

export function asUser(user: OsUser | undefined): { uid?: number; gid?: number; env: NodeJS.ProcessEnv } {
  const env = { ...process.env, LC_ALL: 'C.UTF-8', LANG: 'C.UTF-8', TZ: 'UTC' };
  if (!user) return { env };
  return { uid: user.uid, gid: user.gid, env: { ...env, HOME: tmpdir(), USER: user.name, LOGNAME: user.name } };
}

export async function own(path: string, user: OsUser | undefined, mode = 0o700): Promise<void> {
  if (user) await chown(path, user.uid, user.gid);
  await chmod(path, mode);
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Where clusters live: RAM-backed /dev/shm when there is one (a throwaway cluster needs no disk, and
 * copying the template there is not slowed by other disk traffic), else the OS temp dir.
 */
export function baseDir(): string {
  try {
    accessSync('/dev/shm', constants.W_OK);
    return '/dev/shm';
  } catch {
    return tmpdir();
  }
}

/** Spawns the postmaster; resolves once it accepts connections on its socket directory. */
export async function startServer(dataDir: string, port: number, user: OsUser | undefined, logFile: string, extra: string[] = []): Promise<ChildProcess> {
  const fd = openSync(logFile, 'a');
  const opts = asUser(user);
  const child = spawn('postgres', ['-D', dataDir, '-p', String(port), '-k', dataDir, ...extra], {
    ...opts,
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (exited) throw new Error(`PostgreSQL exited during start-up (see ${logFile})`);
    const probe = new pg.Client({ host: dataDir, port, user: SUPERUSER, database: 'template1', connectionTimeoutMillis: 1_000 });
    probe.on('error', () => {});
    try {
      await probe.connect();
      await probe.end();
      return child;
    } catch {
      await probe.end().catch(() => {});
      if (Date.now() > deadline) {
        child.kill('SIGQUIT');
        throw new Error('PostgreSQL did not become ready within 15 s');
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

export function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill('SIGQUIT'), 5_000);
    child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill('SIGINT'); // fast shutdown
  });
}

/**
 * A throwaway CA and a server certificate for 127.0.0.1 (P-256, one day), made with openssl: Node has
 * no API that issues X.509 certificates. The key is the server user's, mode 0600, as PostgreSQL demands.
 */
export async function makeCertificates(dir: string, user: OsUser | undefined): Promise<{ caFile: string; args: string[] }> {
  const tlsDir = join(dir, 'tls');
  await mkdir(tlsDir, { mode: 0o700 });
  const f = (name: string) => join(tlsDir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await execFileP('openssl', ['req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.crt'), '-days', '1', '-subj', '/CN=Countersign lab CA']);
  await execFileP('openssl', ['req', ...ec, '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=127.0.0.1']);
  await writeFile(f('server.ext'), 'subjectAltName=IP:127.0.0.1\n');
  await execFileP('openssl', ['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('server.crt'), '-days', '1', '-extfile', f('server.ext')]);
  await rm(f('ca.key'));
  await own(tlsDir, user, 0o700);
  for (const name of ['server.key', 'server.crt', 'ca.crt']) await own(f(name), user, 0o600);
  const caFile = join(dir, 'ca.crt');
  await copyFile(f('ca.crt'), caFile);
  return { caFile, args: ['-c', 'ssl=on', '-c', `ssl_cert_file=${f('server.crt')}`, '-c', `ssl_key_file=${f('server.key')}`] };
}
