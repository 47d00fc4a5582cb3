import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { AuditStore } from '../../../main/core/audit/store.ts';
import { memorySecretStore, tempDir } from './fixtures.ts';

const writer = fileURLToPath(new URL('./crash-writer.ts', import.meta.url));

/** Runs the writer until it has reported `atLeast` committed records, then kill -9s it mid-stream. */
async function writeAndKill(dataDir: string, round: number, atLeast: number): Promise<Map<number, string>> {
  const child = spawn(process.execPath, [writer, dataDir, String(round)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const committed = new Map<number, string>();
  let buf = '';
  await new Promise<void>((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code, signal) => (signal === 'SIGKILL' ? resolve() : reject(new Error(`writer exited early (${code})`))));
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      buf += chunk;
      const lines = buf.split('\n');
      buf = lines.pop()!;
      for (const line of lines) {
        const [seq, hash] = line.split(' ');
        committed.set(Number(seq), hash!);
      }
      if (committed.size >= atLeast && !child.killed) child.kill('SIGKILL');
    });
  });
  return committed;
}

describe('crash safety', () => {
  it('loses no committed record and keeps the chain verifiable across repeated kill -9 during writes', async () => {
    using dir = tempDir();
    const all = new Map<number, string>();
    for (let round = 0; round < 3; round++) {
      const committed = await writeAndKill(dir.path, round, 150);
      for (const [seq, hash] of committed) all.set(seq, hash);
      const store = await AuditStore.open({ dataDir: dir.path, readOnly: true });
      for (const [seq, hash] of committed) expect(store.get(seq)?.hash).toBe(hash);
      const v = await store.verify();
      expect(v).toMatchObject({ ok: true, firstBad: null });
      expect(v.head!.seq).toBeGreaterThanOrEqual(Math.max(...committed.keys()));
      await store.close();
    }
    expect(all.size).toBeGreaterThanOrEqual(450);
    // Each round continued the chain the killed one left: seq is contiguous from 1; and reopening for
    // writing re-indexes for search whatever the killed writer had committed but not yet indexed.
    const store = await AuditStore.open({ dataDir: dir.path, secrets: memorySecretStore() });
    const v = await store.verify();
    expect(v.checked).toBe(v.head!.seq);
    expect(store.count({ search: 'crash round' })).toBe(v.head!.seq);
    await store.close();
  });
});
