/**
 * A throwaway PostgreSQL cluster for the lab: scram auth on 127.0.0.1 at a random free port, the clinic
 * demo database with least-privilege group roles and row-level security (lab/sql/clinic.sql), and a
 * management role with CREATEROLE that Vault's database engine uses. Every statement is logged with
 * the session's application_name (so a test can join a statement to an OBO `jti`), except the
 * management role's, which carry passwords.
 *
 * Speed: the seeded cluster is initdb'd once per machine into a template directory (keyed by the
 * PostgreSQL version and the seed file) and copied for each start (~0.1 s instead of ~1.5 s).
 * PostgreSQL refuses to run as root, so when we are root the server runs as the OS user `postgres`.
 */
import { spawn, execFile } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { accessSync, closeSync, constants, existsSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rename, rm, chown, chmod, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';

const execFileP = promisify(execFile);

export const CLINIC_DATABASE = 'clinic';
export const SUPERUSER = 'postgres';
export const MANAGEMENT_ROLE = 'vault_manager';
export const GROUP_ROLES = ['clinic_reader', 'clinic_writer', 'clinic_sensitive'] as const;

export interface StartPostgresOptions {
  /** Receives one line per lifecycle event (never a password). */
  log?: (line: string) => void;
  /**
   * Serve TLS too, with a certificate for 127.0.0.1 signed by a throwaway CA made for this run
   * (openssl), so clients can be tested at every sslmode. Plain connections are still accepted.
   */
  tls?: boolean;
}

export interface LabPostgres {
  host: '127.0.0.1';
  port: number;
  database: string;
  /** Superuser connection URL (with its password): for tests and the lab's own checks. */
  adminUrl: string;
  /** The CREATEROLE role Vault's database engine uses (its statements are not logged). */
  managementUrl: string;
  managementUser: string;
  managementPassword: string;
  /** The server log: every statement, prefixed with time, pid, application_name, user@database. */
  logFile: string;
  dataDir: string;
  /** With `tls`: the PEM of the CA that signed the server's certificate (subjectAltName IP:127.0.0.1 only). */
  caFile?: string;
  readLog(): Promise<string>;
  /** The postmaster's pid while it runs, for fault tests that signal it (SIGKILL, SIGSTOP, SIGCONT). */
  pid(): number | undefined;
  /** `pg_ctl stop -m immediate`: every server process quits at once, without a shutdown checkpoint. */
  stopImmediate(): Promise<void>;
  /** Starts the server again on the same port and data directory once the last one is gone (crash recovery runs as usual). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

interface Running {
  child: ChildProcess;
  dir: string;
}
const running = new Set<Running>();
let exitHookInstalled = false;

function installExitHook(): void {
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

interface OsUser {
  uid: number;
  gid: number;
  name: string;
}

/** The OS user PostgreSQL runs as: ourselves, or `postgres` when we are root. */
function serverUser(): OsUser | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  if (!line) throw new Error('running as root needs an OS user "postgres" to run PostgreSQL');
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid), name: 'postgres' };
}

function asUser(user: OsUser | undefined): { uid?: number; gid?: number; env: NodeJS.ProcessEnv } {
  const env = { ...process.env, LC_ALL: 'C.UTF-8', LANG: 'C.UTF-8', TZ: 'UTC' };
  if (!user) return { env };
  return { uid: user.uid, gid: user.gid, env: { ...env, HOME: tmpdir(), USER: user.name, LOGNAME: user.name } };
}

