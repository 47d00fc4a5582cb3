/**
 * The audit store's disk full: the data directory on a small tmpfs of its own (mounted as root, as CI
 * runs), filled up while the app runs. Skipped, and so not counted, where mounting is not permitted.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditStore } from '../../main/core/audit/store.ts';
import { SqliteCallJournal } from '../../main/core/audit/journal.ts';
import { createBroker } from '../../main/core/broker/index.ts';
import { memorySecretStore } from '../core/audit/fixtures.ts';
import { call, faultLedger, reportCounters, startReliabilityLab, type ReliabilityLab } from './harness.ts';
import { requestIdCounts } from './process-faults.ts';

const mountPoint = mkdtempSync(join(tmpdir(), 'countersign-full-disk-'));
const canMount = ((): boolean => {
  if (process.getuid?.() !== 0) return false;
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m,mode=0700', 'tmpfs', mountPoint], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

let r: ReliabilityLab;
const ledger = faultLedger();
const text = (res: CallToolResult): string => res.content.map((c) => (c as { text?: string }).text ?? '').join('\n');

beforeAll(async () => {
  if (canMount) r = await startReliabilityLab();
}, 60_000);
afterAll(async () => {
  if (canMount) await reportCounters('disk', { faults: ledger.outcomes() });
  await r?.stop();
  if (canMount) execFileSync('umount', ['-l', mountPoint]);
  await rm(mountPoint, { recursive: true, force: true });
});

/** Writes zeros until the filesystem refuses (ENOSPC); returns the file, to be removed to clear the fault. */
async function fill(dir: string): Promise<string> {
  const file = join(dir, 'filler');
  const fh = await open(file, 'w');
  const block = Buffer.alloc(64 * 1024);
  try {
    for (;;) await fh.write(block);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
  } finally {
    await fh.close().catch(() => {});
  }
  // The last partial block: fill what is left byte-wise, so not one page is free.
  const tail = await open(file, 'a');
  try {
    for (;;) await tail.write(Buffer.alloc(512));
  } catch {
    /* full */
  } finally {
    await tail.close().catch(() => {});
  }
  return file;
}

describe.skipIf(!canMount)('the audit store on a full disk', () => {
  it('answers AUDIT_FAILED in time (refused before any exchange when the journal cannot be written), leaves no role or lease, and writes the one record of the call once there is room, on a chain that verifies', async () => {
    await ledger.run('audit store disk full', 'os', async () => {
      const dataDir = join(mountPoint, 'data');
      const audit = await AuditStore.open({ dataDir, secrets: memorySecretStore() });
      const journal = new SqliteCallJournal(dataDir);
      const broker = createBroker({ connectors: [r.postgresConnector()], tokens: r.alice, idp: r.exchanger, vault: r.vaultClient, audit, journal, demo: true });
      try {
        expect((await broker.callTool(call('query', { sql: 'SELECT id FROM patients' }))).isError).toBeFalsy();
        const filler = await fill(mountPoint);
        // SQLite reuses the space its WAL files already hold: calls go on until a write needs a new
        // page, and that call meets the full disk.
        let request = call('query', { sql: 'SELECT id FROM patients' });
        let res: CallToolResult | undefined;
        let ms = 0;
        const before = requestIdCounts(audit).size;
        let recordedBefore = 0;
        for (let i = 0; i < 200; i += 1) {
          request = call('query', { sql: 'SELECT id FROM patients' });
          const t0 = performance.now();
          res = await broker.callTool(request);
          ms = performance.now() - t0;
          if (res.isError) break;
          recordedBefore += 1;
        }
        expect(res?.isError, 'no write ever met the full disk').toBe(true);
        expect(ms).toBeLessThan(10_000);
        expect(text(res!)).toContain('[AUDIT_FAILED]');
        expect(text(res!).length).toBeGreaterThan(40);
        expect(requestIdCounts(audit).size).toBe(before + recordedBefore);
        expect(await r.settled(8_000)).toEqual({ roles: [], leases: 0 });
        await rm(filler);
        const after = call('query', { sql: 'SELECT id FROM patients' });
        const ok = await broker.callTool(after);
        expect(ok.isError, text(ok)).toBeFalsy();
        const counts = requestIdCounts(audit);
        expect(counts.get(request.requestId)).toBe(1);
        expect(counts.get(after.requestId)).toBe(1);
        const v = await audit.verify();
        expect(v.ok, JSON.stringify(v.firstBad)).toBe(true);
        // The deferred index rows that met the full disk were kept and written once there was room:
        // the filters count every tool call the records table holds.
        await new Promise((r) => setTimeout(r, 1_100));
        const calls = [...counts.values()].reduce((a, b) => a + b, 0);
        expect(audit.count({ kind: ['tool_call'] })).toBe(calls);
        expect(audit.page({ filter: { kind: ['tool_call'] }, limit: 1 }).total).toBe(calls);
      } finally {
        journal.close();
        await audit.close();
      }
    });
  });
});
