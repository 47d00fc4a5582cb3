import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPostgres } from '../../lab/postgres.ts';
import type { LabPostgres } from '../../lab/postgres.ts';
import { startVault } from '../../lab/vault/index.ts';
import type { LabVault } from '../../lab/vault/index.ts';

// The Vault HTTP API conformance cases (what Vault itself answers, case by case), kept in the
// repository so a fresh clone runs them; the shared copy beside the checkout wins when present.
function script(name: string): string {
  const shared = new URL(`../../../shared/conformance/${name}`, import.meta.url).pathname;
  return existsSync(shared) ? shared : new URL(`./conformance/${name}`, import.meta.url).pathname;
}

let db: LabPostgres;
let vault: LabVault;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vault-conformance-'));
  db = await startPostgres();
  vault = await startVault();
});
afterAll(async () => {
  await vault?.stop();
  await db?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function run(name: string, env: Record<string, string> = {}): Promise<string> {
  return new Promise<string>((resolve) => {
    execFile(
      process.execPath,
      [script(name)],
      { env: { ...process.env, VAULT_ADDR: vault.addr, VAULT_TOKEN: vault.rootToken, PG_ADMIN_URL: db.adminUrl, ...env }, timeout: 50_000 },
      (_err, stdout, stderr) => resolve(`${stdout}${stderr}`),
    );
  });
}

async function noLeaseNoRole(): Promise<void> {
  expect(vault.leases()).toBe(0);
  const { default: pg } = await import('pg');
  const c = new pg.Client({ connectionString: db.adminUrl });
  await c.connect();
  const r = await c.query(`SELECT count(*)::int AS n FROM pg_roles WHERE rolname LIKE 'v-%'`);
  await c.end();
  expect(r.rows[0].n).toBe(0);
}

describe('Vault stand-in conformance', () => {
  it('passes every case of the shared Vault conformance script', async () => {
    const output = await run('vault.mjs');
    expect(output, output).toMatch(/^\d+ passed, 0 failed$/m);
    expect(output).not.toMatch(/^skip/m);
    expect(Number(/^(\d+) passed/m.exec(output)?.[1])).toBeGreaterThanOrEqual(38);
  });

  it('leaves no lease and no per-call database role behind once the script is done', noLeaseNoRole);

  it('passes every case of the native agent mode script (profiles, registry, OAuth JWTs, RAR, OBO, discovery, audit)', async () => {
    const output = await run('vault-agent.mjs', { VAULT_AUDIT_PATH: join(dir, 'agent-audit.log') });
    expect(output, output).toMatch(/^\d+ passed, 0 failed$/m);
    // Every case runs against the stand-in: audit, JWKS and database included.
    expect(output, output).not.toMatch(/^skip/m);
    expect(Number(/^(\d+) passed/m.exec(output)?.[1])).toBeGreaterThanOrEqual(56);
  });

  it('leaves no lease and no per-call database role behind once the agent mode script is done', noLeaseNoRole);
});