async function own(path: string, user: OsUser | undefined, mode = 0o700): Promise<void> {
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

const seedPath = new URL('./sql/clinic.sql', import.meta.url);

/**
 * Where clusters live: RAM-backed /dev/shm when there is one (a throwaway cluster needs no disk, and
 * copying the template there is not slowed by other disk traffic), else the OS temp dir.
 */
function baseDir(): string {
  try {
    accessSync('/dev/shm', constants.W_OK);
    return '/dev/shm';
  } catch {
    return tmpdir();
  }
}

async function templateKey(): Promise<string> {
  const { stdout } = await execFileP('postgres', ['--version']);
  const seed = await readFile(seedPath);
  const self = await readFile(new URL(import.meta.url));
  return createHash('sha256').update(stdout).update(seed).update(self).digest('hex').slice(0, 16);
}

/** Spawns the postmaster; resolves once it accepts connections on its socket directory. */
async function startServer(dataDir: string, port: number, user: OsUser | undefined, logFile: string, extra: string[] = []): Promise<ChildProcess> {
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

function stopServer(child: ChildProcess): Promise<void> {
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

// fsync is off (a throwaway cluster need not survive the machine), but commits are synchronous: the
// process-fault tests kill the postmaster, and an asynchronous commit lost in that crash brings back a
// per-call role whose DROP had already been acknowledged.
const SERVER_CONF = `
listen_addresses = '127.0.0.1'
fsync = off
synchronous_commit = on
full_page_writes = off
shared_buffers = 16MB
min_wal_size = 2MB
max_wal_size = 32MB
max_connections = 60
log_destination = 'stderr'
logging_collector = off
log_statement = 'all'
log_line_prefix = '%m [%p] app=%a user=%u db=%d '
log_connections = off
log_disconnections = off
timezone = 'UTC'
`;

const HBA = `# The socket lives in an owner-only data directory: only its owner (and root) can reach it.
local all all trust
host all all 127.0.0.1/32 scram-sha-256
`;

let templatePromise: Promise<string> | undefined;

/** Builds (once per machine) the seeded template data directory and returns its path. */
function template(log: (l: string) => void): Promise<string> {
  templatePromise ??= buildTemplate(log).catch((e: unknown) => {
    templatePromise = undefined;
    throw e;
  });
  return templatePromise;
}

async function buildTemplate(log: (l: string) => void): Promise<string> {
  const final = join(baseDir(), `countersign-lab-pg-template-${await templateKey()}`);
  if (existsSync(join(final, 'PG_VERSION'))) {
    await removeStaleTemplates(final);
    return final;
  }
  const user = serverUser();
  const work = await mkdtemp(join(baseDir(), 'countersign-lab-pg-build-'));
  await own(work, user, 0o755);
  const dataDir = join(work, 'data');
  const started = Date.now();
  try {
    const opts = asUser(user);
    await execFileP('initdb', ['-D', dataDir, '-U', SUPERUSER, '--auth=trust', '--no-sync', '--wal-segsize=1', '-E', 'UTF8', '--locale=C.UTF-8'], opts);
    await writeFile(join(dataDir, 'postgresql.auto.conf'), SERVER_CONF);
    await writeFile(join(dataDir, 'pg_hba.conf'), HBA);
    const port = await freePort();
    const logFile = join(work, 'build.log');
    writeFileSync(logFile, '');
    if (user) await chown(logFile, user.uid, user.gid);
    const child = await startServer(dataDir, port, user, logFile);
    try {
      const admin = new pg.Client({ host: dataDir, port, user: SUPERUSER, database: 'postgres' });
      await admin.connect();
      await admin.query(`CREATE DATABASE ${CLINIC_DATABASE}`);
      await admin.query(
        `CREATE ROLE ${MANAGEMENT_ROLE} WITH LOGIN CREATEROLE IN ROLE pg_signal_backend`,
      );
      // The management role's statements carry passwords: never logged, not even when they fail.
      await admin.query(`ALTER ROLE ${MANAGEMENT_ROLE} SET log_statement = 'none'`);
      await admin.query(`ALTER ROLE ${MANAGEMENT_ROLE} SET log_min_error_statement = 'panic'`);
      await admin.end();
      const clinic = new pg.Client({ host: dataDir, port, user: SUPERUSER, database: CLINIC_DATABASE });
      await clinic.connect();
      await clinic.query(await readFile(seedPath, 'utf8'));
      await clinic.query(`GRANT CONNECT ON DATABASE ${CLINIC_DATABASE} TO ${MANAGEMENT_ROLE}`);
      // A smaller template copies faster: the lab needs neither the `postgres` database nor template0
      // (template1 stays, so CREATE DATABASE still works).
      await clinic.query('DROP DATABASE postgres');
      await clinic.query(`UPDATE pg_database SET datistemplate = false, datallowconn = true WHERE datname = 'template0'`);
      await clinic.query('DROP DATABASE template0');
      await clinic.query('VACUUM FULL');
      await clinic.query('CHECKPOINT');
      await clinic.end();
    } finally {
      await stopServer(child);
    }
    await rm(join(dataDir, 'postmaster.pid'), { force: true });
    try {
      await rename(dataDir, final);
    } catch (e) {
      // Another process built the same template first: use theirs.
      if (!existsSync(join(final, 'PG_VERSION'))) throw e;
    }
    log(`postgres: template built in ${Date.now() - started} ms at ${final}`);
    await removeStaleTemplates(final);
    return final;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * Templates built from an older seed or PostgreSQL version are of no further use; one untouched for
 * ten minutes is no longer being copied by a process still running the older code.
 */
async function removeStaleTemplates(current: string): Promise<void> {
  const prefix = 'countersign-lab-pg-template-';
  for (const dir of new Set([baseDir(), tmpdir()])) {
    for (const name of await readdir(dir)) {
      const path = join(dir, name);
      if (!name.startsWith(prefix) || path === current) continue;
      try {
        if (Date.now() - (await stat(path)).mtimeMs > 10 * 60_000) await rm(path, { recursive: true, force: true });
      } catch {
        /* already gone */
      }
    }
  }
}

const secret = (): string => randomBytes(18).toString('base64url');

function url(user: string, password: string, port: number, database = CLINIC_DATABASE): string {
  return `postgresql://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;
}

/** Starts a fresh, seeded cluster. `stop()` shuts it down and removes every file it wrote. */
export async function startPostgres(options: StartPostgresOptions = {}): Promise<LabPostgres> {
  const log = options.log ?? (() => {});
  const t0 = Date.now();
  const tpl = await template(log);
  const user = serverUser();
  const dir = await mkdtemp(join(baseDir(), 'countersign-lab-pg-'));
  await own(dir, user, 0o711);
  const dataDir = join(dir, 'data');
  const logFile = join(dir, 'postgres.log');
  let child: ChildProcess | undefined;
  let entry: Running | undefined;
  try {
    // cp -a keeps the owner and the 0700 mode PostgreSQL insists on.
    await execFileP('cp', ['-a', tpl, dataDir]);
    await writeFile(logFile, '');
    await own(logFile, user, 0o644);
    const tls = options.tls ? await makeCertificates(dir, user) : undefined;
    let port = 0;
    for (let attempt = 0; ; attempt++) {
      port = await freePort();
      try {
        child = await startServer(dataDir, port, user, logFile, tls?.args);
        break;
      } catch (e) {
        if (attempt >= 2) throw e;
      }
    }
    entry = { child, dir };
    running.add(entry);
    installExitHook();

    const adminPassword = secret();
    const managementPassword = secret();
    const boot = new pg.Client({ host: dataDir, port, user: SUPERUSER, database: CLINIC_DATABASE, application_name: 'lab-setup' });
    await boot.connect();
    try {
      // Passwords travel as literals here, so this session logs nothing.
      await boot.query(`SET log_statement = 'none'`);
      await boot.query(`SET log_min_error_statement = 'panic'`);
      await boot.query(`ALTER ROLE ${SUPERUSER} PASSWORD ${pg.escapeLiteral(adminPassword)}`);
      await boot.query(`ALTER ROLE ${MANAGEMENT_ROLE} PASSWORD ${pg.escapeLiteral(managementPassword)}`);
    } finally {
      await boot.end();
    }
    log(`postgres: ready on 127.0.0.1:${port} in ${Date.now() - t0} ms`);

    const owned = entry;
    let stopping: Promise<void> | undefined;
    const exited = (c: ChildProcess): Promise<void> =>
      c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise((r) => c.once('exit', () => r()));
    return {
      host: '127.0.0.1',
      port,
      database: CLINIC_DATABASE,
      adminUrl: url(SUPERUSER, adminPassword, port),
      managementUrl: url(MANAGEMENT_ROLE, managementPassword, port),
      managementUser: MANAGEMENT_ROLE,
      managementPassword,
      logFile,
      dataDir,
      ...(tls ? { caFile: tls.caFile } : {}),
      readLog: () => readFile(logFile, 'utf8'),
      pid: () => (owned.child.exitCode === null && owned.child.signalCode === null ? owned.child.pid : undefined),
      async stopImmediate() {
        await execFileP('pg_ctl', ['stop', '-D', dataDir, '-m', 'immediate', '-w'], asUser(user));
        await exited(owned.child);
      },
      async restart() {
        await exited(owned.child);
        // After SIGKILL of the postmaster its backends notice and quit within moments; until they
        // have, the old shared memory is in use and a new postmaster refuses to start.
        const deadline = Date.now() + 20_000;
        for (;;) {
          try {
            owned.child = await startServer(dataDir, port, user, logFile);
            log(`postgres: restarted on 127.0.0.1:${port}`);
            return;
          } catch (e) {
            if (Date.now() > deadline) throw e;
            await new Promise((r) => setTimeout(r, 200));
          }
        }
      },
      stop: () =>
        (stopping ??= (async () => {
          await stopServer(owned.child);
          running.delete(owned);
          await rm(dir, { recursive: true, force: true });
          log('postgres: stopped');
        })()),
    };
  } catch (e) {
    if (child) await stopServer(child);
    if (entry) running.delete(entry);
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
}

/**
 * A throwaway CA and a server certificate for 127.0.0.1 (P-256, one day), made with openssl: Node has
 * no API that issues X.509 certificates. The key is the server user's, mode 0600, as PostgreSQL demands.
 */
async function makeCertificates(dir: string, user: OsUser | undefined): Promise<{ caFile: string; args: string[] }> {
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
