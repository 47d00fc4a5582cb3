/**
 * A throwaway PostgreSQL cluster for the lab: scram auth on 127.0.0.1 at a random free port, the clinic
 * demo database with least-privilege group roles and row-level security (lab/sql/clinic.sql), and a
 * management role with CREATEROLE that Vault's database engine uses. Every statement is logged with
 * the session's application_name (so a test can join a statement to an OBO `jti`), except the
 * management role's, which carry passwords.
 *
 * The seeded cluster is built once per machine and copied for each start (postgres-template.ts); the
 * server runs as the OS user `postgres` when we are root (postgres-server.ts).
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import {
  SUPERUSER,
  asUser,
  baseDir,
  execFileP,
  freePort,
  installExitHook,
  makeCertificates,
  own,
  running,
  serverUser,
  startServer,
  stopServer,
  type Running,
} from './postgres-server.ts';
import { CLINIC_DATABASE, MANAGEMENT_ROLE, template } from './postgres-template.ts';

export { freePort } from './postgres-server.ts';

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
