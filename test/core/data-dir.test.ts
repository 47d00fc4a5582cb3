/**
 * The data directory is private: refused at start when others can reach it or it is not the user's,
 * and every file the core writes there (audit store with its -wal/-shm, calls in flight, upstream
 * listings, exports' temporary files) is owner-only. Real files, stat'ed.
 */
import { chmodSync, chownSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '../../common/errors.ts';
import { resolvePaths } from '../../common/paths.ts';
import { ensurePrivateDataDir } from '../../main/core/data-dir.ts';
import { AuditStore } from '../../main/core/audit/store.ts';
import { SqliteCallJournal } from '../../main/core/audit/journal.ts';
import { writeExportFile } from '../../main/core/audit/export.ts';
import { startCore, type CoreOptions } from '../../main/core/app.ts';
import { parseAppConfig } from '../../main/core/config/config.ts';
import type { SecretStore } from '../../main/core/ports.ts';

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'cs-data-dir-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const memorySecrets = (): SecretStore => {
  const m = new Map<string, string>();
  return { kind: 'memory', get: async (k) => m.get(k) ?? null, set: async (k, v) => void m.set(k, v), delete: async (k) => void m.delete(k) };
};

function refusal(dir: string, uid?: number): AppError {
  try {
    ensurePrivateDataDir(dir, uid === undefined ? {} : { uid });
  } catch (error) {
    if (error instanceof AppError) return error;
    throw error;
  }
  throw new Error(`expected ${dir} to be refused`);
}

/** Every entry under `dir`, with its permission bits. */
function modes(dir: string): Array<{ path: string; mode: number; dir: boolean }> {
  const out: Array<{ path: string; mode: number; dir: boolean }> = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const st = statSync(path);
    out.push({ path: path.slice(dir.length + 1), mode: st.mode & 0o777, dir: st.isDirectory() });
    if (st.isDirectory()) out.push(...modes(path).map((m) => ({ ...m, path: `${name}/${m.path}` })));
  }
  return out;
}

describe('the data directory', () => {
  it('is created owner-only when missing', () => {
    const dir = join(work, 'fresh', 'countersign');
    ensurePrivateDataDir(dir);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
  });

  it('is refused when its group or others can read, write or enter it, with the mode and the fix', () => {
    for (const mode of [0o755, 0o750, 0o705, 0o701, 0o770, 0o710]) {
      const dir = join(work, `open-${mode.toString(8)}`);
      mkdirSync(dir);
      chmodSync(dir, mode);
      const e = refusal(dir);
      expect(e.code).toBe('DATA_DIR_UNSAFE');
      expect(e.message).toContain(`mode ${mode.toString(8)}`);
      expect(e.message).toContain('chmod 700');
    }
  });

  it('is refused when it belongs to another user', () => {
    const dir = join(work, 'someone-else');
    mkdirSync(dir, { mode: 0o700 });
    const me = process.getuid!();
    const e = refusal(dir, me + 1);
    expect(e.code).toBe('DATA_DIR_UNSAFE');
    expect(e.message).toMatch(/belongs to another user \(uid \d+, you are \d+\)/);
  });

  it.runIf(process.getuid?.() === 0)('is refused when chowned to another account (as root, chown is possible)', () => {
    const dir = join(work, 'chowned');
    mkdirSync(dir, { mode: 0o700 });
    const nobody = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('nobody:'))!.split(':');
    chownSync(dir, Number(nobody[2]), Number(nobody[3]));
    expect(refusal(dir).message).toContain(`uid ${nobody[2]}`);
  });

  it('is refused when it is a file', () => {
    const file = join(work, 'a-file');
    writeFileSync(file, '', { mode: 0o600 });
    expect(refusal(file).code).toBe('DATA_DIR_UNSAFE');
  });

  it('stops the core at start, before it reads its policy or opens its audit store', async () => {
    const dir = join(work, 'core-open');
    mkdirSync(dir, { mode: 0o755 });
    chmodSync(dir, 0o755);
    const paths = resolvePaths({ platform: 'linux', env: { COUNTERSIGN_HOME: dir }, home: work });
    const config = parseAppConfig({ idp: { issuer: 'https://idp.example', clientId: 'c' }, vault: { address: 'https://vault.example' }, policyFile: join(work, 'no-such-policy.jsonc') });
    const log = { info: () => {}, warn: () => {}, error: () => {} };
    const options = { config, host: 'headless', version: 'test', secrets: memorySecrets(), paths, log } as unknown as CoreOptions;
    await expect(startCore(options)).rejects.toMatchObject({ code: 'DATA_DIR_UNSAFE' });
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe('files the core writes in its data directory', () => {
  it('are owner-only: the audit store with its -wal and -shm, the calls in flight, an export', async () => {
    const dir = join(work, 'written');
    ensurePrivateDataDir(dir);
    const audit = await AuditStore.open({ dataDir: dir, secrets: memorySecrets() });
    await audit.append({ kind: 'system', outcome: 'success', user: null, summary: 'data-dir test' });
    const journal = new SqliteCallJournal(dir);
    journal.begin('c1', { tool: 'query', startedAt: new Date().toISOString(), user: null, client: {}, keys: {} });
    const exportsDir = join(dir, 'exports');
    mkdirSync(exportsDir, { mode: 0o700 });
    await writeExportFile(audit, 'jsonl', {}, join(exportsDir, 'audit.jsonl'));

    const entries = modes(dir);
    const names = entries.map((e) => e.path);
    expect(names).toEqual(expect.arrayContaining(['audit.db', 'audit.db-wal', 'audit.db-shm', 'calls-in-flight.db', 'calls-in-flight.db-wal', 'exports/audit.jsonl']));
    for (const e of entries) expect({ path: e.path, mode: e.mode.toString(8) }).toEqual({ path: e.path, mode: e.dir ? '700' : '600' });
    journal.end('c1');
    journal.close();
    await audit.close();
  });

  it('tightens a database file an earlier version left readable', async () => {
    const dir = join(work, 'old');
    ensurePrivateDataDir(dir);
    writeFileSync(join(dir, 'calls-in-flight.db'), '');
    chmodSync(join(dir, 'calls-in-flight.db'), 0o644);
    const journal = new SqliteCallJournal(dir);
    journal.begin('c1', { tool: 'query', startedAt: new Date().toISOString(), user: null, client: {}, keys: {} });
    expect(statSync(join(dir, 'calls-in-flight.db')).mode & 0o777).toBe(0o600);
    journal.close();
  });
});
