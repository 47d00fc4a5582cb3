import { existsSync } from 'node:fs';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPostgres } from '../../lab/postgres.ts';
import type { LabPostgres } from '../../lab/postgres.ts';

let db: LabPostgres;

function urlFor(user: string, password: string): string {
  return `postgresql://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${db.port}/clinic`;
}

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>, applicationName = 'lab-test'): Promise<T> {
  const c = new pg.Client({ connectionString: url, application_name: applicationName });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** Creates a per-call role the way Vault's database engine does, through the management role. */
async function perCallRole(group: string): Promise<{ name: string; password: string }> {
  const name = `v-test-${group}-${Math.random().toString(36).slice(2, 8)}`;
  const password = `A1a-${Math.random().toString(36).slice(2)}`;
  const until = new Date(Date.now() + 60_000).toISOString();
  await withClient(db.managementUrl, (c) =>
    c.query(`CREATE ROLE "${name}" WITH LOGIN PASSWORD '${password}' VALID UNTIL '${until}' IN ROLE ${group}`),
  );
  return { name, password };
}

async function dropRole(name: string): Promise<void> {
  await withClient(db.managementUrl, async (c) => {
    await c.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, [name]);
    await c.query(`GRANT "${name}" TO vault_manager`);
    await c.query(`DROP OWNED BY "${name}"`);
    await c.query(`DROP ROLE IF EXISTS "${name}"`);
  });
}

beforeAll(async () => {
  db = await startPostgres();
});
afterAll(async () => {
  await db?.stop();
});

describe('lab PostgreSQL', () => {
  it('serves the seeded clinic database over TCP with scram authentication', async () => {
    const counts = await withClient(db.adminUrl, async (c) => {
      const r = await c.query(
        `SELECT (SELECT count(*) FROM patients)::int AS patients, (SELECT count(*) FROM patients WHERE vip)::int AS vip,
                (SELECT count(*) FROM appointments)::int AS appointments, (SELECT count(*) FROM notes)::int AS notes,
                (SELECT string_agg(DISTINCT type, ',') FROM pg_hba_file_rules WHERE type = 'host') AS host,
                (SELECT string_agg(DISTINCT auth_method, ',') FROM pg_hba_file_rules WHERE type = 'host') AS method`,
      );
      return r.rows[0];
    });
    expect(counts).toEqual({ patients: 12, vip: 2, appointments: 12, notes: 8, host: 'host', method: 'scram-sha-256' });
  });

  it('rejects a wrong password', async () => {
    await expect(withClient(urlFor('postgres', 'not-the-password'), (c) => c.query('SELECT 1'))).rejects.toMatchObject({ code: '28P01' });
  });

  it('hides VIP patients, their appointments and notes from clinic_reader, and shows them to clinic_sensitive', async () => {
    const reader = await perCallRole('clinic_reader');
    const sensitive = await perCallRole('clinic_sensitive');
    try {
      const q = `SELECT (SELECT count(*) FROM patients)::int AS p, (SELECT count(*) FROM patients WHERE vip)::int AS v,
                        (SELECT count(*) FROM appointments)::int AS a, (SELECT count(*) FROM notes)::int AS n`;
      const asReader = await withClient(urlFor(reader.name, reader.password), async (c) => (await c.query(q)).rows[0]);
      const asSensitive = await withClient(urlFor(sensitive.name, sensitive.password), async (c) => (await c.query(q)).rows[0]);
      expect(asReader).toEqual({ p: 10, v: 0, a: 10, n: 6 });
      expect(asSensitive).toEqual({ p: 12, v: 2, a: 12, n: 8 });
    } finally {
      await dropRole(reader.name);
      await dropRole(sensitive.name);
    }
  });

  it('lets clinic_reader read but not write, and clinic_writer write appointments and notes but not patients', async () => {
    const reader = await perCallRole('clinic_reader');
    const writer = await perCallRole('clinic_writer');
    try {
      await expect(
        withClient(urlFor(reader.name, reader.password), (c) => c.query(`DELETE FROM notes WHERE id = 1`)),
      ).rejects.toMatchObject({ code: '42501' });
      const updated = await withClient(urlFor(writer.name, writer.password), (c) =>
        c.query(`UPDATE appointments SET status = 'completed' WHERE id = 1`),
      );
      expect(updated.rowCount).toBe(1);
      await expect(
        withClient(urlFor(writer.name, writer.password), (c) => c.query(`UPDATE patients SET vip = true WHERE id = 1`)),
      ).rejects.toMatchObject({ code: '42501' });
      await expect(
        withClient(urlFor(writer.name, writer.password), (c) => c.query(`CREATE TABLE evil (id int)`)),
      ).rejects.toMatchObject({ code: '42501' });
    } finally {
      await dropRole(reader.name);
      await dropRole(writer.name);
    }
  });

  it('does not let clinic_writer add a note to a VIP patient it cannot see', async () => {
    const writer = await perCallRole('clinic_writer');
    try {
      await expect(
        withClient(urlFor(writer.name, writer.password), (c) => c.query(`INSERT INTO notes (patient_id, body) VALUES (11, 'x')`)),
      ).rejects.toMatchObject({ code: '42501' });
      const touched = await withClient(urlFor(writer.name, writer.password), (c) => c.query(`DELETE FROM notes WHERE patient_id = 11`));
      expect(touched.rowCount).toBe(0);
    } finally {
      await dropRole(writer.name);
    }
  });

  it('refuses a per-call role after its VALID UNTIL has passed', async () => {
    const name = `v-test-expired-${Math.random().toString(36).slice(2, 8)}`;
    await withClient(db.managementUrl, (c) =>
      c.query(`CREATE ROLE "${name}" WITH LOGIN PASSWORD 'Expired-pw-1' VALID UNTIL '2001-01-01 00:00:00+0000' IN ROLE clinic_reader`),
    );
    try {
      await expect(withClient(urlFor(name, 'Expired-pw-1'), (c) => c.query('SELECT 1'))).rejects.toMatchObject({ code: '28P01' });
    } finally {
      await dropRole(name);
    }
  });

  it('logs statements with their application_name, but never the management role\'s (they carry passwords)', async () => {
    const marker = `jti-${Math.random().toString(36).slice(2)}`;
    const role = await perCallRole('clinic_reader');
    await withClient(urlFor(role.name, role.password), (c) => c.query('SELECT count(*) FROM patients'), marker);
    await dropRole(role.name);
    const log = await db.readLog();
    expect(log).toMatch(new RegExp(`app=${marker} user=${role.name} db=clinic LOG:  statement: SELECT count\\(\\*\\) FROM patients`));
    expect(log).not.toContain(role.password);
    expect(log).not.toContain('CREATE ROLE');
    expect(log).not.toMatch(/user=vault_manager/);
  });

  it('stops cleanly: the server process ends and its directory is removed', async () => {
    const other = await startPostgres();
    const pidLine = (await withClient(other.adminUrl, (c) => c.query('SELECT pg_backend_pid() AS pid'))).rows[0];
    expect(pidLine.pid).toBeGreaterThan(0);
    const dir = other.dataDir;
    expect(existsSync(dir)).toBe(true);
    await other.stop();
    expect(existsSync(dir)).toBe(false);
    await expect(withClient(other.adminUrl, (c) => c.query('SELECT 1'))).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });
});
