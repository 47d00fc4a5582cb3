import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPostgres } from '../../lab/postgres.ts';
import type { LabPostgres } from '../../lab/postgres.ts';
import { startVault } from '../../lab/vault/index.ts';
import type { LabVault } from '../../lab/vault/index.ts';

// The Vault HTTP API conformance cases (what Vault itself answers, case by case), kept in the
// repository so a fresh clone runs them; the shared copy beside the checkout wins when present.
const SHARED = new URL('../../../shared/conformance/vault.mjs', import.meta.url).pathname;
const SCRIPT = existsSync(SHARED) ? SHARED : new URL('./conformance/vault.mjs', import.meta.url).pathname;

let db: LabPostgres;
let vault: LabVault;

beforeAll(async () => {
  db = await startPostgres();
  vault = await startVault();
});
afterAll(async () => {
  await vault?.stop();
  await db?.stop();
});

describe('Vault stand-in conformance', () => {
  it('passes every case of the shared Vault conformance script', async () => {
    const output = await new Promise<string>((resolve) => {
      execFile(
        process.execPath,
        [SCRIPT],
        { env: { ...process.env, VAULT_ADDR: vault.addr, VAULT_TOKEN: vault.rootToken, PG_ADMIN_URL: db.adminUrl }, timeout: 50_000 },
        (_err, stdout, stderr) => resolve(`${stdout}${stderr}`),
      );
    });
    expect(output, output).toMatch(/^\d+ passed, 0 failed$/m);
    expect(output).not.toMatch(/^skip/m);
    expect(Number(/^(\d+) passed/m.exec(output)?.[1])).toBeGreaterThanOrEqual(38);
  });

  it('leaves no lease and no per-call database role behind once the script is done', async () => {
    expect(vault.leases()).toBe(0);
    const { default: pg } = await import('pg');
    const c = new pg.Client({ connectionString: db.adminUrl });
    await c.connect();
    const r = await c.query(`SELECT count(*)::int AS n FROM pg_roles WHERE rolname LIKE 'v-%'`);
    await c.end();
    expect(r.rows[0].n).toBe(0);
  });
});
