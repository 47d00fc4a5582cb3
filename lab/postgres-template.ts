/**
 * The seeded template cluster: initdb'd once per machine (keyed by the PostgreSQL version, the seed file
 * and this file) with the clinic database of lab/sql/clinic.sql and Vault's management role, then
 * copied for each start (~0.1 s instead of ~1.5 s).
 */
import { createHash } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { chown, mkdtemp, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { SUPERUSER, asUser, baseDir, execFileP, freePort, own, serverUser, startServer, stopServer } from './postgres-server.ts';

export const CLINIC_DATABASE = 'clinic';
export const MANAGEMENT_ROLE = 'vault_manager';

const seedPath = new URL('./sql/clinic.sql', import.meta.url);

async function templateKey(): Promise<string> {
  const { stdout } = await execFileP('postgres', ['--version']);
  const seed = await readFile(seedPath);
  const self = await readFile(new URL(import.meta.url));
  return createHash('sha256').update(stdout).update(seed).update(self).digest('hex').slice(0, 16);
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

/**
 * Builds (once per machine) the seeded template data directory and returns its path, marked as in use
 * (its mtime: removeStaleTemplates spares a template touched in the last ten minutes). One that another
 * process, running other code, removed as stale since is built again.
 */
export async function template(log: (l: string) => void): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    templatePromise ??= buildTemplate(log).catch((e: unknown) => {
      templatePromise = undefined;
      throw e;
    });
    const path = await templatePromise;
    try {
      const now = new Date();
      await utimes(path, now, now);
      return path;
    } catch (e) {
      if (attempt > 0) throw e;
      templatePromise = undefined;
    }
  }
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
